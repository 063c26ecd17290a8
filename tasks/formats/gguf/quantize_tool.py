"""GGUF build with llama.cpp's llama-quantize: the importance matrix and per-tensor type overrides,
which the Python binding cannot pass (see tasks.formats.gguf.llama_tools)."""

from __future__ import annotations

import json
from pathlib import Path

from tasks.formats.gguf.llama_tools import run_tool


def quantize_args(source: Path, target: Path, gguf_type: str, *, overrides: dict, imatrix: Path | None,
                  threads: int | None) -> list[str]:
    """llama-quantize's command line for one recipe."""
    args = []
    if imatrix is not None:
        args += ["--imatrix", str(imatrix)]
    for pattern, kind in overrides.get("tensor_types", {}).items():
        args += ["--tensor-type", f"{pattern}={kind.lower()}"]
    if kind := overrides.get("output_tensor_type"):
        args += ["--output-tensor-type", kind.lower()]
    if kind := overrides.get("token_embedding_type"):
        args += ["--token-embedding-type", kind.lower()]
    args += [str(source), str(target), gguf_type]
    if threads:
        args.append(str(threads))
    return args


def quantize_with_tool(source: Path, target: Path, gguf_type: str, *, overrides: dict, imatrix: Path | None,
                       threads: int | None, tools: dict) -> None:
    """Quantize with llama-quantize; its log and the tools' record stay beside the result."""
    args = quantize_args(source, target, gguf_type, overrides=overrides, imatrix=imatrix, threads=threads)
    run_tool("llama-quantize", args, log_path=target.with_suffix(".log"), cwd=target.parent,
             what=f"quantize {source.name} to {gguf_type}")
    if not target.is_file():
        raise FileNotFoundError(f"llama-quantize wrote no {target.name}; see {target.with_suffix('.log')}")
    (target.parent / "llama-tools.json").write_text(json.dumps(tools, indent=2))
