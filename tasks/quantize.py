"""Step 3, quantize: base GGUF -> one GGUF per llama.cpp quant type (llama_model_quantize)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.errors import CorruptArtifactError
from tasks.naming import gguf_file_name
from tasks.store import stored_step
from tasks.versions import subset, tool_versions

DEFAULT_TYPES = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0")
_FTYPE_PREFIX = "LLAMA_FTYPE_MOSTLY_"


def known_quant_types() -> dict[str, int]:
    """Quant type name -> llama.cpp ftype id, read from the installed llama-cpp-python."""
    import llama_cpp

    return {
        name.removeprefix(_FTYPE_PREFIX): getattr(llama_cpp, name)
        for name in dir(llama_cpp)
        if name.startswith(_FTYPE_PREFIX)
    }


class QuantizeConfig(BaseModel):
    """Which llama.cpp quantization types to produce from the base GGUF."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    types: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TYPES),
        description="llama.cpp types, e.g. Q4_K_M; the base (f16) is always evaluated too.",
    )
    threads: int | None = Field(None, ge=1, description="Quantization threads (default: all cores).")

    @field_validator("types")
    @classmethod
    def _known_types(cls, types: list[str]) -> list[str]:
        known = known_quant_types()
        unknown = [t for t in types if t.upper() not in known]
        if unknown:
            raise ValueError(
                f"unknown llama.cpp quant type(s) {unknown}; valid: {', '.join(sorted(known))}"
            )
        if len({t.upper() for t in types}) != len(types):
            raise ValueError(f"quant types repeat: {types}")
        return [t.upper() for t in types]


class QuantizedModel(BaseModel):
    quant: str
    gguf_path: Path
    key: str
    reused: bool


def quantize_gguf(
    base_gguf: Path, quant: str, *, base_key: str, model_name: str,
    threads: int | None, store_root: Path,
) -> QuantizedModel:
    """Quantize `base_gguf` to `quant`, reusing a verified stored result when one exists."""
    material = {
        "base_key": base_key, "quant": quant,
        "versions": subset(tool_versions(), "llama-cpp-python"),
    }
    file_name = gguf_file_name(model_name, quant)
    stored = stored_step(
        store_root, "quantize", material,
        lambda tmp: _quantize_file(base_gguf, tmp / file_name, quant, threads),
    )
    return QuantizedModel(quant=quant, gguf_path=stored.path / file_name, key=stored.key, reused=stored.reused)


def _quantize_file(source: Path, target: Path, quant: str, threads: int | None) -> None:
    # A subprocess: llama.cpp prints a line per tensor on the C stderr, which belongs in a log
    # file next to the result rather than on the user's terminal.
    command = [sys.executable, "-m", "tasks.quantize", str(source), str(target), quant, str(threads or 0)]
    log_path = target.with_suffix(".log")
    with log_path.open("w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0 or not target.is_file():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-8:])
        raise CorruptArtifactError(
            f"llama.cpp could not quantize {source.name} to {quant}; the base GGUF may be corrupt: "
            f"delete the store folder and run again. Last lines:\n{tail}"
        )


def _quantize_in_process(source: Path, target: Path, quant: str, threads: int) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = known_quant_types()[quant]
    params.nthread = threads or os.cpu_count() or 1
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params)
    if status != 0:
        raise SystemExit(f"llama_model_quantize returned {status}")


if __name__ == "__main__":
    _quantize_in_process(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
