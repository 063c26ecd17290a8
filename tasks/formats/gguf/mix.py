"""Build one budget mix (tasks.formats.gguf.budget): calibration tokens, the stored sensitivity table,
the cheapest mix that fits, the GGUF; re-chosen with less room if the file came out over the budget."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tasks.evaluate import default_threads
from tasks.evaluate.process import run_worker
from tasks.formats.base import Built, BuildInputs
from tasks.formats.gguf.budget import BudgetTarget, choose_mix, file_type_of, tensor_budget
from tasks.formats.gguf.calibration import calibration_text
from tasks.formats.gguf.config import GgufConfig
from tasks.formats.gguf.facts import gguf_size_facts
from tasks.formats.gguf.quantize import quantize_gguf
from tasks.formats.gguf.recipes import base_imatrix, check_built, imatrix_params
from tasks.formats.gguf.sentinel import llama_build
from tasks.formats.gguf.sensitivity import RUNTIME, overrides_for, sensitivity_table, tensor_groups
from tasks.formats.gguf.variants import QuantRecipe
from tasks.store.artifacts import stored_step
from tasks.store.codeid import code_identity
from tasks.store.hashing import sha256_json

ATTEMPTS = 3


def build_mix(target: BudgetTarget, inputs: BuildInputs, config: GgufConfig) -> Built:
    """The stored GGUF of one budget target, its choice and predicted cost as MLflow params."""
    threads = config.threads or default_threads()
    imatrix = base_imatrix(inputs, config) if target.imatrix else None
    table = sensitivity_table(inputs.base.path, base_key=inputs.base.key, imatrix=imatrix,
                              calibration_tokens=calibration_tokens(inputs, config),
                              chunks=config.calibration.sensitivity_chunks, n_ctx=config.calibration.n_ctx,
                              threads=threads, store_root=inputs.store_root,
                              allowed=config.calibration.sensitivity_types)
    groups, excess = tensor_groups(inputs.base.path), 0
    for _ in range(ATTEMPTS):
        budget = tensor_budget(target, table, inputs.base.n_weights, excess)
        mix, _, cost = choose_mix(table["groups"], budget)
        recipe = QuantRecipe(label=target.label(), type=file_type_of(mix, table["groups"]), imatrix=target.imatrix,
                             overrides=overrides_for(groups, mix))
        result = quantize_gguf(inputs.base.path, recipe.type, base_key=inputs.base.key, model_name=inputs.model_name,
                               threads=config.threads, store_root=inputs.store_root, recipe=recipe, imatrix=imatrix)
        check_built(result.gguf_path, recipe, inputs)
        over = _over_budget(target, result.gguf_path)
        if over <= 0:
            break
        excess += over
    else:
        raise ValueError(f"{target.label()}: the file stayed {over} bytes over the budget after {ATTEMPTS} tries")
    params = {**recipe.params(), **{f"mix.{g}": kind for g, kind in mix.items()}, "mix.predicted_kld": cost,
              "budget.max_size": target.max_size, "budget.bpw": target.bpw, "llama_cpp.build": llama_build(plain=False)}
    params.update(imatrix_params(imatrix) if imatrix else {})
    return Built(format="gguf", quant=recipe.label, path=result.gguf_path, key=result.key, reused=result.reused,
                 params={k: v for k, v in params.items() if v is not None})


def _over_budget(target: BudgetTarget, path: Path) -> int:
    """Bytes over the target (<= 0: met); a bpw target counts tensor bytes, as bits_per_weight does."""
    facts = gguf_size_facts(path)
    if target.max_size is not None:
        return int(facts["size_bytes"]) - int(target.max_size)
    over_bits = (facts["bits_per_weight"] - target.bpw) * facts["n_weights"]
    return math.ceil(over_bits / 8) if over_bits > 0 else 0


def calibration_tokens(inputs: BuildInputs, config: GgufConfig) -> Path:
    """The calibration text as the base's token ids (stored), the input of the sensitivity probes."""
    text, _ = calibration_text(config.calibration.text, inputs.evaluation_corpora)
    needed = config.calibration.sensitivity_chunks * config.calibration.n_ctx * 16  # bytes: far above one per token
    text = text[:needed]
    material = {"base_key": inputs.base.key, "text": sha256_json(text), "code": code_identity(RUNTIME)}

    def build(tmp: Path) -> None:
        (tmp / "text.txt").write_text(text, encoding="utf-8")
        result = run_worker({"mode": "tokenize", "runtime": RUNTIME, "model": str(inputs.base.path),
                             "text_file": str(tmp / "text.txt")}, timeout_s=3600)
        (tmp / "tokens.json").write_text(json.dumps(result))

    return stored_step(inputs.store_root, "calibration-tokens", material, build).path / "tokens.json"
