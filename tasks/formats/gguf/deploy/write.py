"""Write every deployment file of one GGUF variant into its package folder."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from tasks.formats.gguf.deploy import containers, k8s, monitoring
from tasks.formats.gguf.deploy.config import DeployConfig
from tasks.formats.gguf.deploy.sizing import size_deployment

# The HF files vLLM needs beside a GGUF (it takes the tokenizer from a folder, not from the GGUF).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "config.json", "generation_config.json")
VALIDATED = ("Dockerfile", "compose.yaml", "k8s/llama-server.yaml", "vllm/vllm.yaml", "prometheus/prometheus.yml",
             "prometheus/alerts.yml", "grafana/dashboard.json")


def write_deployment(folder: Path, *, gguf: Path, name: str, ollama_tag: str, hf_dir: Path, metrics: dict,
                     n_ctx: int, threads: int, config: DeployConfig) -> list[str]:
    """Write the files into `folder`; returns their relative paths (VALIDATED ones + sizing and tokenizer)."""
    if "peak_rss_bytes" not in metrics or "serve_decode_tps" not in metrics:
        raise ValueError(f"{name}: deployment files need the measured peak_rss_bytes and serve_decode_tps; "
                         f"have {sorted(k for k in metrics if not k.startswith('prompts'))[:12]}... "
                         "enable evaluation and serving (formats.gguf.serve.enabled) or set deploy.enabled: false")
    sizing = size_deployment(gguf, peak_rss_bytes=int(metrics["peak_rss_bytes"]), n_ctx=n_ctx,
                             headroom=config.memory_headroom, threads=threads)
    name = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:48]  # a DNS-1123 label for Kubernetes
    image = f"{config.image_repository}/{name}:{re.sub(r'[^A-Za-z0-9_.-]', '-', gguf.stem)[:128]}"
    texts = {
        "Dockerfile": containers.dockerfile(gguf.name, sizing, config),
        "compose.yaml": containers.compose(gguf.name, ollama_tag, sizing, config),
        "k8s/llama-server.yaml": k8s.llama_server_manifests(name, image, sizing, config),
        "vllm/vllm.yaml": k8s.vllm_manifests(f"{name}-vllm", gguf.name, sizing, config, models_claim=f"{name}-package"),
        "prometheus/prometheus.yml": monitoring.prometheus_config(name, config),
        "prometheus/alerts.yml": monitoring.alert_rules(name, sizing, metrics, config),
        "grafana/dashboard.json": monitoring.grafana_dashboard(name),
        "deploy-sizing.json": json.dumps(sizing.model_dump(), indent=2),
    }
    for relative, text in texts.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text)
    written = list(texts)
    (folder / "tokenizer").mkdir(exist_ok=True)
    for file in TOKENIZER_FILES:
        if (hf_dir / file).is_file():
            shutil.copy2(hf_dir / file, folder / "tokenizer" / file)
            written.append(f"tokenizer/{file}")
    return written
