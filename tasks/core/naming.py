"""Every artefact and variant name is built here, so names stay consistent everywhere."""

from __future__ import annotations

import re

from tasks.store.hashing import sha256_json


def slug(text: str) -> str:
    """Lower-case name safe for files, MLflow and Ollama tags."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


def variant_name(model_name: str, fmt: str, quant: str) -> str:
    """e.g. smollm2-135m-instruct-gguf-q4_k_m."""
    return f"{slug(model_name)}-{fmt}-{quant.lower()}"


def gguf_file_name(model_name: str, quant: str) -> str:
    """llama.cpp's convention: <Name>-<Quant>.gguf, e.g. SmolLM2-135M-Instruct-Q4_K_M.gguf."""
    clean = re.sub(r"[^A-Za-z0-9.\-]+", "-", model_name).strip("-")
    return f"{clean}-{quant.upper()}.gguf"


def ollama_tag(model_name: str, quant: str) -> str:
    """Ollama model reference, e.g. smollm2-135m-instruct:q4_k_m."""
    return f"{slug(model_name)}:{quant.lower()}"


def quant_label(gguf_type: str, *, imatrix: bool, overrides: dict | None = None, name: str | None = None) -> str:
    """A GGUF variant's label: the type, `-imat` with the importance matrix, `-<name>` with overrides.

    e.g. Q4_K_M, Q4_K_M-imat, Q4_K_M-imat-attnv8 (or -t<hash> when an override variant has no name).
    """
    label = gguf_type.upper() + ("-imat" if imatrix else "")
    if overrides:
        label += "-" + (name or "t" + sha256_json(overrides)[:6])
    return label


def mix_label(*, max_size: int | None, bpw: float | None, imatrix: bool) -> str:
    """A budget mix's label: MIX-100MB, MIX-104857600B or MIX-4.5BPW, `-imat` with the imatrix."""
    if bpw is not None:
        label = f"MIX-{bpw:g}BPW"
    elif max_size % 1_000_000 == 0:
        label = f"MIX-{max_size // 1_000_000}MB"
    else:
        label = f"MIX-{max_size}B"
    return label + ("-imat" if imatrix else "")
