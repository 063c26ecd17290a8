"""GGUF build, part 2: base GGUF -> one GGUF per llama.cpp quant type (llama_model_quantize)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel

from tasks.core.errors import SourceError
from tasks.core.naming import gguf_file_name
from tasks.formats.gguf.imatrix import Imatrix
from tasks.formats.gguf.llama_tools import tools_record
from tasks.formats.gguf.quantize_tool import quantize_with_tool
from tasks.formats.gguf.variants import QuantRecipe
from tasks.hosts import hostlock
from tasks.plan.guard import check_quantize
from tasks.store.artifacts import stored_step
from tasks.store.codeid import code_identity
from tasks.store.versions import subset, tool_versions


class QuantizedModel(BaseModel):
    quant: str
    gguf_path: Path
    key: str
    reused: bool


def quantize_gguf(
    base_gguf: Path, quant: str, *, base_key: str, model_name: str,
    threads: int | None, store_root: Path, recipe: QuantRecipe | None = None, imatrix: Imatrix | None = None,
) -> QuantizedModel:
    """Quantize `base_gguf` to `quant`, reusing a verified stored result when one exists.

    A plain recipe (no importance matrix, no overrides) goes through the Python binding, with the
    same key as before; any other through llama-quantize, keyed by the imatrix and the overrides too.
    """
    if recipe is not None and not recipe.plain:
        return _quantize_recipe(base_gguf, recipe, base_key=base_key, model_name=model_name, threads=threads,
                                store_root=store_root, imatrix=imatrix)
    file_name = gguf_file_name(model_name, quant)
    # Everything that shapes the output, its file name included (a renamed model is a new key).
    material = {
        "base_key": base_key, "quant": quant, "file_name": file_name,
        "versions": subset(tool_versions(), "llama-cpp-python"), "code": code_identity(__name__),
    }

    def build(tmp: Path) -> None:
        check_quantize(base_gguf, quant, quant)  # admitted beside the steps running (not for a reused file)
        _quantize_file(base_gguf, tmp / file_name, quant, threads)

    stored = stored_step(store_root, "quantize", material, build)
    return QuantizedModel(quant=quant, gguf_path=stored.path / file_name, key=stored.key, reused=stored.reused)


def _quantize_recipe(base_gguf: Path, recipe: QuantRecipe, *, base_key: str, model_name: str, threads: int | None,
                     store_root: Path, imatrix: Imatrix | None) -> QuantizedModel:
    if recipe.imatrix and imatrix is None:
        raise ValueError(f"{recipe.label} asks for an importance matrix but none was given")
    file_name = gguf_file_name(model_name, recipe.label)
    tools = tools_record()
    material = {
        "base_key": base_key, "type": recipe.type, "overrides": recipe.overrides, "file_name": file_name,
        "imatrix_key": imatrix.key if recipe.imatrix else None, "tools": tools,
        "code": code_identity("tasks.formats.gguf.quantize_tool"),
    }
    matrix = imatrix.path if recipe.imatrix else None

    def build(tmp: Path) -> None:
        check_quantize(base_gguf, recipe.type, recipe.label)
        quantize_with_tool(base_gguf, tmp / file_name, recipe.type, overrides=recipe.overrides, imatrix=matrix,
                           threads=threads, tools=tools)

    stored = stored_step(store_root, "quantize", material, build)
    return QuantizedModel(quant=recipe.label, gguf_path=stored.path / file_name, key=stored.key, reused=stored.reused)


def _quantize_file(source: Path, target: Path, quant: str, threads: int | None) -> None:
    # A subprocess: llama.cpp prints a line per tensor on the C stderr, which belongs in a log
    # file next to the result rather than on the user's terminal.
    command = [sys.executable, "-m", __name__, str(source), str(target), quant, str(threads or 0)]
    log_path = target.with_suffix(".log")
    with log_path.open("w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=hostlock.child_env())
    if done.returncode != 0 or not target.is_file():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-8:])
        raise SourceError(f"llama.cpp could not quantize {source.name} to {quant}. Its last lines:\n{tail}")


def _quantize_in_process(source: Path, target: Path, quant: str, threads: int) -> None:
    import llama_cpp  # llama.cpp's binding: native library, only where a model runs

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant}")
    params.nthread = threads or os.cpu_count() or 1
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params)
    if status != 0:
        raise SystemExit(f"llama_model_quantize returned {status}")


if __name__ == "__main__":
    _quantize_in_process(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
