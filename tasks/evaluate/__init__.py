"""Step 4, evaluate: size, quality against the f16 base, and speed, each in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from tasks.errors import UserError, WorkerCrashedError
from tasks.evaluate.corpus import BuiltinCorpus, CorpusConfig, corpus_identity, load_corpus_text
from tasks.hashing import sha256_file
from tasks.store import stored_step
from tasks.versions import subset, tool_versions


class EvalConfig(BaseModel):
    """The measurement protocol; every field is recorded with the results."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    corpus: CorpusConfig = Field(default_factory=BuiltinCorpus, description="Evaluation text.")
    n_ctx: int = Field(512, ge=16, description="Perplexity chunk length (llama.cpp tables use 512).")
    max_chunks: int | None = Field(
        24, ge=1, description="Chunks scored (None = all); each scores n_ctx/2 - 1 tokens.",
    )
    threads: int | None = Field(None, ge=1, description="CPU threads (default: physical cores, as llama-bench).")
    n_gpu_layers: int = Field(0, ge=-1, description="Layers offloaded to a GPU build (-1 = all).")
    prefill_tokens: int = Field(512, ge=1, description="Prompt length of the prefill test (pp512).")
    decode_tokens: int = Field(128, ge=1, description="Generated tokens of the decode test (tg128).")
    repetitions: int = Field(3, ge=3, description="Timed runs after one warm-up; mean and sd reported.")
    depths: list[int] = Field(default_factory=list, description="Also time decode after this many context tokens.")
    ttft_prompt_tokens: int = Field(64, ge=1, description="Prompt length for time to first token.")
    timeout_s: int = Field(3600, ge=10, description="A measurement worker running longer is stopped.")
    prompt_suite: str | None = Field(
        "default", description="Prompt suite: a name under configs/prompts/, a YAML path, or null to skip.",
    )


def prompt_suite_file(config: EvalConfig) -> Path | None:
    """The prompt suite YAML a config names (None when the suite is switched off)."""
    from tasks.evaluate.prompt_suite import DEFAULT_SUITE

    if config.prompt_suite is None:
        return None
    if "/" in config.prompt_suite or config.prompt_suite.endswith(".yaml"):
        return Path(config.prompt_suite)
    return DEFAULT_SUITE.parent / f"{config.prompt_suite}.yaml"


def default_threads() -> int:
    """Physical cores, as llama-bench and llama-perplexity default to."""
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def run_worker(request: dict, *, timeout_s: int, module: str = "tasks.evaluate.worker") -> dict:
    """Run one measurement in a fresh Python process (`python -m module REQUEST RESULT`);
    its JSON result or a clear error."""
    with tempfile.TemporaryDirectory(prefix="slmforge-eval-") as tmp:
        request_path, result_path = Path(tmp) / "request.json", Path(tmp) / "result.json"
        request_path.write_text(json.dumps(request, default=str))
        command = [sys.executable, "-m", module, str(request_path), str(result_path)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        if done.returncode < 0:
            raise WorkerCrashedError(
                f"The {request['mode']} worker for {Path(request['model']).name} was killed by signal "
                f"{-done.returncode} (out of memory?); it will be retried."
            )
        if done.returncode != 0 or not result_path.is_file():
            tail = "\n".join(done.stderr.strip().splitlines()[-10:])
            raise UserError(f"The {request['mode']} measurement of {Path(request['model']).name} failed:\n{tail}")
        return json.loads(result_path.read_text())


def prepare_tokens(base_gguf: Path, *, base_key: str, config: EvalConfig, store_root: Path) -> Path:
    """Tokenize the evaluation text once with the base model; every variant scores these ids."""
    text = load_corpus_text(config.corpus)
    material = {"base_key": base_key, "text": corpus_identity(text)}

    def build(tmp: Path) -> None:
        (tmp / "text.txt").write_text(text, encoding="utf-8")
        result = run_worker(
            {"mode": "tokenize", "model": str(base_gguf), "text_file": str(tmp / "text.txt")},
            timeout_s=config.timeout_s,
        )
        (tmp / "tokens.json").write_text(json.dumps(result))

    return stored_step(store_root, "tokens", material, build).path / "tokens.json"


def measurement_material(
    *, variant_key: str, base_key: str | None, tokens_file: Path, config: EvalConfig, threads: int,
    hardware_id: str, tools: tuple[str, ...],
) -> dict:
    """What a stored measurement depends on (GGUF and ONNX alike): change any of it, measure again."""
    return {
        "variant_key": variant_key, "base_key": base_key, "tokens": tokens_file.parent.name,
        "protocol": config.model_dump(mode="json"), "threads": threads, "hardware_id": hardware_id,
        "versions": subset(tool_versions(tools), *tools),
        "attention": "flash",  # llama_runner.open_model turned flash attention on: older figures differ
        "rss": "VmHWM",  # peak RSS from the worker's own address space (ru_maxrss inherits the parent's)
    }


def evaluate_gguf(
    variant_gguf: Path, *, variant_key: str, base_gguf: Path | None, base_key: str | None,
    tokens_file: Path, config: EvalConfig, hardware_id: str, store_root: Path,
) -> tuple[dict[str, float], bool]:
    """All figures of one GGUF variant; reused from the store when nothing they depend on changed.

    Returns (metrics, reused). `base_gguf` is None for the base itself (no divergence to measure).
    """
    threads = config.threads or default_threads()
    material = measurement_material(
        variant_key=variant_key, base_key=base_key, tokens_file=tokens_file, config=config,
        threads=threads, hardware_id=hardware_id, tools=("llama-cpp-python",),
    )
    material["prompt_suite"] = sha256_file(suite) if (suite := prompt_suite_file(config)) else None

    def build(tmp: Path) -> None:
        metrics = measure_gguf(variant_gguf, base_gguf, tokens_file, config, threads)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))

    stored = stored_step(store_root, "evaluate", material, build)
    return json.loads((stored.path / "metrics.json").read_text()), stored.reused


def measure_gguf(
    variant_gguf: Path, base_gguf: Path | None, tokens_file: Path, config: EvalConfig, threads: int
) -> dict[str, float]:
    """Size, quality and speed of one GGUF, measured now (no cache)."""
    from tasks.evaluate.gguf_facts import gguf_size_facts

    metrics: dict[str, float] = dict(gguf_size_facts(variant_gguf))
    common = {"model": str(variant_gguf), "threads": threads, "n_gpu_layers": config.n_gpu_layers}
    metrics.update(run_worker(
        {**common, "mode": "quality", "base": str(base_gguf) if base_gguf else None,
         "tokens_file": str(tokens_file), "n_ctx": config.n_ctx, "max_chunks": config.max_chunks},
        timeout_s=config.timeout_s,
    ))
    tokens = json.loads(tokens_file.read_text())["tokens"]
    metrics.update(run_worker(
        {**common, "mode": "speed", "prefill_tokens": config.prefill_tokens,
         "decode_tokens": config.decode_tokens, "repetitions": config.repetitions,
         "depths": config.depths, "ttft_prompt": tokens[: config.ttft_prompt_tokens]},
        timeout_s=config.timeout_s,
    ))
    suite = prompt_suite_file(config)
    if suite is not None:  # greedy answers: task_score now, golden_agreement once the base's are known
        metrics.update(run_worker({**common, "mode": "prompts", "prompts_file": str(suite)}, timeout_s=config.timeout_s))
    return metrics
