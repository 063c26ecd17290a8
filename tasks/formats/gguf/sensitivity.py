"""Measured sensitivity of each tensor group to a lower type: the data a budget mix is chosen from.

For each group (token_embd, output, and each per-layer role: attn_q, ..., ffn_down, over all layers)
and each candidate type that fits its rows without llama.cpp's fallback, one GGUF is made with that
group lowered and every other tensor at Q8_0; its mean KL divergence from the f16 base on a few
*calibration* chunks (never the evaluation text), minus that of the all-Q8_0 file, is the group's
cost at that type. Scoring reuses the evaluation machinery as is (worker modes tokenize / reference /
quality, llama-perplexity's encoding). Each table is stored once per (base, imatrix, calibration,
ladder, tools) and shared by every budget target.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tasks.evaluate.process import run_worker
from tasks.formats.gguf.llama_tools import tools_record
from tasks.formats.gguf.quantize_tool import quantize_with_tool
from tasks.store.artifacts import stored_step
from tasks.store.codeid import code_identity
from tasks.store.gguf_header import read_gguf
from tasks.store.hashing import sha256_json

TOP = "Q8_0"  # every tensor not being probed; near-lossless, so costs add up
LADDER_256 = ("Q8_0", "Q6_K", "Q5_K", "Q4_K", "IQ4_XS", "Q3_K", "Q2_K")  # rows divisible by 256
LADDER_32 = ("Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0", "IQ4_NL")  # rows divisible by 32 only
TABLE = "sensitivity.json"
RUNTIME = "tasks.formats.gguf.runtime"


def tensor_groups(base_gguf: Path) -> dict[str, dict]:
    """Quantizable 2-D weights by group: {group: {"pattern", "tensors": {name: (n_elements, ncols)}}}."""
    groups: dict[str, dict] = {}
    for tensor in read_gguf(base_gguf).tensors:
        if len(tensor.shape) < 2 or not tensor.name.endswith(".weight"):
            continue  # norms and biases stay F32, as llama-quantize keeps them
        role = re.sub(r"^blk\.\d+\.", "", tensor.name).removesuffix(".weight")
        group = groups.setdefault(role, {"pattern": rf"(^|\.){re.escape(role)}\.weight$", "tensors": {}})
        group["tensors"][tensor.name] = (int(tensor.n_elements), int(tensor.shape[0]))
    return groups


def ladder(group: dict, allowed: list[str] | None = None) -> tuple[str, ...]:
    """Candidate types every tensor of the group can hold as is (no silent fallback), of `allowed`."""
    if all(ncols % 256 == 0 for _, ncols in group["tensors"].values()):
        found = LADDER_256
    elif all(ncols % 32 == 0 for _, ncols in group["tensors"].values()):
        found = LADDER_32
    else:
        found = (TOP,)
    return tuple(t for t in found if allowed is None or t in allowed)


def group_bytes(group: dict, kind: str) -> int:
    """Bytes of the group's tensor data at `kind` (ggml block sizes, from the gguf package)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType  # gguf: its numpy reader, only where a GGUF file is read

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[kind]]
    return sum(n // block * size for n, _ in group["tensors"].values())


def overrides_for(groups: dict[str, dict], choice: dict[str, str]) -> dict:
    """llama-quantize overrides that put each group at its chosen type (token_embd via its own flag)."""
    rules = {groups[g]["pattern"]: kind for g, kind in choice.items() if g != "token_embd"}
    found = {"tensor_types": rules}
    if "token_embd" in choice:
        found["token_embedding_type"] = choice["token_embd"]
    return found


def sensitivity_table(base_gguf: Path, *, base_key: str, imatrix, calibration_tokens: Path, chunks: int, n_ctx: int,
                      threads: int, store_root: Path, allowed: list[str] | None = None) -> dict:
    """{"groups": {g: {type: {"bytes", "kld"}}}, "top_kld", "fixed_bytes"}, measured once and stored."""
    groups = tensor_groups(base_gguf)
    material = {"base_key": base_key, "imatrix_key": imatrix.key if imatrix else None, "top": TOP,
                "tokens": sha256_json(calibration_tokens.read_text()), "chunks": chunks, "n_ctx": n_ctx,
                "ladders": {g: ladder(v, allowed) for g, v in groups.items()}, "tools": tools_record(),
                "code": code_identity(__name__)}

    def build(tmp: Path) -> None:
        table = _measure(base_gguf, groups, imatrix, calibration_tokens, chunks, n_ctx, threads, tmp,
                         material["ladders"])
        (tmp / TABLE).write_text(json.dumps(table, indent=2))

    stored = stored_step(store_root, "gguf-sensitivity", material, build)
    return json.loads((stored.path / TABLE).read_text())


def _measure(base_gguf: Path, groups: dict, imatrix, tokens: Path, chunks: int, n_ctx: int, threads: int,
             tmp: Path, ladders: dict[str, tuple[str, ...]]) -> dict:
    reference = tmp / "reference"
    reference.mkdir()
    run_worker({"mode": "reference", "runtime": RUNTIME, "model": str(base_gguf), "tokens_file": str(tokens),
                "n_ctx": n_ctx, "max_chunks": chunks, "out_dir": str(reference), "threads": threads}, timeout_s=3600)
    top = {g: TOP for g in groups}
    top_kld, overhead = _kld_of(base_gguf, groups, top, imatrix, tokens, reference, threads, tmp)
    table = {g: {} for g in groups}
    for g, group in groups.items():
        for kind in ladders[g]:
            kld = top_kld if kind == TOP else _kld_of(base_gguf, groups, {**top, g: kind}, imatrix, tokens,
                                                      reference, threads, tmp)[0]
            table[g][kind] = {"bytes": group_bytes(group, kind), "kld": kld - top_kld}
    return {"groups": table, "top_kld": top_kld, "chunks": chunks, "n_ctx": n_ctx, "overhead_bytes": overhead,
            "fixed_bytes": fixed_tensor_bytes(base_gguf, groups),
            "patterns": {g: v["pattern"] for g, v in groups.items()}}


def fixed_tensor_bytes(base_gguf: Path, groups: dict) -> int:
    """Bytes of the tensors no group holds (norms, kept in F32 by llama-quantize)."""
    in_groups = {name for group in groups.values() for name in group["tensors"]}
    return sum(int(t.n_bytes) for t in read_gguf(base_gguf).tensors if t.name not in in_groups)


def _kld_of(base_gguf: Path, groups: dict, choice: dict, imatrix, tokens: Path, reference: Path, threads: int,
            tmp: Path) -> tuple[float, int]:
    """(mean KLD of one probe file on the calibration chunks, its bytes beyond tensor data); the file
    is deleted at once (a probe per group and type would fill the disk)."""
    probe = tmp / "probe.gguf"
    quantize_with_tool(base_gguf, probe, TOP, overrides=overrides_for(groups, choice),
                       imatrix=imatrix.path if imatrix else None, threads=threads, tools={})
    try:
        overhead = probe.stat().st_size - sum(int(t.n_bytes) for t in read_gguf(probe).tensors)
        result = run_worker({"mode": "quality", "runtime": RUNTIME, "model": str(probe), "tokens_file": str(tokens),
                             "n_ctx": n_ctx_of(reference), "reference_dir": str(reference), "threads": threads},
                            timeout_s=3600)
    finally:
        probe.unlink(missing_ok=True)
        (tmp / "llama-tools.json").unlink(missing_ok=True)
    return float(result["kld_mean"]), overhead


def n_ctx_of(reference: Path) -> int:
    return json.loads((reference / "reference.json").read_text())["n_ctx"]
