"""ONNX variants as pipeline steps: export (stored), evaluate (cached), package (smoke-tested).

Pure cores: explicit inputs, typed results, no Prefect or MLflow. Every measurement, and the
packaging smoke test, runs in `tasks.onnx.worker` in a fresh process, as GGUF measurements do.
Quality is scored against the f16 GGUF base on the tokens GGUF variants are scored on, so an
ONNX row and a GGUF row of the results table are on the same scale.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from tasks.evaluate import EvalConfig, default_threads, measurement_material, run_worker
from tasks.onnx.config import OnnxTargets
from tasks.onnx.export import export_onnx
from tasks.package import link_or_copy
from tasks.package.card import model_card
from tasks.store import stored_step
from tasks.versions import subset, tool_versions

WORKER = "tasks.onnx.worker"
# What shapes an exported graph: Olive and the GenAI builder, and the loaders they call.
EXPORT_TOOLS = ("olive-ai", "onnxruntime-genai", "onnxruntime", "onnx", "transformers", "torch")
# What shapes a measurement: both runtimes (the base GGUF runs on llama.cpp).
EVAL_TOOLS = ("onnxruntime", "onnxruntime-genai", "llama-cpp-python")
MODEL_DIR = "model"  # the GenAI folder inside the stored export; export.json sits beside it
WEIGHT_SUFFIXES = (".onnx", ".onnx.data")


class OnnxVariantExport(BaseModel):
    """A stored ONNX Runtime GenAI folder of one precision."""

    folder: Path
    precision: str
    key: str
    reused: bool
    wall_s: float  # of the export that built it (also on reuse)
    versions: dict[str, str]


class PackagedOnnxVariant(BaseModel):
    folder: Path
    key: str
    reused: bool
    smoke_prompt: str
    smoke_answer: str


def export_onnx_variant(
    hf_dir: Path, *, identity: str, model_name: str, precision: str, targets: OnnxTargets, store_root: Path,
) -> OnnxVariantExport:
    """Export `hf_dir` at `precision` (Olive, in a subprocess), reused when nothing it depends on changed."""
    config = targets.export_config(precision)
    material = {"hf_identity": identity, "export": config.model_dump(mode="json"),
                "versions": subset(tool_versions(EXPORT_TOOLS), *EXPORT_TOOLS)}

    def build(tmp: Path) -> None:
        result = export_onnx(hf_dir, tmp / MODEL_DIR, config, timeout_s=targets.export_timeout_s)
        record = {"model_name": model_name, "precision": precision, "wall_s": result.wall_s,
                  "versions": result.versions, "tool": result.tool, "files": result.files}
        (tmp / "export.json").write_text(json.dumps(record, indent=2))

    stored = stored_step(store_root, "onnx-export", material, build)
    record = json.loads((stored.path / "export.json").read_text())
    return OnnxVariantExport(folder=stored.path / MODEL_DIR, precision=precision, key=stored.key,
                             reused=stored.reused, wall_s=record["wall_s"], versions=record["versions"])


def onnx_size_facts(folder: Path, *, n_weights: int) -> dict[str, float]:
    """size_bytes: the whole folder (what ships). bits_per_weight: graph + weight files only,
    the ONNX analogue of llama.cpp's tensor bytes / weights, over the base's weight count."""
    files = [p for p in folder.iterdir() if p.is_file()]
    weight_bytes = sum(p.stat().st_size for p in files if p.name.endswith(WEIGHT_SUFFIXES))
    return {"size_bytes": sum(p.stat().st_size for p in files), "bits_per_weight": weight_bytes * 8 / n_weights,
            "n_weights": n_weights, "weight_bytes": weight_bytes}


def evaluate_onnx(
    folder: Path, *, variant_key: str, base_gguf: Path, base_key: str, tokens_file: Path,
    config: EvalConfig, hardware_id: str, store_root: Path,
) -> tuple[dict[str, float], bool]:
    """All figures of one ONNX variant, like `evaluate_gguf`: (metrics, reused)."""
    threads = config.threads or default_threads()
    material = measurement_material(
        variant_key=variant_key, base_key=base_key, tokens_file=tokens_file, config=config,
        threads=threads, hardware_id=hardware_id, tools=EVAL_TOOLS,
    )

    def build(tmp: Path) -> None:
        metrics = measure_onnx(folder, base_gguf, tokens_file, config, threads)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))

    stored = stored_step(store_root, "onnx-evaluate", material, build)
    return json.loads((stored.path / "metrics.json").read_text()), stored.reused


def measure_onnx(
    folder: Path, base_gguf: Path, tokens_file: Path, config: EvalConfig, threads: int
) -> dict[str, float]:
    """Size, quality (against the base GGUF) and speed of one ONNX folder, measured now."""
    from tasks.evaluate.gguf_facts import gguf_size_facts

    metrics = onnx_size_facts(folder, n_weights=int(gguf_size_facts(base_gguf)["n_weights"]))
    common = {"model": str(folder), "threads": threads, "n_gpu_layers": config.n_gpu_layers}
    metrics.update(run_worker(
        {**common, "mode": "quality", "base": str(base_gguf), "tokens_file": str(tokens_file),
         "n_ctx": config.n_ctx, "max_chunks": config.max_chunks},
        timeout_s=config.timeout_s, module=WORKER,
    ))
    tokens = json.loads(tokens_file.read_text())["tokens"]
    metrics.update(run_worker(
        {**common, "mode": "speed", "prefill_tokens": config.prefill_tokens, "decode_tokens": config.decode_tokens,
         "repetitions": config.repetitions, "depths": config.depths,
         "ttft_prompt": tokens[: config.ttft_prompt_tokens]},
        timeout_s=config.timeout_s, module=WORKER,
    ))
    return metrics


def package_onnx_variant(
    folder: Path, *, hf_dir: Path, model_name: str, precision: str, variant_key: str, metrics: dict,
    provenance: dict, targets: OnnxTargets, store_root: Path, threads: int | None = None,
) -> PackagedOnnxVariant:
    """A deployable GenAI folder: model files, tokenizer, chat template, README.md card, manifest.

    Validated by serving it: a greedy answer to `targets.smoke_prompt`, generated from the
    assembled folder itself, is recorded in the card and returned.
    """
    material = {"variant_key": variant_key, "metrics": metrics, "provenance": provenance,
                "smoke": [targets.smoke_prompt, targets.smoke_max_new_tokens]}

    def build(tmp: Path) -> None:
        for item in sorted(folder.iterdir()):
            if item.is_file():
                link_or_copy(item, tmp / item.name)
        _ensure_chat_template(tmp, hf_dir)
        smoke = run_worker(
            {"mode": "smoke", "model": str(tmp), "prompt": targets.smoke_prompt,
             "max_new_tokens": targets.smoke_max_new_tokens, "threads": threads or default_threads()},
            timeout_s=targets.export_timeout_s, module=WORKER,
        )
        (tmp / "smoke_test.json").write_text(json.dumps(smoke, indent=2))
        (tmp / "README.md").write_text(model_card(
            title=f"{model_name} {precision} (ONNX Runtime GenAI)",
            variant={"format": "onnx", "quant": precision, "runtime": "onnxruntime-genai",
                     "files": ", ".join(sorted(p.name for p in folder.iterdir() if p.is_file()))},
            provenance=provenance, metrics=metrics, usage=_usage(smoke),
        ))

    stored = stored_step(store_root, "onnx-package", material, build)
    smoke = json.loads((stored.path / "smoke_test.json").read_text())
    return PackagedOnnxVariant(folder=stored.path, key=stored.key, reused=stored.reused,
                               smoke_prompt=smoke["prompt"], smoke_answer=smoke["answer"])


def _ensure_chat_template(target: Path, hf_dir: Path) -> None:
    # The builder copies the tokenizer files; older checkpoints keep the template only inside
    # tokenizer_config.json, which GenAI reads too, so a separate file is written only if found.
    if (target / "chat_template.jinja").is_file():
        return
    source = hf_dir / "chat_template.jinja"
    if source.is_file():
        link_or_copy(source, target / "chat_template.jinja")


def _usage(smoke: dict) -> str:
    answer = smoke["answer"].replace("\n", "\\n").replace("`", "'")
    return (
        "With ONNX Runtime GenAI (`pip install onnxruntime-genai`), from this folder:\n\n"
        "```python\nimport json\nimport onnxruntime_genai as og\n\n"
        'model = og.Model(".")\ntokenizer = og.Tokenizer(model)\n'
        f'messages = json.dumps([{{"role": "user", "content": {json.dumps(smoke["prompt"])}}}])\n'
        "prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)\n"
        "params = og.GeneratorParams(model)\nparams.set_search_options(do_sample=False, max_length=256)\n"
        "generator = og.Generator(model, params)\ngenerator.append_tokens(tokenizer.encode(prompt))\n"
        "while not generator.is_done():\n    generator.generate_next_token()\n"
        "print(tokenizer.decode(generator.get_sequence(0)))\n```\n\n"
        "## Smoke test\n\nGenerated greedily from this packaged folder with its chat template when it "
        f"was built ({smoke['answer_tokens']} tokens):\n\n- **prompt**: `{smoke['prompt']}`\n"
        f"- **answer**: `{answer}`\n"
    )
