"""GGUF build with llama.cpp's llama-quantize: the importance matrix and per-tensor type overrides,
which the Python binding cannot pass (see tasks.formats.gguf.llama_tools)."""

from __future__ import annotations

import json
from pathlib import Path

from tasks.formats.gguf.llama_tools import run_tool
from tasks.store.artifacts import link_or_copy
from tasks.store.gguf_header import read_gguf


def quantize_args(source: Path, target: Path, gguf_type: str, *, overrides: dict, imatrix: Path | None,
                  threads: int | None) -> list[str]:
    """llama-quantize's command line for one recipe."""
    args = []  # absolute paths: the tool runs in the output folder
    if imatrix is not None:
        args += ["--imatrix", str(imatrix.resolve())]
    for pattern, kind in overrides.get("tensor_types", {}).items():
        args += ["--tensor-type", f"{pattern}={kind.lower()}"]
    if kind := overrides.get("output_tensor_type"):
        args += ["--output-tensor-type", kind.lower()]
    if kind := overrides.get("token_embedding_type"):
        args += ["--token-embedding-type", kind.lower()]
    args += [str(source.resolve()), str(target.resolve()), gguf_type]
    if threads:
        args.append(str(threads))
    return args


def shape_problem(source: Path, overrides: dict) -> str | None:
    """Why an output/embedding type cannot hold its tensor's rows, else None.

    llama-quantize applies --tensor-type rules through its fallback to a compatible type, but returns
    --token-embedding-type / --output-tensor-type as given: a 256-block type on 576-wide rows
    (SmolLM2) aborts it with "double free or corruption". Caught here with a message instead.
    """
    # gguf: its numpy reader, only where a GGUF file is read
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    names = {"token_embedding_type": "token_embd.weight", "output_tensor_type": "output.weight"}
    wanted = {names[k]: (k, v) for k, v in overrides.items() if k in names}
    if not wanted:
        return None
    for tensor in read_gguf(source).tensors:
        if tensor.name in wanted:
            option, kind = wanted[tensor.name]
            block = GGML_QUANT_SIZES[GGMLQuantizationType[kind]][0]
            if int(tensor.shape[0]) % block:
                return (f"{option} {kind} stores rows in blocks of {block} values, but {tensor.name} has rows of "
                        f"{int(tensor.shape[0])}; pick a type with 32-value blocks (Q8_0, Q5_1, Q5_0, Q4_1, Q4_0, "
                        "IQ4_NL) or leave it to llama.cpp")
    return None


def quantize_with_tool(source: Path, target: Path, gguf_type: str, *, overrides: dict, imatrix: Path | None,
                       threads: int | None, tools: dict) -> None:
    """Quantize with llama-quantize; its log and the tools' record stay beside the result."""
    if problem := shape_problem(source, overrides):
        raise ValueError(problem)
    local = None
    if imatrix is not None:
        # llama-quantize records the path it was given as quantize.imatrix.file: a bare file name
        # (linked beside the output for the call) keeps this host's folders out of shipped files.
        local = target.parent / imatrix.name
        link_or_copy(imatrix, local)
    args = quantize_args(source, target, gguf_type, overrides=overrides, imatrix=None, threads=threads)
    if local is not None:
        args = ["--imatrix", local.name, *args]
    try:
        run_tool("llama-quantize", args, log_path=target.with_suffix(".log"), cwd=target.parent,
                 what=f"quantize {source.name} to {gguf_type}")
    finally:
        if local is not None:
            local.unlink(missing_ok=True)
    if not target.is_file():
        raise FileNotFoundError(f"llama-quantize wrote no {target.name}; see {target.with_suffix('.log')}")
    (target.parent / "llama-tools.json").write_text(json.dumps(tools, indent=2))
