"""The pipeline config: one strict document composed of each step's own config.

YAML files may `include:` other files (paths relative to the including file); included values
are merged first, the including file's values win. Every problem is reported at once.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.acquire import AcquireConfig
from tasks.acquire.sources import ModelSource
from tasks.convert import ConvertConfig
from tasks.errors import ConfigError
from tasks.evaluate import EvalConfig
from tasks.gates import GateConfig
from tasks.onnx.config import OnnxTargets
from tasks.package import PackageConfig
from tasks.quantize import QuantizeConfig


class TrackingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tracking_uri: str | None = Field(
        None, description="MLflow URI; default $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db.",
    )
    experiment: str | None = Field(None, description="Experiment name (default: the config's name).")
    gguf_artifacts: Literal["reference", "copy"] = Field(
        "reference", description="Copy each GGUF into MLflow, or record its path and sha256 only.",
    )


class PipelineConfig(BaseModel):
    """Everything one pipeline run needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(description="Short name: MLflow experiment and artefact names derive from it.")
    model_name: str = Field(description="Human name of the model, used in file names.")
    source: ModelSource
    acquire: AcquireConfig = Field(default_factory=AcquireConfig)
    convert: ConvertConfig = Field(default_factory=ConvertConfig)
    quantize: QuantizeConfig = Field(default_factory=QuantizeConfig)
    evaluate: EvalConfig = Field(default_factory=EvalConfig)
    gates: GateConfig = Field(default_factory=GateConfig)
    package: PackageConfig = Field(default_factory=PackageConfig)
    formats: list[Literal["gguf", "onnx"]] = Field(
        default_factory=lambda: ["gguf", "onnx"], min_length=1,
        description="Variant formats to build. The f16 GGUF is always built: it is the reference "
        "every variant is scored against; without 'gguf' only its quants are skipped.",
    )
    onnx: OnnxTargets = Field(default_factory=OnnxTargets, description="ONNX Runtime GenAI variants.")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    store_dir: Path = Field(Path(".slmforge/store"), description="Content-addressed artefact store.")


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    if not path.is_file():
        raise ConfigError(str(path), [f"file not found: {path}"])
    if path.resolve() in seen:
        raise ConfigError(str(path), [f"include cycle: {' -> '.join(map(str, seen + (path,)))}"])
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), [f"top level must be a mapping, got {type(data).__name__}"])
    merged: dict = {}
    for include in data.pop("include", []) or []:
        merged = _deep_merge(merged, _read_yaml(path.parent / include, seen + (path.resolve(),)))
    return _deep_merge(merged, data)


def _deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(path: Path) -> PipelineConfig:
    """Read, compose and validate a config file; ConfigError lists every problem."""
    data = _read_yaml(path)
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(str(path), [_describe(error) for error in exc.errors()]) from None


def _describe(error: dict) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    shown = repr(error["input"])
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(error["loc"][-1]), _known_keys(error["loc"][:-1]), n=1)
        hint = f"did you mean {close[0]!r}?" if close else "remove it or check its spelling"
        return f"{where}: unknown key (value {shown}); {hint}"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message} (got {shown})"


def _known_keys(loc: tuple) -> list[str]:
    """Field names of the config section at `loc` (for spelling suggestions)."""
    model: type[BaseModel] | None = PipelineConfig
    for part in loc:
        field = model.model_fields.get(str(part)) if model else None
        annotation = getattr(field, "annotation", None)
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return list(model.model_fields) if model else []
