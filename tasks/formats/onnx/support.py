"""Which architectures onnxruntime-genai's model builder can export, known before any work.

The builder picks its exporter with one `if config.architectures[0] == "..."` chain in
`create_model`; reading that chain from the installed builder's source (without importing it,
which would load torch and onnx) keeps the answer true for whichever release is installed,
instead of a hand-kept list that drifts on every upgrade.
"""

from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache
from pathlib import Path

from tasks.core.pysource import parse_python

GENAI_PACKAGE = "onnxruntime_genai"


def architectures_in_builder(source: str) -> frozenset[str]:
    """The architecture names `create_model` in builder source `source` compares against."""
    tree = parse_python(source)
    create = next((node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "create_model"),
                  None)
    if create is None:
        return frozenset()
    names = set()
    for node in ast.walk(create):
        if (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq)
                and ast.unparse(node.left) == "config.architectures[0]"
                and isinstance(node.comparators[0], ast.Constant) and isinstance(node.comparators[0].value, str)):
            names.add(node.comparators[0].value)
    return frozenset(names)


@lru_cache(maxsize=1)
def builder_architectures() -> frozenset[str]:
    """Architectures the installed model builder exports; empty when onnxruntime-genai is missing
    (the version check reports that) or its source no longer has the chain (then nothing is refused)."""
    # find_spec on the top-level package locates it without importing it (no native library load).
    spec = importlib.util.find_spec(GENAI_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "builder.py"
    return architectures_in_builder(path.read_text()) if path.is_file() else frozenset()


def unsupported_reason(architecture: str, known: frozenset[str] | None = None) -> str | None:
    """Why the ONNX format cannot take `architecture` (None when it can, or when unknown)."""
    known = builder_architectures() if known is None else known
    if not known or architecture in known:
        return None
    text_models = sorted(name for name in known if name.endswith("ForCausalLM"))
    return (f"onnxruntime-genai's model builder has no exporter for architecture {architecture!r} "
            f"(it exports {', '.join(text_models)} and a few multimodal ones); remove 'onnx' from `formats` "
            "for this model, or pick a model of a supported family")
