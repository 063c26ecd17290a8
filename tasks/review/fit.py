"""Does a variant fit a device? weights + KV cache at the device's context + measured overhead.

The KV cache follows llama.cpp (src/llama-kv-cache.cpp, llama-kv-cache-iswa.cpp, llama-context.cpp):
- the context is padded to a multiple of 256 cells (llama_context: GGML_PAD(n_ctx, 256));
- each layer that owns a cache holds, per cell, K = n_head_kv x head_dim_k and V = n_head_kv x
  head_dim_v values of the cache type (quantized types: block bytes per block of values);
- sliding-window layers (Gemma 2/3, Cohere 2, ...) hold min(n_ctx, window + n_ubatch) cells padded
  to 256, unless swa_full (llama-cpp-python's and the C API's default: then n_ctx cells);
- shared-KV models (Gemma 3n: the first 20 layers own a cache, Gemma 4: all but
  `shared_kv_layers`) keep no cache for the layers that reuse another layer's.
The runtime overhead is what a measured run used beyond its weights and its KV cache:
peak_rss_bytes of the speed worker - weights - KV at the worker's own context (f16, swa_full).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from tasks.store.gguf_header import read_gguf

N_UBATCH = 512  # llama.cpp's default physical batch (llama-server -ub; slmforge's runtime too)
CELL_PAD = 256
# llama.cpp's SWA pattern where the GGUF has no {arch}.attention.sliding_window_pattern: layer il
# is sliding-window when il % n < n - 1 (src/models/<arch>.cpp, load_swa_pattern).
SWA_PATTERN_DEFAULTS = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "gemma-embedding": 6, "cohere2": 4,
                        "exaone4": 4, "olmo2": 4, "gpt-oss": 2}
KV_LAYERS_FIXED = {"gemma3n": 20}  # llama.cpp hard-codes n_layer_kv_from_start for these


class KvLayout(BaseModel):
    """The model's attention geometry, as far as the KV cache depends on it."""

    architecture: str = Field(description="general.architecture of the GGUF.")
    n_head_kv: list[int] = Field(description="KV heads of each layer (grouped-query attention: < heads).")
    head_dim_k: int = Field(description="Values per K head ({arch}.attention.key_length).")
    head_dim_v: int = Field(description="Values per V head ({arch}.attention.value_length).")
    sliding_window: int | None = Field(None, description="Window of the sliding-window layers, if any.")
    swa_layers: list[bool] = Field(description="Per layer: does it attend over the window only?")
    kv_layers: int = Field(description="Layers from the first that own a cache; the rest share one.")

    @property
    def n_layer(self) -> int:
        return len(self.n_head_kv)

    def to_params(self) -> dict[str, str]:
        """Flat MLflow params (model.*), read back by `from_params`."""
        return {"model.architecture": self.architecture, "model.n_layer": str(self.n_layer),
                "model.n_head_kv": _compact([str(h) for h in self.n_head_kv]),
                "model.head_dim_k": str(self.head_dim_k), "model.head_dim_v": str(self.head_dim_v),
                "model.sliding_window": str(self.sliding_window or 0),
                "model.swa_layers": "".join("1" if s else "0" for s in self.swa_layers),
                "model.kv_layers": str(self.kv_layers)}

    @classmethod
    def from_params(cls, params: dict) -> KvLayout:
        n_layer = int(params["model.n_layer"])
        heads = [int(h) for h in str(params["model.n_head_kv"]).split(",")]
        return cls(architecture=params["model.architecture"],
                   n_head_kv=heads * n_layer if len(heads) == 1 else heads,
                   head_dim_k=int(params["model.head_dim_k"]), head_dim_v=int(params["model.head_dim_v"]),
                   sliding_window=int(params["model.sliding_window"]) or None,
                   swa_layers=[c == "1" for c in str(params["model.swa_layers"])],
                   kv_layers=int(params["model.kv_layers"]))


def _compact(values: list[str]) -> str:
    return values[0] if len(set(values)) == 1 else ",".join(values)


def pad_cells(n: int) -> int:
    return -(-n // CELL_PAD) * CELL_PAD


def row_bytes(cache_type: str, n_values: int) -> int:
    """Bytes of one cache row of `n_values` values (quantized types store whole blocks)."""
    # gguf: its numpy reader, only where a GGUF file is read
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[cache_type.upper()]]
    if n_values % block:
        raise ValueError(f"a {cache_type} cache needs rows in blocks of {block} values, got {n_values}; "
                         "use kv_cache_type f16 for this model")
    return n_values // block * size


def kv_cache_bytes(layout: KvLayout, n_ctx: int, cache_type: str = "f16", *, swa_full: bool = False,
                   n_ubatch: int = N_UBATCH) -> int:
    """Bytes llama.cpp allocates for the KV cache of one sequence of `n_ctx` tokens."""
    if n_ctx <= 0:
        return 0
    cells = pad_cells(n_ctx)
    swa_cells = cells if swa_full or not layout.sliding_window else \
        pad_cells(min(cells, layout.sliding_window + n_ubatch))
    total = 0
    for il in range(min(layout.kv_layers, layout.n_layer)):
        per_cell = (row_bytes(cache_type, layout.n_head_kv[il] * layout.head_dim_k)
                    + row_bytes(cache_type, layout.n_head_kv[il] * layout.head_dim_v))
        total += per_cell * (swa_cells if layout.swa_layers[il] else cells)
    return total


def kv_layout_from_gguf(path: Path) -> KvLayout:
    """The KV geometry from a GGUF's metadata (no tensors read)."""
    fields = read_gguf(str(path)).fields

    def value(key: str, default=None):
        field = fields.get(key)
        return default if field is None else field.contents()

    arch = value("general.architecture")
    n_layer = int(value(f"{arch}.block_count"))
    n_head = value(f"{arch}.attention.head_count")
    n_head_kv = value(f"{arch}.attention.head_count_kv", n_head)
    heads = [int(h) for h in n_head_kv] if isinstance(n_head_kv, list) else [int(n_head_kv)] * n_layer
    first_head = n_head[0] if isinstance(n_head, list) else n_head
    head_k = int(value(f"{arch}.attention.key_length", int(value(f"{arch}.embedding_length")) // int(first_head)))
    head_v = int(value(f"{arch}.attention.value_length", head_k))
    window = int(value(f"{arch}.attention.sliding_window", 0) or 0) or None
    shared = int(value(f"{arch}.attention.shared_kv_layers", 0) or 0)
    return KvLayout(architecture=arch, n_head_kv=heads, head_dim_k=head_k, head_dim_v=head_v, sliding_window=window,
                    swa_layers=swa_layers(arch, n_layer, window, value(f"{arch}.attention.sliding_window_pattern")),
                    kv_layers=KV_LAYERS_FIXED.get(arch, n_layer - shared))


def swa_layers(arch: str, n_layer: int, window: int | None, pattern) -> list[bool]:
    """Which layers slide, as llama.cpp decides: a per-layer array, else every n-th layer is full.
    An architecture with a window but no known pattern counts every layer as full (an upper bound)."""
    if not window:
        return [False] * n_layer
    if isinstance(pattern, list):
        return [bool(p) for p in pattern]
    n = int(pattern) if pattern is not None else SWA_PATTERN_DEFAULTS.get(arch)
    if n is None:
        return [False] * n_layer
    return [n == 0 or il % n < n - 1 for il in range(n_layer)]


def onnx_kv_type(folder: Path) -> str | None:
    """ONNX Runtime GenAI keeps its KV cache in the graph's past_key_values type (fp32 for the CPU
    builder's int4/int8/fp32 models); a device profile's llama.cpp cache type does not apply."""
    model = folder / "model.onnx"
    if not model.is_file():
        return None
    import onnx  # onnx: only where an ONNX graph is read

    names = {onnx.TensorProto.FLOAT: "f32", onnx.TensorProto.FLOAT16: "f16", onnx.TensorProto.BFLOAT16: "bf16"}
    for item in onnx.load(str(model), load_external_data=False).graph.input:
        if item.name.startswith("past_key_values"):
            return names.get(item.type.tensor_type.elem_type)
    return None


def speed_context(*, prefill_tokens: int, decode_tokens: int, depths: list[int], ttft_prompt_tokens: int) -> int:
    """n_ctx the speed worker (tasks.evaluate.worker) loads a model with: peak_rss_bytes is measured there."""
    return max([prefill_tokens, ttft_prompt_tokens + 1, 1024] + [d + decode_tokens + 2 for d in depths]) + 8


def runtime_overhead(*, peak_rss_bytes: float, weights_bytes: float, layout: KvLayout, measured_ctx: int,
                     kv_type: str = "f16") -> int:
    """What the measured process held beyond weights and KV cache: runtime, compute buffers, the
    interpreter, repacked weight copies. The speed worker ran llama-cpp-python's defaults (f16 cache,
    swa_full). Never below 0: mapped pages a run never touched would make it negative."""
    kv = kv_cache_bytes(layout, measured_ctx, kv_type, swa_full=True)
    return max(0, int(peak_rss_bytes - weights_bytes - kv))


class Fit(BaseModel):
    """The memory a variant needs on a device, and whether it fits with the margin."""

    weights_bytes: int
    kv_bytes: int
    kv_cache_type: str
    overhead_bytes: int
    usable_bytes: int = Field(description="The budget less the margin.")
    budget_bytes: int
    margin: float

    @property
    def need_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes + self.overhead_bytes

    @property
    def fits(self) -> bool:
        return self.need_bytes <= self.usable_bytes

    def explain(self) -> str:
        relation = "<=" if self.fits else ">"
        return (f"needs {mib(self.need_bytes)} (weights {mib(self.weights_bytes)} + KV {mib(self.kv_bytes)} "
                f"{self.kv_cache_type} + overhead {mib(self.overhead_bytes)}) {relation} {mib(self.usable_bytes)} "
                f"usable ({mib(self.budget_bytes)} budget less {self.margin:.0%} margin)")


def fit_variant(*, weights_bytes: float, overhead_bytes: int, layout: KvLayout, device,
                fixed_kv_type: str | None = None) -> Fit:
    """`device` is a DeviceProfile; `fixed_kv_type` is a runtime's own cache type (ONNX), else the device's."""
    kv_type = fixed_kv_type or device.kv_cache_type
    kv = kv_cache_bytes(layout, device.context_length, kv_type, swa_full=device.swa_full)
    return Fit(weights_bytes=int(weights_bytes), kv_bytes=kv, kv_cache_type=kv_type, overhead_bytes=overhead_bytes,
               usable_bytes=device.usable_bytes, budget_bytes=int(device.memory_budget), margin=device.margin)


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"
