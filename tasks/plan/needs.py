"""Peak memory and disk of each heavy step, predicted from the model's facts before it starts.

Each step has one or more strategies, cheapest-to-trust first; `choose` picks the first that fits the
memory this process may use, or raises InsufficientMemoryError naming the step, the need, the limit and
the remedy, before any work. Every figure is a peak resident set size (what the kernel must hold at
once, file-mapped model pages included: a model mapped but not resident would thrash).

The dequantize constants were fitted on peaks measured on the 2-core, 24 GiB build host
(tests/benchmarks/measure_step_memory.py); each comment says which run, and says "estimate" where a
formula is not fitted yet. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.core.errors import InsufficientMemoryError
from tasks.plan.limits import MemoryLimit, gib
from tasks.plan.shapes import ModelShape

# A Python process with torch + transformers imported, before any weight (estimate; convert's fit below).
TORCH_PROCESS = 480 * 2**20
# A process with llama-cpp-python loaded and a context allocated, before the model (estimate).
LLAMA_PROCESS = 260 * 2**20
# transformers' path (tasks.acquire.dequantize): the packed GGUF tensors, the loaded model and the fresh copy
# saved from it. peak = base + GGUF bytes + copies x weights x dtype bytes, fitted on measured peaks (RSS):
# SmolLM2-135M Q4_1 -> bf16 1.10 GB, -> f32 1.69 GB; Qwen2.5-Coder-1.5B Q4_K_M -> f32 14.4 GB.
TRANSFORMERS_BASE = 600_000_000
TRANSFORMERS_COPIES = 1.85
# The streaming path (tasks.acquire.dequantize_stream): the tokenizer built from the GGUF grows with the
# vocabulary, and the largest tensor is held at the target dtype. Fitted on SmolLM2-135M -> f32 0.86 GiB,
# -> bf16 0.78 GiB; Qwen2.5-Coder-1.5B -> f32 2.27 GiB, -> bf16 2.03 GiB (the pipeline run's step record).
STREAM_BASE = 478_000_000
STREAM_PER_VOCAB = 6750
STREAM_LARGEST_COPIES = 1.0
# llama.cpp's converter: tensors read lazily from the mapped safetensors; the 1.5B's bf16 -> f16 peaked at
# 1.81 GiB (one pipeline run's step record): the torch process plus 0.4 bytes per input byte.
CONVERT_PER_INPUT_BYTE = 0.405
STREAM_SHARD_BYTES = 512 * 2**20  # tasks.acquire.dequantize_stream's shard files (sizes on disk, not memory)
# Architectures the streaming dequantize knows how to undo llama.cpp's converter for: llama checked tensor for
# tensor against the transformers path (tests/integration/test_dequantize_stream.py); qwen2 stores its tensors
# unpermuted (transformers' own loader applies no processor to it); mistral GGUFs say "llama".
STREAMABLE_ARCHITECTURES = frozenset({"llama", "mistral", "qwen2"})
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
SLACK = 1.0  # the formulas below that are not fitted yet are taken as they are
# A step starts only when its central prediction times this fits: the fits above are within about 10 %.
SAFETY = 1.10


@dataclass(frozen=True)
class Need:
    """One strategy's predicted peak memory and disk for one step."""

    step: str
    strategy: str
    peak_bytes: int
    disk_bytes: int
    note: str = ""


def dequantize_needs(shape: ModelShape, dtype: str) -> list[Need]:
    """GGUF -> HF folder: the transformers path at the configured dtype, then the streaming path
    (one tensor and one shard at a time), then streaming at 2 bytes a weight when f32 was asked
    (half the disk)."""
    out = DTYPE_BYTES[dtype]
    largest = shape.vocab * shape.hidden  # the embedding (or output) matrix: the biggest tensor
    whole = TRANSFORMERS_BASE + shape.source_bytes + TRANSFORMERS_COPIES * shape.n_weights * out
    streaming = STREAM_BASE + STREAM_PER_VOCAB * shape.vocab + STREAM_LARGEST_COPIES * largest * out
    needs = [Need("acquire", f"transformers-{dtype}", int(whole), shape.n_weights * out)]
    if shape.architecture not in STREAMABLE_ARCHITECTURES:
        return needs
    needs.append(Need("acquire", f"streaming-{dtype}", int(streaming), shape.n_weights * out,
                      "dequantized one tensor at a time, written in shards"))
    if out == 4:
        needs.append(Need("acquire", "streaming-bfloat16", int(streaming - STREAM_LARGEST_COPIES * largest * 2),
                          shape.n_weights * 2,
                          "bf16 instead of f32: half the disk; rounds the dequantized values to 8 mantissa bits"))
    return needs


def convert_need(shape: ModelShape, hf_bytes_per_weight: float, outtype: str = "f16") -> Need:
    """HF -> f16 GGUF (llama.cpp's converter): tensors read lazily and written one by one, the input
    safetensors mapped; the GGUF writer holds the output tensors until it writes them."""
    out = 4 if outtype == "f32" else 1 if outtype == "q8_0" else 2
    peak = TORCH_PROCESS + CONVERT_PER_INPUT_BYTE * shape.n_weights * hf_bytes_per_weight * out / 2
    return Need("convert", outtype, int(peak), shape.n_weights * out)


def quantize_need(shape: ModelShape, bits_per_weight: float, label: str) -> Need:
    """llama.cpp quantize: the f16 input mapped, one output tensor at a time."""
    peak = LLAMA_PROCESS + shape.n_weights * 2 * 0.5 + shape.vocab * shape.hidden * 4
    return Need(f"build {label}", "llama_model_quantize", int(peak * SLACK), int(shape.n_weights * bits_per_weight / 8))


def llama_pass_need(step: str, shape: ModelShape, *, model_bytes: int, n_ctx: int, disk_bytes: int = 0,
                    logits_rows: int | None = None) -> Need:
    """A llama.cpp process holding one model: its weights, the f16 KV cache, a float32 logits row per
    scored position (the reference and quality passes ask for all of them) and the compute buffer."""
    rows = n_ctx if logits_rows is None else logits_rows
    compute = n_ctx * shape.hidden * 4 * 8  # llama.cpp's graph buffer at n_ctx (ubatch 512), estimate
    peak = LLAMA_PROCESS + model_bytes + shape.kv_bytes(n_ctx) + rows * shape.vocab * 4 + compute
    return Need(step, "llama.cpp", int(peak * SLACK), disk_bytes)


def reference_need(shape: ModelShape, *, n_ctx: int, chunks: int) -> Need:
    """The f16 reference pass; stores ~2 bytes per vocabulary entry per scored token (uint16 log-probs)."""
    disk = chunks * (n_ctx // 2 - 1) * (2 * shape.vocab + 12)
    return llama_pass_need("reference pass", shape, model_bytes=shape.n_weights * 2, n_ctx=n_ctx, disk_bytes=disk)


def measure_need(shape: ModelShape, *, variant: str, model_bytes: int, n_ctx: int, speed_ctx: int,
                 quality: bool = True, anchor_bytes: int = 0) -> Need:
    """One variant's measurement workers, one after the other: the quality pass (all logits of a chunk, the
    reference's scored half decoded to float32 beside them) and the speed tests (prefill + decode + depth).
    The f16 base has no quality pass (the reference pass scored it). Measured on the 1.5B (quick protocol):
    f16 base 3.54 GiB, Q4_K_M 1.78 GiB; these formulas give 3.56 and 1.73. With a speed anchor
    (`anchor_bytes`: the f16 base's file), the anchor's own process holds the f16 beside the variant's."""
    speed = llama_pass_need(f"measure {variant}", shape, model_bytes=model_bytes, n_ctx=speed_ctx, logits_rows=1)
    if anchor_bytes:
        anchor = llama_pass_need("speed anchor", shape, model_bytes=anchor_bytes, n_ctx=speed_ctx, logits_rows=1)
        speed = Need(speed.step, speed.strategy + " beside the f16 anchor", speed.peak_bytes + anchor.peak_bytes, 0)
    if not quality:
        return Need(speed.step, speed.strategy, speed.peak_bytes, 0)
    need = llama_pass_need(f"measure {variant}", shape, model_bytes=model_bytes, n_ctx=n_ctx)
    reference_rows = (n_ctx // 2) * shape.vocab * 4
    return Need(need.step, need.strategy, max(need.peak_bytes + reference_rows, speed.peak_bytes), 0)


def onnx_export_need(shape: ModelShape, precision: str = "int4") -> Need:
    """onnxruntime-genai's model builder: the HF model loaded in float32, the ONNX graph built beside it
    (int4 matmuls; the embedding and untied output stay at 16 bits)."""
    matrices = shape.vocab * shape.hidden * 2
    bytes_out = (shape.n_weights - matrices) * (0.5625 if precision == "int4" else 2) + matrices * 2
    peak = TORCH_PROCESS + shape.n_weights * 4 + bytes_out
    return Need(f"build onnx {precision}", "model builder", int(peak * SLACK), int(bytes_out))


def serve_need(shape: ModelShape, *, variant: str, model_bytes: int, n_ctx: int) -> Need:
    """llama-cpp-python's server for one variant at the serving context (one logits row per slot)."""
    return llama_pass_need(f"serve {variant}", shape, model_bytes=model_bytes, n_ctx=n_ctx, logits_rows=1)


def fits(need: Need, limit: MemoryLimit) -> bool:
    return need.peak_bytes * SAFETY <= limit.available_bytes


def choose(needs: list[Need], limit: MemoryLimit, *, remedy: str = "") -> Need:
    """The first strategy whose peak fits what this process may use; else InsufficientMemoryError."""
    for need in needs:
        if fits(need, limit):
            return need
    best = min(needs, key=lambda n: n.peak_bytes)
    tried = ", ".join(f"{n.strategy} {gib(n.peak_bytes)}" for n in needs)
    raise InsufficientMemoryError(
        step=best.step, need_bytes=int(best.peak_bytes * SAFETY), limit=limit,
        detail=f"strategies tried: {tried}",
        remedy=remedy or "run on a host (or in a container) with more memory, or free memory on this one",
    )
