"""The pipeline config: one strict document composed of each step's own config.

YAML files may `include:` other files (paths relative to the including file); included values
are merged first, the including file's values win. Every problem is reported at once.
"""

from __future__ import annotations

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
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key (value {error['input']!r}); remove it or check its spelling"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message} (got {error['input']!r})"
