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
# llama.cpp's converter: tensors read lazily from the mapped safetensors, so the peak follows what it
# writes, not what it reads: the 1.5B's bf16 -> f16 peaked at 1.81 GiB and its f32 -> f16 at 1.68 GiB
# (two pipeline runs' step records), the torch process plus 0.39 bytes per output byte (a per-input-byte
# fit on the bf16 run predicted 3.15 GiB for the f32 one).
CONVERT_PER_OUTPUT_BYTE = 0.385
STREAM_SHARD_BYTES = 512 * 2**20  # tasks.acquire.dequantize_stream's shard files (sizes on disk, not memory)
# Architectures the streaming dequantize knows how to undo llama.cpp's converter for: llama checked tensor for
# tensor against the transformers path (tests/integration/test_dequantize_stream.py); qwen2 stores its tensors
# unpermuted (transformers' own loader applies no processor to it); mistral GGUFs say "llama".
STREAMABLE_ARCHITECTURES = frozenset({"llama", "mistral", "qwen2"})
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# llama.cpp's CPU repacking (ggml-cpu/repack.cpp, AVX2 or NEON): the share of a file of each type that
# is repacked (its matmul weights of that type; the token embedding and the Q6_K tensors of a K-mix stay).
REPACKED_SHARE = {"Q4_0": 0.75, "IQ4_NL": 0.75, "Q4_K_S": 0.7, "Q4_K_M": 0.6}
REFERENCE_LOGITS_COPIES = 2
IMATRIX_BATCH = 2048  # llama-imatrix's default -b
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
    peak = TORCH_PROCESS + CONVERT_PER_OUTPUT_BYTE * shape.n_weights * out
    return Need("convert", outtype, int(peak), shape.n_weights * out)


def quantize_need(shape: ModelShape, bits_per_weight: float, label: str) -> Need:
    """llama.cpp quantize: one tensor at a time, read (f16), widened to f32 and quantized, so the peak is
    the process and three copies of the largest tensor (the vocabulary matrix). Measured on the 1.5B:
    Q8_0 1.76 GiB, Q4_K_M 1.71, with the importance matrix 1.69, Q4_0 1.57; this gives 1.79, 1.69, 1.69,
    1.68 (the earlier "half the f16 file mapped" formula gave 2.78 for all four)."""
    largest = shape.vocab * shape.hidden
    peak = LLAMA_PROCESS + largest * (2 + 4 + bits_per_weight / 8)
    return Need(f"build {label}", "llama_model_quantize", int(peak * SLACK), int(shape.n_weights * bits_per_weight / 8))


def resident_model_bytes(quant: str, file_bytes: int) -> int:
    """What a mapped GGUF of type `quant` holds resident once llama.cpp's CPU backend has loaded it: the
    file, and for the types it repacks into its interleaved layouts (Q4_0, Q4_K, IQ4_NL on AVX2 or NEON)
    a second copy of the repacked share, while the mapped pages stay resident beside it. Measured on
    the 1.5B: served Q4_K_M 1.95 GiB and Q4_0 2.01 against 1.41 and 1.34 predicted without it, while
    F16 and Q8_0 (not repacked) were within 3 %."""
    base = quant.upper().split("-")[0]
    return int(file_bytes * (1 + REPACKED_SHARE.get(base, 0.0)))


def llama_pass_need(step: str, shape: ModelShape, *, model_bytes: int, n_ctx: int, disk_bytes: int = 0,
                    logits_rows: int | None = None, quant: str = "", logits_copies: int = 1) -> Need:
    """A llama.cpp process holding one model (of type `quant`: resident_model_bytes): its weights, the
    f16 KV cache, a float32 logits row per scored position (the reference and quality passes ask for all
    of them; `logits_copies` where the caller holds more arrays of that size) and the compute buffer."""
    rows = n_ctx if logits_rows is None else logits_rows
    compute = n_ctx * shape.hidden * 4 * 8  # llama.cpp's graph buffer at n_ctx (ubatch 512), estimate
    peak = (LLAMA_PROCESS + resident_model_bytes(quant, model_bytes) + shape.kv_bytes(n_ctx)
            + logits_copies * rows * shape.vocab * 4 + compute)
    return Need(step, "llama.cpp", int(peak * SLACK), disk_bytes)


def reference_need(shape: ModelShape, *, n_ctx: int, chunks: int) -> Need:
    """The f16 reference pass; stores ~2 bytes per vocabulary entry per scored token (uint16 log-probs).
    Beside llama.cpp's logits, the worker holds two arrays of their size (the float32 log-softmax and its
    intermediate): measured on the 1.5B 4.54 GiB, 3.89 predicted without them, 4.47 with."""
    disk = chunks * (n_ctx // 2 - 1) * (2 * shape.vocab + 12)
    return llama_pass_need("reference pass", shape, model_bytes=shape.n_weights * 2, n_ctx=n_ctx, disk_bytes=disk,
                           logits_copies=1 + REFERENCE_LOGITS_COPIES)


def imatrix_need(shape: ModelShape, *, n_ctx: int) -> Need:
    """llama-imatrix over the f16: it evaluates max(1, batch / n_ctx) chunks at once (its batch is 2,048
    tokens), so the KV cache, the logits and the compute buffer are those of a 2,048-token context.
    Measured on the 1.5B: 5.32 GiB; 3.89 predicted at n_ctx 512, 4.88 at the batch."""
    tokens = max(n_ctx, IMATRIX_BATCH)
    return llama_pass_need("imatrix", shape, model_bytes=shape.n_weights * 2, n_ctx=tokens)


def measure_need(shape: ModelShape, *, variant: str, model_bytes: int, n_ctx: int, speed_ctx: int,
                 quality: bool = True, anchor_bytes: int = 0) -> Need:
    """One variant's measurement workers, one after the other: the quality pass (all logits of a chunk, the
    reference's scored half decoded to float32 beside them) and the speed tests (prefill + decode + depth).
    The f16 base has no quality pass (the reference pass scored it). Measured on the 1.5B (quick protocol):
    f16 base 3.54 GiB, Q4_K_M 1.78 GiB; these formulas give 3.56 and 1.73. With a speed anchor
    (`anchor_bytes`: the f16 base's file), the anchor's own process holds the f16 beside the variant's."""
    quant = variant.split(" ")[-1]
    speed = llama_pass_need(f"measure {variant}", shape, model_bytes=model_bytes, n_ctx=speed_ctx, logits_rows=1,
                            quant=quant)
    if anchor_bytes:
        anchor = llama_pass_need("speed anchor", shape, model_bytes=anchor_bytes, n_ctx=speed_ctx, logits_rows=1)
        speed = Need(speed.step, speed.strategy + " beside the f16 anchor", speed.peak_bytes + anchor.peak_bytes, 0)
    if not quality:
        return Need(speed.step, speed.strategy, speed.peak_bytes, 0)
    need = llama_pass_need(f"measure {variant}", shape, model_bytes=model_bytes, n_ctx=n_ctx, quant=quant)
    reference_rows = (n_ctx // 2) * shape.vocab * 4
    return Need(need.step, need.strategy, max(need.peak_bytes + reference_rows, speed.peak_bytes), 0)


def onnx_export_need(shape: ModelShape, precision: str = "int4", hf_bytes_per_weight: float = 4.0) -> Need:
    """onnxruntime-genai's model builder: the HF checkpoint mapped and the model loaded from it in
    float32, the ONNX tensors written as they are made. Measured on the 1.5B (f32 checkpoint): 13.46 GiB;
    this gives 13.71 (the earlier "f32 model + the ONNX output" gave 8.64)."""
    matrices = shape.vocab * shape.hidden * 2
    bytes_out = (shape.n_weights - matrices) * (0.5625 if precision == "int4" else 2) + matrices * 2
    peak = TORCH_PROCESS + shape.n_weights * (hf_bytes_per_weight + 4)
    return Need(f"build onnx {precision}", "model builder", int(peak * SLACK), int(bytes_out))


def serve_need(shape: ModelShape, *, variant: str, model_bytes: int, n_ctx: int) -> Need:
    """llama-cpp-python's server for one variant at the serving context (one logits row per slot)."""
    return llama_pass_need(f"serve {variant}", shape, model_bytes=model_bytes, n_ctx=n_ctx, logits_rows=1,
                           quant=variant.split(" ")[-1])


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
