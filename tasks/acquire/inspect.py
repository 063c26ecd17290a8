"""Checks and facts about an HF-format model folder: safety, size, architecture, tier."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from safetensors import safe_open

from tasks.core.errors import SourceError

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
    import torch  # torch: loaded only by the step that runs a model

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


# Hub card values that say "look elsewhere" rather than name a licence.
UNNAMED_LICENSES = ("other", "unknown")
LICENSE_FILE_STEMS = ("LICENSE", "LICENCE", "COPYING")
LICENSE_HEAD_CHARS = 3000  # BSD-3's "Neither the name" clause ends before ~1,500 characters
# (pattern, name) in order: the first whose pattern is found in the text names it. More specific
# texts come first: LGPL and AGPL texts contain "GNU GENERAL PUBLIC LICENSE" too, and BSD-3 is
# BSD-2 plus the "Neither the name" clause.
LICENSE_TEXTS: tuple[tuple[str, str], ...] = (
    (r"Apache License,?\s+Version 2\.0", "Apache-2.0"),
    (r"Permission is hereby granted, free of charge", "MIT"),
    (r"Redistribution and use in source and binary forms(?s:.*)Neither the name", "BSD-3-Clause"),
    (r"Redistribution and use in source and binary forms", "BSD-2-Clause"),
    (r"GNU LESSER GENERAL PUBLIC LICENSE\s+Version 3", "LGPL-3.0"),
    (r"GNU AFFERO GENERAL PUBLIC LICENSE\s+Version 3", "AGPL-3.0"),
    (r"GNU GENERAL PUBLIC LICENSE\s+Version 3", "GPL-3.0"),
    (r"GNU GENERAL PUBLIC LICENSE\s+Version 2", "GPL-2.0"),
    (r"Gemma Terms of Use", "Gemma Terms of Use"),
    (r"Creative Commons Attribution[- ]NonCommercial 4\.0", "CC-BY-NC-4.0"),
    (r"Creative Commons Attribution 4\.0", "CC-BY-4.0"),
)
# "LLAMA 2 COMMUNITY LICENSE AGREEMENT", "Llama 3.1 Community License Agreement", ...: the version
# matters (their terms differ), so it is kept in the name.
LLAMA_HEADING = re.compile(r"\bLlama\s*(\d+(?:\.\d+)?)\s+Community\s+License", re.IGNORECASE)


def find_license(folder: Path) -> str | None:
    """The model's licence: an identifier or readable name, never a file name; None if no trace.

    Looked for where a maintainer states it, most explicit first: the model card's front matter
    (`license:` in README.md, as Hugging Face cards have), then config.json, then the text of a
    LICENSE / COPYING file, recognised by its wording. A licence file that is none of the
    well-known texts is reported as "custom (see <file>)", so that the card says where to look.
    """
    card = _card_license(folder)
    if card and card.lower() not in UNNAMED_LICENSES:
        return card
    named = _config_license(folder) or _license_file_license(folder)
    if named:
        return named
    return f"{card} (see the model card)" if card else None


def _card_license(folder: Path) -> str | None:
    """`license` from README.md's YAML front matter (`license_name` when it is `other`)."""
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    lines = readme.read_text(errors="replace").splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), None)
    try:
        meta = yaml.safe_load("\n".join(lines[1:end])) if end else None
    except yaml.YAMLError:
        return None  # a broken card header is the card's problem; the other sources still count
    if not isinstance(meta, dict) or not meta.get("license"):
        return None
    value = meta["license"]
    value = " OR ".join(map(str, value)) if isinstance(value, list) else str(value)
    if value.lower() == "other" and meta.get("license_name"):
        return str(meta["license_name"])
    return value


def _config_license(folder: Path) -> str | None:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None  # read_model_config reports a missing or broken config.json
    value = config.get("license") if isinstance(config, dict) else None
    return str(value) if value and str(value).lower() not in UNNAMED_LICENSES else None


def _license_file_license(folder: Path) -> str | None:
    if not folder.is_dir():
        return None
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.upper().startswith(LICENSE_FILE_STEMS))
    for path in files:
        name = identify_license_text(path.read_text(errors="replace"))
        if name:
            return name
    return f"custom (see {files[0].name})" if files else None


def identify_license_text(text: str) -> str | None:
    """The licence a licence file's text is (SPDX id or the licence's own title), else None.

    Only the head is read: the well-known texts name themselves in their first lines, while a
    custom licence may cite another further down ("portions under the Apache License 2.0").
    """
    text = text[:LICENSE_HEAD_CHARS]
    llama = LLAMA_HEADING.search(text)
    if llama:
        return f"Llama {llama.group(1)} Community License"
    for pattern, name in LICENSE_TEXTS:
        if re.search(pattern, text, re.IGNORECASE):
            return name
    return None
