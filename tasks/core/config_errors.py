"""One wording for validation problems of any strict config (pipeline, prompt suite, format section)."""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml
from pydantic import BaseModel

from tasks.core.errors import ConfigError


def describe(error: dict, root: type[BaseModel]) -> str:
    """`where: what (got value)`; an unknown key gets a spelling suggestion from `root`'s fields."""
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    shown = repr(error["input"])
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(error["loc"][-1]), known_keys(root, error["loc"][:-1]), n=1)
        hint = f"did you mean {close[0]!r}?" if close else "remove it or check its spelling"
        return f"{where}: unknown key (value {shown}); {hint}"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message} (got {shown})"


def known_keys(root: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the config section at `loc` (for spelling suggestions)."""
    model: type[BaseModel] | None = root
    for part in loc:
        field = model.model_fields.get(str(part)) if model else None
        annotation = getattr(field, "annotation", None)
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return list(model.model_fields) if model else []


def read_yaml_mapping(path: Path) -> dict:
    """A YAML file whose top level is a mapping (an empty file is an empty one); else a ConfigError."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), [f"top level must be a mapping, got {type(data).__name__}"])
    return data
