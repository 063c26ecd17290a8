"""Checks and facts about an HF-format model folder: safety, size, architecture, tier."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open

from tasks.errors import SourceError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
B = 1_000_000_000
# Tier edges from the design card: micro < 1.5B <= small < 14B <= medium <= 30B.
TIERS = (("micro", 1.5 * B), ("small", 14 * B), ("medium", 30 * B + 1))


def read_model_config(folder: Path) -> dict:
    """config.json as a dict, or a SourceError saying what is missing."""
    if not folder.is_dir():
        raise SourceError(f"Model folder {folder} does not exist; check `source.path`.")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise SourceError(
            f"{folder} has no config.json, so it is not a Hugging Face model folder; point "
            "`source.path` at the folder that holds config.json and the weights."
        )
    try:
        return json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise SourceError(f"{config_path} is not valid JSON ({exc}); re-download the model.") from exc


def weight_files(folder: Path, *, allow_pickle: bool) -> list[Path]:
    """The weight files to use, refusing pickle files unless explicitly allowed."""
    safetensors = sorted(folder.glob("*.safetensors"))
    if safetensors:
        return safetensors
    pickles = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles and not allow_pickle:
        raise SourceError(
            f"{folder} holds only pickle weights ({pickles[0].name}); pickle files can run code "
            "when loaded. Use a safetensors copy, or set `acquire.allow_pickle: true` if you trust it."
        )
    if not pickles:
        raise SourceError(f"{folder} has no weights (*.safetensors); the download may be incomplete.")
    return pickles


def count_parameters(files: list[Path]) -> int:
    """Parameter count read from safetensors headers, without loading any tensor."""
    total = 0
    for path in files:
        if path.suffix != ".safetensors":
            total += _count_pickled(path)
            continue
        with safe_open(str(path), framework="numpy") as handle:
            for name in handle.keys():
                shape = handle.get_slice(name).get_shape()
                count = 1
                for dim in shape:
                    count *= dim
                total += count
    return total


def _count_pickled(path: Path) -> int:
    """Parameters of an (explicitly allowed) pickle checkpoint; weights_only blocks code objects."""
    import torch

    state = torch.load(path, map_location="meta", weights_only=True, mmap=True)
    return sum(t.numel() for t in state.values() if hasattr(t, "numel"))


def tier_of(param_count: int, *, allow_oversize: bool) -> str:
    """micro / small / medium, or a SourceError past 30B unless allowed ('large')."""
    for name, upper in TIERS:
        if param_count < upper:
            return name
    if allow_oversize:
        return "large"
    raise SourceError(
        f"Model has {param_count / B:.1f}B parameters, above the 30B that slmforge targets; "
        "set `acquire.allow_oversize: true` to go on anyway."
    )


def architecture_of(config: dict) -> str:
    """The transformers architecture class name, e.g. LlamaForCausalLM."""
    architectures = config.get("architectures") or []
    if not architectures:
        raise SourceError(
            "config.json has no `architectures` entry, so the converter cannot pick a model class; "
            "add e.g. \"architectures\": [\"LlamaForCausalLM\"]."
        )
    return architectures[0]


def check_remote_code(config: dict, *, trust_remote_code: bool) -> None:
    """Refuse models whose code would be fetched and run, unless the config trusts it."""
    if config.get("auto_map") and not trust_remote_code:
        raise SourceError(
            "This model needs its own Python code (config.json has `auto_map`); slmforge never "
            "runs remote code unless `acquire.trust_remote_code: true` is set."
        )


def find_license(folder: Path, readme_meta: dict | None = None) -> str | None:
    """The licence named in the model card metadata or a LICENSE file, if any."""
    if readme_meta and readme_meta.get("license"):
        return str(readme_meta["license"])
    readme = folder / "README.md"
    if readme.is_file():
        for line in readme.read_text(errors="replace").splitlines()[:40]:
            if line.strip().startswith("license:"):
                return line.split(":", 1)[1].strip()
    for name in ("LICENSE", "LICENSE.txt", "LICENSE.md"):
        if (folder / name).is_file():
            return name
    return None
