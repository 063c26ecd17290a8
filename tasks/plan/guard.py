"""The check each heavy step's core makes right before its work: predicted peak vs what this process may use.

Raises InsufficientMemoryError (a UserError: never retried) naming the step, the need, the limit and the
remedy, so that a step too big for its host fails in a second instead of being OOM-killed minutes in.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tasks.plan import needs as N
from tasks.plan.costs import GGUF_BPW
from tasks.plan.ledger import admit
from tasks.plan.shapes import shape_from_gguf, shape_from_hf


def require(need: N.Need, *, remedy: str = "") -> N.Need:
    """`need` admitted beside the steps running in this process (tasks.plan.ledger): it waits while they
    hold the memory it needs, and fails now when it would not fit even alone."""
    return admit([need], on_wait=_say, remedy=remedy or (
        "free memory on this host or raise the container's/cgroup's limit; `slmforge plan CONFIG` shows every "
        "step's need"))


def _say(message: str) -> None:
    """On the run's log (the Prefect UI) when a task run is current, else on this module's logger."""
    from prefect import get_run_logger  # only once a step waits
    from prefect.exceptions import MissingContextError

    try:
        get_run_logger().warning(message)
    except MissingContextError:
        logging.getLogger(__name__).warning(message)


def gguf_shape(path: Path):
    """The shape from a GGUF header; None when the file is no readable GGUF (the step's own tool then
    says what is wrong with it, better than a guess here)."""
    try:
        return shape_from_gguf(path)
    except (ValueError, OSError, KeyError, IndexError):
        return None


def path_bytes(path: Path) -> int:
    """A variant's bytes: a file, or every file of a folder (ONNX)."""
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def check_convert(hf_dir: Path, outtype: str) -> None:
    shape = shape_from_hf(hf_dir)
    require(N.convert_need(shape, shape.source_bytes / shape.n_weights, outtype))


def check_reference(base_gguf: Path, *, n_ctx: int, chunks: int) -> None:
    if (shape := gguf_shape(base_gguf)) is None:
        return
    require(N.reference_need(shape, n_ctx=n_ctx, chunks=chunks),
            remedy="free memory or lower evaluate.n_ctx; the reference pass holds the f16 model")


def check_measure(base_gguf: Path, variant: Path, *, fmt: str, quant: str, n_ctx: int, speed_ctx: int,
                  quality: bool = True, anchor: bool = False) -> None:
    """The variant `fmt quant` (its file or folder `variant`) measured: the need the plan prices for its row
    (`measure gguf Q8_0`; an ONNX variant by ONNX Runtime's formula, not llama.cpp's)."""
    if (shape := gguf_shape(base_gguf)) is None:
        return
    need = N.measure_need(shape, variant=f"{fmt} {quant}", model_bytes=path_bytes(variant), n_ctx=n_ctx,
                          speed_ctx=speed_ctx, quality=quality, anchor_bytes=path_bytes(base_gguf) if anchor else 0)
    require(need, remedy="free memory, lower evaluate.n_ctx / depths, or measure this variant on a bigger host "
                         "(`hardware:` classes)")


def check_llama_pass(step: str, shape_gguf: Path, *, model_file: Path, n_ctx: int, logits_rows: int | None = None,
                     quant: str = "") -> None:
    """A llama.cpp process holding `model_file` (of type `quant`) at `n_ctx` (a served variant)."""
    if (shape := gguf_shape(shape_gguf)) is None:
        return
    require(N.llama_pass_need(step, shape, kind="serve", model_bytes=path_bytes(model_file), n_ctx=n_ctx,
                              logits_rows=logits_rows, quant=quant),
            remedy="free memory or lower the step's context (n_ctx)")


def check_quantize(base_gguf: Path, quant_type: str, label: str) -> None:
    if (shape := gguf_shape(base_gguf)) is None:
        return
    require(N.quantize_need(shape, GGUF_BPW.get(quant_type, 8.5), f"gguf {label}"),
            remedy="free memory or build one variant at a time (builds: {threads: 1})")


def check_imatrix(base_gguf: Path, *, n_ctx: int) -> None:
    if (shape := gguf_shape(base_gguf)) is None:
        return
    require(N.imatrix_need(shape, n_ctx=n_ctx), remedy="free memory or switch the importance matrix off")


def check_onnx_export(hf_dir: Path, precision: str) -> None:
    shape = shape_from_hf(hf_dir)
    require(N.onnx_export_need(shape, precision, shape.source_bytes / shape.n_weights),
            remedy="free memory or switch the ONNX format off for this model (`formats: {onnx: null}`)")
