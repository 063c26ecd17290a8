"""A suite: several models through the pipeline in one flow, then one comparison across them.

A suite file (configs/suites/*.yaml) lists models, each a pipeline config file and/or settings
laid over it (`with:`, merged like `include:`). Each model's resolved config is written out as a
file of its own: the pipeline flow takes a path, and the files show exactly what each model ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasks.config import deep_merge, read_config_file, load_config
from tasks.core.config_errors import describe
from tasks.core.errors import ConfigError
from tasks.core.naming import slug


class SuiteModel(BaseModel):
    """One model of the suite."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    config: Path | None = Field(None, description="Pipeline config file, relative to the suite file.")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with",
                                  description="Settings laid over `config` (or, alone, a whole inline config).")

    @model_validator(mode="after")
    def _something(self) -> SuiteModel:
        if self.config is None and not self.with_:
            raise ValueError("give `config` (a pipeline config file), `with` (inline settings), or both")
        return self


class SuiteConfig(BaseModel):
    """Models to run one after the other, and how to compare them."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(description="Suite name: the comparison run and output folder derive from it.")
    models: list[SuiteModel] = Field(min_length=1, description="The models, in the order they run.")
    quality: Literal["kld_mean", "kld_p99", "perplexity_ratio", "delta_p_rms", "top1_agreement"] = Field(
        "kld_mean", description="Quality figure of the comparison's plots and Pareto fronts.")
    tracking_uri: str | None = Field(None, description="Where the comparison run goes (default: as the pipelines).")
    out_dir: Path = Field(Path("comparison"), description="Folder for the comparison's table and figures (+ /<name>).")


def load_suite(path: Path) -> SuiteConfig:
    data = read_config_file(path)
    try:
        return SuiteConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(str(path), [describe(error, SuiteConfig) for error in exc.errors()]) from None


def write_model_configs(suite: SuiteConfig, suite_path: Path, out_dir: Path) -> list[Path]:
    """Each model's resolved pipeline config as <out_dir>/<name>.yaml; every model's problems at once."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, problems, seen = [], [], set()
    for i, model in enumerate(suite.models):
        data = read_config_file(suite_path.parent / model.config) if model.config else {}
        data = deep_merge(data, model.with_)
        # One experiment per suite: its models side by side in the MLflow UI, apart from the runs
        # of the same configs outside the suite (which may use another protocol).
        data.setdefault("tracking", {}).setdefault("experiment", f"suite-{slug(suite.name)}")
        name = slug(str(data.get("name", f"model-{i}")))
        if name in seen:
            problems.append(f"models[{i}]: a second model named {name!r}; give each its own `name`")
            continue
        seen.add(name)
        path = out_dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        try:
            load_config(path)
        except ConfigError as exc:
            problems += [f"models[{i}] ({name}): {p}" for p in exc.problems]
        paths.append(path)
    if problems:
        raise ConfigError(str(suite_path), problems)
    return paths
