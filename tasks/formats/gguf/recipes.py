"""Build one GGUF recipe: the importance matrix first when it uses one (computed once, shared by every
type through the store), then the quantized file."""

from __future__ import annotations

from tasks.formats.base import Built, BuildInputs
from tasks.formats.gguf.config import GgufConfig
from tasks.formats.gguf.imatrix import compute_imatrix
from tasks.formats.gguf.quantize import quantize_gguf
from tasks.formats.gguf.sentinel import check_recipe, llama_build
from tasks.formats.gguf.variants import QuantRecipe


def build_recipe(recipe: QuantRecipe, inputs: BuildInputs, config: GgufConfig) -> Built:
    """The stored GGUF of `recipe`, with the recipe's facts as MLflow params."""
    imatrix = base_imatrix(inputs, config) if recipe.imatrix else None
    result = quantize_gguf(inputs.base.path, recipe.type, base_key=inputs.base.key, model_name=inputs.model_name,
                           threads=config.threads, store_root=inputs.store_root, recipe=recipe, imatrix=imatrix)
    check_built(result.gguf_path, recipe, inputs)
    params = {**recipe.params(), "llama_cpp.build": llama_build(plain=recipe.plain)}
    if imatrix is not None:
        params.update(imatrix_params(imatrix))
    return Built(format="gguf", quant=recipe.label, path=result.gguf_path, key=result.key, reused=result.reused,
                 params=params)


def check_built(path, recipe: QuantRecipe, inputs: BuildInputs) -> None:
    """The recipe sentinel on every built file, fresh or reused (reading the header costs milliseconds)."""
    check_recipe(path, ftype=recipe.type, overrides=recipe.overrides, source=inputs.base.path, label=recipe.label)


def base_imatrix(inputs: BuildInputs, config: GgufConfig):
    """The base's importance matrix for the configured calibration (stored; built by the first caller)."""
    return compute_imatrix(inputs.base.path, base_key=inputs.base.key, model_name=inputs.model_name,
                           calibration=config.calibration, threads=config.threads, store_root=inputs.store_root,
                           n_weights=inputs.base.n_weights, evaluation=inputs.evaluation_corpora)


def imatrix_params(imatrix) -> dict[str, str]:
    record = imatrix.record
    return {"imatrix.key": imatrix.key[:24], "imatrix.file": imatrix.path.name,
            "imatrix.dataset": ",".join(record.get("datasets") or []), "imatrix.chunks": record.get("chunk_count"),
            "imatrix.entries": record.get("entries"), "imatrix.tools": record.get("tools", {}).get("llama.cpp", "")}
