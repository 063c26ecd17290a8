"""The serving part of a model card: each deployment target, how to start it, the measured figures."""

from __future__ import annotations


def _fmt(value: float | None, digits: str = ".1f") -> str:
    return "-" if value is None else format(value, digits)


def serving_section(metrics: dict, *, levels: list[int], server: str, ollama_tag: str, gguf_name: str,
                    n_ctx: int, deploy_files: bool, validation: dict[str, dict] | None = None,
                    chat_template: bool = True) -> str:
    """Markdown: the smoke and load figures measured through the server, then the targets.
    `chat_template` False: the file has none and is served with the prompt-only chat format."""
    rows = ["| users | requests/s | output tok/s | p50 latency ms | p95 latency ms | TTFT p50 ms | TTFT p95 ms | errors |",
            "|---|---|---|---|---|---|---|---|"]
    for c in levels:
        p = f"serve_c{c}_"
        if p + "requests_per_s" in metrics:
            rows.append(f"| {c} | {_fmt(metrics[p + 'requests_per_s'], '.2f')} | {_fmt(metrics[p + 'output_tps'])} | "
                        f"{_fmt(metrics[p + 'latency_p50_ms'], '.0f')} | {_fmt(metrics[p + 'latency_p95_ms'], '.0f')} | "
                        f"{_fmt(metrics[p + 'ttft_p50_ms'], '.0f')} | {_fmt(metrics[p + 'ttft_p95_ms'], '.0f')} | "
                        f"{metrics[p + 'errors']:.0f} |")
    smoke = "passed" if metrics.get("serve_smoke_pass") else "FAILED"
    served = (
        "## Served\n\n"
        f"Served on loopback by {server} with this file and "
        f"{'its chat template' if chat_template else 'the prompt-only chat format (it has no chat template)'}; checked through the "
        f"OpenAI chat endpoint. Smoke test: **{smoke}** ({metrics.get('serve_smoke_requests', 0):.0f} checkable "
        f"prompts, {metrics.get('serve_smoke_errors', 0):.0f} errors, served task score "
        f"{_fmt(metrics.get('serve_task_score'), '.2f')}, same answer as offline greedy on "
        f"{_fmt(metrics.get('serve_offline_agreement'), '.2f')} of them). Single-user decode through the server: "
        f"{_fmt(metrics.get('serve_decode_tps'))} tok/s with {_fmt(metrics.get('serve_threads'), '.0f')} decode "
        f"thread(s), the load client on the same host (offline `decode_tps`: {_fmt(metrics.get('decode_tps'))}).\n\n"
        "Load test (Locust, streamed chat requests, a fixed number per level):\n\n" + "\n".join(rows) + "\n\n"
    ) if "serve_smoke_pass" in metrics else ""  # serving switched off: nothing was served
    llama_cpp = (
        "- **OpenAI-compatible server (llama-cpp-python)**: `pip install \"llama-cpp-python[server]\"`, then\n"
        f"  `API_KEY=... python -m llama_cpp.server --model {gguf_name} --n_ctx {n_ctx} --interrupt_requests false`\n"
    ) if chat_template else (
        "- **OpenAI-compatible server (llama-cpp-python)**: this GGUF has no chat template (a pretrained model), "
        "and llama-cpp-python's fallback for that is the Llama-2 `[INST]` format, which this model was not trained "
        "on (it answers with an empty string). Serve it with slmforge's prompt-only format (the message text, as "
        "measured): `API_KEY=... python -m tasks.formats.gguf.llama_cpp_server --chat_format prompt-only --model "
        f"{gguf_name} --n_ctx {n_ctx} --interrupt_requests false`, or use its completions endpoint\n"
    )
    text = served + "## Deployment targets\n\n" + llama_cpp + (
        f"- **Ollama**: `ollama create {ollama_tag} -f Modelfile && ollama run {ollama_tag}`\n"
    )
    if deploy_files:
        text += (
            "- **llama.cpp server container**: `docker build -t <image> .` (Dockerfile: non-root, health check), or "
            "`docker compose up -d` (compose.yaml: llama.cpp server and Ollama; API key in `./api_key.txt`)\n"
            "- **Kubernetes (CPU)**: `kubectl create secret generic slmforge-api-key --from-literal=api-key=...` then "
            "`kubectl apply -f k8s/llama-server.yaml` (requests/limits from `deploy-sizing.json`)\n"
            "- **vLLM (GPU hosts)**: `kubectl apply -f vllm/vllm.yaml` with this folder on the PVC it names "
            "(vLLM loads the GGUF with the tokenizer in `tokenizer/`)\n"
            "- **Monitoring**: `prometheus/prometheus.yml` + `prometheus/alerts.yml`, Grafana `grafana/dashboard.json`\n"
        )
        text += "\nChecks of the deployment files (each by its own field's validator, when this host had it):\n\n"
        text += "".join(f"- `{name}`: {check['note']}\n" for name, check in (validation or {}).items())
    return text
