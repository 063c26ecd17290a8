"""The format registry: name -> the module whose `FORMAT` implements `tasks.formats.base.Format`.

Built-in formats are imported lazily, so parsing a config never loads a runtime. A plug-in format
(or a test-only one) registers its module path with `register_format`; nothing else changes.
"""

from __future__ import annotations

import difflib
import importlib

from tasks.core.errors import ConfigError, UnsupportedModelError
from tasks.formats.base import Refuses

# The f16 GGUF is the reference every variant is scored against; it comes from this format.
REFERENCE_FORMAT = "gguf"

_MODULES: dict[str, str] = {
    "gguf": "tasks.formats.gguf",
    "onnx": "tasks.formats.onnx",
}


def register_format(name: str, module: str) -> None:
    """Make `formats: {name: ...}` resolve to `module.FORMAT` (module path, importable)."""
    _MODULES[name] = module


def known_formats() -> list[str]:
    return sorted(_MODULES)


def get_format(name: str):
    """The `FORMAT` object of a registered format; unknown names suggest near matches."""
    if name not in _MODULES:
        close = difflib.get_close_matches(name, known_formats(), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known_formats())}"
        raise ConfigError("formats", [f"formats: unknown format {name!r}; {hint}"])
    return importlib.import_module(_MODULES[name]).FORMAT


def config_model(name: str):
    """The pydantic model of a format's config section, imported without its runtime."""
    if name not in _MODULES:
        get_format(name)  # raises with a suggestion
    return importlib.import_module(_MODULES[name] + ".config").CONFIG


def base_config_model():
    """The pydantic model of the reference's base build (`convert:` in a pipeline config), imported
    without its runtime."""
    return importlib.import_module(_MODULES[REFERENCE_FORMAT] + ".config").BASE_CONFIG


def refusals(architecture: str, formats: dict) -> list[str]:
    """'format: reason' for every configured format (name -> its config section) that cannot take a
    model of `architecture`; formats that are not `Refuses` take everything."""
    reasons = []
    for name, section in formats.items():
        fmt = get_format(name)
        if isinstance(fmt, Refuses) and (reason := fmt.refusal(architecture, section)):
            reasons.append(f"{name}: {reason}")
    return reasons


def refuse_unsupported(architecture: str, formats: dict) -> None:
    """Raise UnsupportedModelError naming every format that cannot take `architecture`, and why."""
    if reasons := refusals(architecture, formats):
        lines = "\n".join(f"  - {reason}" for reason in reasons)
        raise UnsupportedModelError(f"The model's architecture {architecture!r} cannot go through every "
                                    f"configured format; nothing was converted:\n{lines}")
