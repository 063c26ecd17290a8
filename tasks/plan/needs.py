"""Peak memory and disk of each heavy step, predicted from the model's facts before it starts.

Each step has one or more strategies, cheapest-to-trust first; `choose` picks the first that fits the
memory this process may use, or raises InsufficientMemoryError naming the step, the need, the limit and
the remedy, before any work. Every figure is a peak resident set size (what the kernel must hold at
once, file-mapped model pages included: a model mapped but not resident would thrash).

Each formula adds the parts it models (weights, KV cache, logits, graph buffer, copies) to its kind of
process's OVERHEAD: what the process holds beyond them, a base plus a slope over the one model fact it
grows with. OVERHEAD is fitted by tests/benchmarks/fit_plan_memory.py on three recorded runs of this
machine class (135M, 270M and 1.5B); each comment says where a formula is not fitted ("estimate").
Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.core.errors import InsufficientMemoryError
from tasks.plan.limits import MemoryLimit, gib
from tasks.plan.shapes import ModelShape

# A Python process with torch + transformers imported, before any weight (estimate; reading a source).
TORCH_PROCESS = 480 * 2**20
# Each kind of process: (base bytes, bytes per unit of the fact it grows with), the fact named beside it.
# llama.cpp processes grow with the vocabulary: the graph is reserved for a full ubatch of output rows and
# the tokenizer's tables follow it. Fitted (fit_plan_memory.py, least squares through each run's mean of
# that kind's steps) on the records of SmolLM2-135M (vocabulary 49,152; a newcomer's cold default run),
# Gemma 3 270M (262,144; its pipeline run) and Qwen2.5-Coder-1.5B (151,936; its pipeline run): two sizes
# could not tell a process's fixed cost from its slope (out of sample on Gemma, 4 of 13 steps were within
# 15 %). With Gemma in the fit: Gemma's 13 steps and the 1.5B's 21 within 15 %, and the 135M's but its
# convert and five measures, over-predicted (measured 0.77 to 0.87 of the prediction: the safe side).
# A negative fitted slope is taken as 0 with the largest mean as the base; a negative base as 0 with the
# steepest slope through the origin.
OVERHEAD: dict[str, tuple[float, float]] = {
    # x weights x dtype bytes (the loaded model and its saved copy). A bare process (measure_step_memory.py)
    # peaks about 0.5 GB lower at micro size (SmolLM2 bf16 1.02 GiB against the pipeline step's 1.53); the
    # plan predicts pipeline steps (the pipeline records' fit).
    "acquire transformers": (1_129_313_274, 1.757),
    "convert": (1_322_821_266, 0.141),       # x output bytes (the GGUF writer holds tensors until written)
    "quantize": (99_901_108, 1004),          # x vocabulary entries
    "onnx export": (2_781_842_447, 2.585),   # x weights (beyond the mapped checkpoint's bytes)
    "reference": (0, 2560),                  # x vocabulary entries (the fitted base, below 0: through the origin)
    "imatrix": (0, 4958),                    # x vocabulary entries (likewise)
    "quality": (181_699_469, 0),             # a variant's quality pass (the fitted slope, below 0, taken as 0
                                             # with the largest base; with the speed anchor on, a measure
                                             # peaks in its speed bursts instead)
    "speed": (191_615_183, 442.9),           # x vocabulary entries: speed bursts, the f16 anchor
    "serve": (84_246_001, 1181),             # x vocabulary entries: a server, HumanEval's generation
    "onnx measure": (165_460_663, 2238),     # x vocabulary entries: ONNX Runtime GenAI's quality and speed
    "onnx serve": (151_208_652, 0),          # the fitted slope, below 0, taken as 0 with the larger base
}
# The streaming path (tasks.acquire.dequantize_stream): the tokenizer built from the GGUF grows with the
# vocabulary, and the largest tensor is held at the target dtype. Fitted on SmolLM2-135M -> f32 0.86 GiB,
# -> bf16 0.78 GiB; Qwen2.5-Coder-1.5B -> f32 2.27 GiB, -> bf16 2.03 GiB (the pipeline run's step record).
STREAM_BASE = 478_000_000
STREAM_PER_VOCAB = 6750
STREAM_LARGEST_COPIES = 1.0
# STREAM_SHARD_BYTES lives in tasks.acquire.dequantize_stream: it shapes that step's output.
# Architectures the streaming dequantize knows how to undo llama.cpp's converter for: llama checked tensor for
# tensor against the transformers path (tests/integration/test_dequantize_stream.py); qwen2 stores its tensors
# unpermuted (transformers' own loader applies no processor to it); mistral GGUFs say "llama". (An admission
# rule: adding one changes no output of the others.)
STREAMABLE_ARCHITECTURES = frozenset({"llama", "mistral", "qwen2"})
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# llama.cpp's CPU repacking (ggml-cpu/repack.cpp, AVX2 or NEON): the share of a file of each type that
# is repacked (its matmul weights of that type; the token embedding and the Q6_K tensors of a K-mix stay).
REPACKED_SHARE = {"Q4_0": 0.75, "IQ4_NL": 0.75, "Q4_K_S": 0.7, "Q4_K_M": 0.6}
REFERENCE_LOGITS_COPIES = 2
IMATRIX_BATCH = 2048  # llama-imatrix's default -b
SLACK = 1.0  # the formulas below that are not fitted yet are taken as they are


def overhead(kind: str, driver: float) -> int:
    """What a process of `kind` holds beyond the parts its formula models, at `driver` (OVERHEAD's unit)."""
    base, slope = OVERHEAD[kind]
    return int(base + slope * driver)
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
    whole = shape.source_bytes + overhead("acquire transformers", shape.n_weights * out)
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
    """HF -> f16 GGUF (llama.cpp's converter): tensors read lazily from the mapped safetensors, so the
    peak follows what it writes, not what it reads (the 1.5B's bf16 -> f16 peaked at 1.81 GiB, its
    f32 -> f16 at 1.68): the process and a share of the output bytes."""
    out = 4 if outtype == "f32" else 1 if outtype == "q8_0" else 2
    peak = overhead("convert", shape.n_weights * out)
    return Need("convert", outtype, int(peak), shape.n_weights * out)


def quantize_need(shape: ModelShape, bits_per_weight: float, label: str) -> Need:
    """llama.cpp quantize: one tensor at a time, read (f16), widened to f32 and quantized, so the peak is
    the process and three copies of the largest tensor (the vocabulary matrix): on the 1.5B, Q8_0 1.76
    GiB, Q4_K_M 1.71, with the importance matrix 1.69, Q4_0 1.57 (a "half the f16 file mapped" formula
    gave 2.78 for all four)."""
    largest = shape.vocab * shape.hidden
    peak = overhead("quantize", shape.vocab) + largest * (2 + 4 + bits_per_weight / 8)
    return Need(f"build {label}", "llama_model_quantize", int(peak * SLACK), int(shape.n_weights * bits_per_weight / 8))


def resident_model_bytes(quant: str, file_bytes: int) -> int:
    """What a mapped GGUF of type `quant` holds resident once llama.cpp's CPU backend has loaded it: the
    file, and for the types it repacks into its interleaved layouts (Q4_0, Q4_K, IQ4_NL on AVX2 or NEON)
    a second copy of the repacked share, while the mapped pages stay resident beside it. Measured on
    the 1.5B: served Q4_K_M 1.95 GiB and Q4_0 2.01 against 1.41 and 1.34 predicted without it, while
    F16 and Q8_0 (not repacked) were within 3 %."""
    base = quant.upper().split("-")[0]
    return int(file_bytes * (1 + REPACKED_SHARE.get(base, 0.0)))


def compute_buffer_bytes(shape: ModelShape, n_ctx: int) -> int:
    """llama.cpp's graph buffer at n_ctx (ubatch 512), estimate."""
    return n_ctx * shape.hidden * 4 * 8


def llama_pass_need(step: str, shape: ModelShape, *, kind: str, model_bytes: int, n_ctx: int, disk_bytes: int = 0,
                    logits_rows: int | None = None, quant: str = "", logits_copies: int = 1) -> Need:
    """A process of `kind` (OVERHEAD) holding one model (of type `quant`: resident_model_bytes): its
    weights, the f16 KV cache, a float32 logits row per scored position (the reference and quality passes
    ask for all of them; `logits_copies` where the caller holds more arrays of that size) and the
    compute buffer."""
    rows = n_ctx if logits_rows is None else logits_rows
    peak = (overhead(kind, shape.vocab) + resident_model_bytes(quant, model_bytes) + shape.kv_bytes(n_ctx)
            + logits_copies * rows * shape.vocab * 4 + compute_buffer_bytes(shape, n_ctx))
    return Need(step, "llama.cpp", int(peak * SLACK), disk_bytes)


def reference_need(shape: ModelShape, *, n_ctx: int, chunks: int) -> Need:
    """The f16 reference pass; stores ~2 bytes per vocabulary entry per scored token (uint16 log-probs).
    Beside llama.cpp's logits, the worker holds two arrays of their size (the float32 log-softmax and its
    intermediate): on the 1.5B 4.54 GiB, when the process and llama.cpp's logits came to 3.89."""
    disk = chunks * (n_ctx // 2 - 1) * (2 * shape.vocab + 12)
    return llama_pass_need("reference pass", shape, kind="reference", model_bytes=shape.n_weights * 2, n_ctx=n_ctx,
                           disk_bytes=disk, logits_copies=1 + REFERENCE_LOGITS_COPIES)


def imatrix_need(shape: ModelShape, *, n_ctx: int) -> Need:
    """llama-imatrix over the f16: it evaluates max(1, batch / n_ctx) chunks at once (its batch is 2,048
    tokens), so the KV cache, the logits and the compute buffer are those of a 2,048-token context.
    On the 1.5B: 5.32 GiB, where the same formula at n_ctx 512 gave 3.89."""
    tokens = max(n_ctx, IMATRIX_BATCH)
    return llama_pass_need("imatrix", shape, kind="imatrix", model_bytes=shape.n_weights * 2, n_ctx=tokens)


def measure_need(shape: ModelShape, *, variant: str, model_bytes: int, n_ctx: int, speed_ctx: int,
                 quality: bool = True, anchor_bytes: int = 0) -> Need:
    """One variant's measurement workers, one after the other: the quality pass (all logits of a chunk, the
    reference's scored half decoded to float32 beside them) and the speed tests (prefill + decode + depth).
    The f16 base has no quality pass (the reference pass scored it). With a speed anchor (`anchor_bytes`:
    the f16 base's file), the anchor's own process holds the f16 beside the variant's, and that is the
    step's peak (the 1.5B's Q4_K_M: 5.41 GiB, of which the f16 anchor's process 3.5)."""
    quant = variant.split(" ")[-1]
    onnx = variant.startswith("onnx")
    speed = llama_pass_need(f"measure {variant}", shape, kind="onnx measure" if onnx else "speed",
                            model_bytes=model_bytes, n_ctx=speed_ctx, logits_rows=1, quant=quant)
    if anchor_bytes:
        anchor = llama_pass_need("speed anchor", shape, kind="speed", model_bytes=anchor_bytes, n_ctx=speed_ctx,
                                 logits_rows=1)
        speed = Need(speed.step, speed.strategy + " beside the f16 anchor", speed.peak_bytes + anchor.peak_bytes, 0)
    if not quality:
        return Need(speed.step, speed.strategy, speed.peak_bytes, 0)
    need = llama_pass_need(f"measure {variant}", shape, kind="onnx measure" if onnx else "quality",
                           model_bytes=model_bytes, n_ctx=n_ctx, quant=quant)
    reference_rows = (n_ctx // 2) * shape.vocab * 4
    return Need(need.step, need.strategy, max(need.peak_bytes + reference_rows, speed.peak_bytes), 0)


def onnx_export_need(shape: ModelShape, precision: str = "int4", hf_bytes_per_weight: float = 4.0) -> Need:
    """onnxruntime-genai's model builder: the HF checkpoint mapped and the model loaded from it in
    float32, the ONNX tensors written as they are made (the 1.5B's f32 checkpoint: 13.46 GiB; an
    "f32 model + the ONNX output" formula gave 8.64)."""
    matrices = shape.vocab * shape.hidden * 2
    bytes_out = (shape.n_weights - matrices) * (0.5625 if precision == "int4" else 2) + matrices * 2
    peak = shape.n_weights * hf_bytes_per_weight + overhead("onnx export", shape.n_weights)
    return Need(f"build onnx {precision}", "model builder", int(peak * SLACK), int(bytes_out))


def serve_need(shape: ModelShape, *, variant: str, model_bytes: int, n_ctx: int) -> Need:
    """llama-cpp-python's server for one variant at the serving context (one logits row per slot)."""
    kind = "onnx serve" if variant.startswith("onnx") else "serve"
    return llama_pass_need(f"serve {variant}", shape, kind=kind, model_bytes=model_bytes, n_ctx=n_ctx, logits_rows=1,
                           quant=variant.split(" ")[-1])


def fits(need: Need, limit: MemoryLimit) -> bool:
    return need.peak_bytes * SAFETY <= limit.available_bytes


def choose(needs: list[Need], limit: MemoryLimit, *, remedy: str = "") -> Need:
    """The first strategy whose peak fits what this process may use; else InsufficientMemoryError."""
    for need in needs:
        if fits(need, limit):
            return need
    best = min(needs, key=lambda n: n.peak_bytes)
    tried = ", ".join(f"{n.strategy} {gib(n.peak_bytes)}" + (f" ({n.note})" if n.note else "") for n in needs)
    raise InsufficientMemoryError(
        step=best.step, need_bytes=int(best.peak_bytes * SAFETY), limit=limit,
        detail=f"strategies tried: {tried}",
        remedy=remedy or "run on a host (or in a container) with more memory, or free memory on this one",
    )
