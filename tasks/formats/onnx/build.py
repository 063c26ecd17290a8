"""ONNX build: the acquired HF folder -> a stored ONNX Runtime GenAI folder per precision (Olive)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from tasks.formats.onnx.config import OnnxTargets
from tasks.formats.onnx.export import export_onnx
from tasks.plan.guard import check_onnx_export
from tasks.store.artifacts import link_or_copy, stored_step
from tasks.store.codeid import code_identity
from tasks.store.versions import subset, tool_versions

# What shapes an exported graph: Olive and the GenAI builder, and the loaders they call.
EXPORT_TOOLS = ("olive-ai", "onnxruntime-genai", "onnxruntime", "onnx", "transformers", "torch")
# The modules that shape an exported folder (a fix in any of them rebuilds it).
# Imported by the export's child script (source text in export.py), so outside this module's import closure.
CHILD_CODE = "tasks.formats.onnx.legacy_config"
MODEL_DIR = "model"  # the GenAI folder inside the stored export; export.json sits beside it


class OnnxVariantExport(BaseModel):
    """A stored ONNX Runtime GenAI folder of one precision."""

    folder: Path
    precision: str
    key: str
    reused: bool
    wall_s: float  # of the export that built it (also on reuse)
    versions: dict[str, str]


def export_onnx_variant(
    hf_dir: Path, *, identity: str, model_name: str, precision: str, targets: OnnxTargets, store_root: Path,
) -> OnnxVariantExport:
    """Export `hf_dir` at `precision` (Olive, in a subprocess), reused when nothing it depends on changed."""
    config = targets.export_config(precision)
    material = {"hf_identity": identity, "export": config.model_dump(mode="json"), "model_name": model_name,
                "versions": subset(tool_versions(EXPORT_TOOLS), *EXPORT_TOOLS),
                "code": code_identity(__name__, CHILD_CODE)}

    def build(tmp: Path) -> None:
        check_onnx_export(hf_dir, precision)
        result = export_onnx(hf_dir, tmp / MODEL_DIR, config, timeout_s=targets.export_timeout_s)
        _ensure_chat_template(tmp / MODEL_DIR, hf_dir)
        record = {"model_name": model_name, "precision": precision, "wall_s": result.wall_s,
                  "versions": result.versions, "tool": result.tool, "files": result.files,
                  "embeddings": result.embeddings}
        (tmp / "export.json").write_text(json.dumps(record, indent=2))

    stored = stored_step(store_root, "onnx-export", material, build)
    record = json.loads((stored.path / "export.json").read_text())
    return OnnxVariantExport(folder=stored.path / MODEL_DIR, precision=precision, key=stored.key,
                             reused=stored.reused, wall_s=record["wall_s"], versions=record["versions"])


def _ensure_chat_template(target: Path, hf_dir: Path) -> None:
    # The builder copies the tokenizer files; older checkpoints keep the template only inside
    # tokenizer_config.json, which GenAI reads too, so a separate file is written only if found.
    if (target / "chat_template.jinja").is_file():
        return
    source = hf_dir / "chat_template.jinja"
    if source.is_file():
        link_or_copy(source, target / "chat_template.jinja")
