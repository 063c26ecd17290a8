"""The importance matrix of a base GGUF: computed once per (base, calibration text, settings, tools)
with llama.cpp's llama-imatrix, stored, and reused by every type that asks for it.

The file is llama-imatrix's GGUF format (this llama.cpp's default when the name ends in .gguf); its
`imatrix.datasets` / `imatrix.chunk_count` are what llama-quantize copies into each quantized GGUF as
quantize.imatrix.dataset / chunks_count (plus .file and .entries_count).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from tasks.core.naming import gguf_file_name
from tasks.formats.gguf.calibration import CalibrationConfig, calibration_text
from tasks.formats.gguf.llama_tools import run_tool, tools_record
from tasks.plan.guard import check_imatrix
from tasks.plan.records import metered_within
from tasks.store.artifacts import stored_step
from tasks.store.codeid import code_identity
from tasks.store.gguf_header import read_gguf
from tasks.store.hashing import sha256_json

RECORD = "imatrix.json"


class Imatrix(BaseModel):
    path: Path
    key: str
    reused: bool
    record: dict


def imatrix_file_name(model_name: str) -> str:
    """The name llama-quantize records as quantize.imatrix.file."""
    return gguf_file_name(model_name, "imatrix")


def compute_imatrix(base_gguf: Path, *, base_key: str, model_name: str, calibration: CalibrationConfig,
                    threads: int | None, store_root: Path, n_weights: int = 0,
                    evaluation: list | None = None) -> Imatrix:
    """The stored importance matrix of `base_gguf` for `calibration`, computed only if missing (and
    then metered as the run's `imatrix` step, given the base's `n_weights`). `evaluation`: the run's
    evaluation texts, which the built-in calibration text must share nothing with."""
    text, dataset = calibration_text(calibration.text, evaluation)
    file_name = imatrix_file_name(model_name)
    material = {
        "base_key": base_key, "text_sha256": sha256_json(text), "dataset": dataset, "chunks": calibration.chunks,
        "n_ctx": calibration.n_ctx, "file_name": file_name, "tools": tools_record(), "code": code_identity(__name__),
    }

    def build(tmp: Path) -> None:
        with metered_within("imatrix") as note:
            _build(tmp, base_gguf, text, dataset, file_name, calibration, threads, material["tools"])
            note.n_weights, note.chunks, note.strategy = n_weights, calibration.chunks, "llama.cpp"

    stored = stored_step(store_root, "imatrix", material, build)
    record = json.loads((stored.path / RECORD).read_text())
    return Imatrix(path=stored.path / file_name, key=stored.key, reused=stored.reused, record=record)


def _build(tmp: Path, base_gguf: Path, text: str, dataset: str, file_name: str, calibration: CalibrationConfig,
           threads: int | None, tools: dict) -> None:
    check_imatrix(base_gguf, n_ctx=calibration.n_ctx)
    text_file = f"{dataset}.txt"  # relative, run in tmp: llama-imatrix records this name as the dataset
    (tmp / text_file).write_text(text, encoding="utf-8")
    args = ["-m", str(base_gguf.resolve()), "-f", text_file, "-o", file_name, "--chunks", str(calibration.chunks),
            "-c", str(calibration.n_ctx), "--no-ppl"]
    if threads:
        args += ["-t", str(threads)]
    run_tool("llama-imatrix", args, log_path=tmp / "llama-imatrix.log", cwd=tmp, what="compute the importance matrix")
    (tmp / RECORD).write_text(json.dumps({**read_imatrix_facts(tmp / file_name), "tools": tools}, indent=2))


def read_imatrix_facts(path: Path) -> dict:
    """Datasets, chunk count and entries (tensors) of an imatrix GGUF, read with the gguf reader."""
    reader = read_gguf(path)
    fields = {name: field.contents() for name, field in reader.fields.items() if name.startswith("imatrix.")}
    entries = {t.name.removesuffix(".in_sum2") for t in reader.tensors if t.name.endswith(".in_sum2")}
    return {"datasets": fields.get("imatrix.datasets"), "chunk_count": fields.get("imatrix.chunk_count"),
            "chunk_size": fields.get("imatrix.chunk_size"), "entries": len(entries)}
