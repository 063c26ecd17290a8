"""What every quality figure is measured against, said in words on every run, card and table.

KLD, top-1 agreement and perplexity ratio compare a variant with the converted base (f16 by default).
When the source is itself a quantized GGUF, that base is the dequantized quantization, not the
original weights: a Q4_K_M variant of a Q4_K_M source then measures a re-quantization (near 0), not
what Q4_K_M costs. The label keeps anyone from reading one as the other.
"""

from __future__ import annotations

# Types that are no quantization: a GGUF in one of these holds the weights as published.
_FULL_PRECISION = {"F32", "F16", "BF16"}


def quant_type_name(file_type: str | int | None) -> str | None:
    """GGUF `general.file_type` id (as recorded by acquire) to its llama.cpp name, e.g. 15 -> Q4_K_M."""
    if file_type is None or str(file_type).lower() in {"", "none"}:
        return None
    from gguf import LlamaFileType  # gguf: its numpy reader, only where a GGUF file is read

    try:
        name = LlamaFileType(int(file_type)).name
    except (TypeError, ValueError):
        return f"file type {file_type}"
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def reference_label(*, from_quantized: str | int | None, outtype: str) -> str:
    """e.g. 'f16 of the dequantized Q4_K_M source', or 'f16 of the source weights' for an HF source."""
    quant = quant_type_name(from_quantized)
    if quant is None:
        return f"{outtype} of the source weights"
    if quant in _FULL_PRECISION:
        return f"{outtype} of the {quant} GGUF source"
    return f"{outtype} of the dequantized {quant} source"


def is_requantization(label: str | None) -> bool:
    """True when figures against this reference measure a re-quantization of a quantized source."""
    return bool(label) and "dequantized" in str(label)
