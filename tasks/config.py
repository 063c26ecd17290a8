"""The pipeline config: one strict document composed of each step's own config.

YAML files may `include:` other files (paths relative to the including file); included values
are merged first, the including file's values win. Every problem is reported at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from tasks import formats as format_registry
from tasks.acquire import AcquireConfig
from tasks.acquire.sources import ModelSource
from tasks.core.config_errors import describe, read_yaml_mapping
from tasks.core.errors import ConfigError
from tasks.core.gates import GateConfig
from tasks.evaluate import EvalConfig
from tasks.formats.base import ChecksEvaluation
from tasks.remote.build_runner import BuildRunnerConfig
from tasks.remote.submit import check_class_names
from tasks.review.registry import RegistryConfig
from tasks.review.regressions import RegressionConfig


class TrackingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tracking_uri: str | None = Field(
        None, description="MLflow URI; default $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db.",
    )
    experiment: str | None = Field(None, description="Experiment name (default: the config's name).")
    # `gguf_artifacts` was this field's name while GGUF was the only format: still read, so old configs load.
    artifacts: Literal["reference", "copy"] = Field(
        "reference", validation_alias=AliasChoices("artifacts", "gguf_artifacts"),
        description="Copy each packaged variant's built file or folder (a GGUF, an ONNX folder) into MLflow, "
                    "or record its path and sha256 only.",
    )


class PipelineConfig(BaseModel):
    """Everything one pipeline run needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(description="Short name: MLflow experiment and artefact names derive from it.")
    model_name: str = Field(description="Human name of the model, used in file names.")
    source: ModelSource
    acquire: AcquireConfig = Field(default_factory=AcquireConfig)
    convert: SerializeAsAny[BaseModel] = Field(
        default_factory=lambda: format_registry.base_config_model()(), validate_default=True,
        description="The full-precision base every variant is built from or scored against (the reference "
        "format's own settings, e.g. `outtype: f16`).",
    )
    evaluate: EvalConfig = Field(default_factory=EvalConfig)
    gates: GateConfig = Field(default_factory=GateConfig)
    formats: dict[str, SerializeAsAny[BaseModel]] = Field(
        default_factory=lambda: {"gguf": {}, "onnx": {}}, validate_default=True,
        description="Variant formats to build, each with its own section (e.g. `gguf: {types: [Q8_0]}`); "
        "a list of names takes each one's defaults. The f16 GGUF base is always built and measured: "
        "it is the reference every variant is scored against.",
    )
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    regressions: RegressionConfig = Field(default_factory=RegressionConfig,
                                          description="Comparison with the previous run of this config.")
    registry: RegistryConfig = Field(default_factory=RegistryConfig, description="Model registry and device aliases.")
    builds: BuildRunnerConfig = Field(default_factory=BuildRunnerConfig, description="Where builds fan out.")
    hardware: list[str] = Field(
        default_factory=list,
        description="Hardware classes to measure on, e.g. [cpu-avx2, cuda-h100]: each variant is measured by a "
        "worker of the work pool of that name (`slmforge worker start --hardware-class NAME`), the first class's "
        "figures gate and package. Empty: measured here, in this run's own process.",
    )
    remote_timeout_s: float = Field(
        6 * 3600, gt=0, description="How long to wait for a hardware class's measurements before failing them.",
    )
    remote_worker_wait_s: float = Field(
        600, gt=0, description="How long a hardware class's measurement may wait with no live worker in its work "
        "pool before it is cancelled and the class fails (a worker that took it is watched by heartbeats instead).",
    )
    store_dir: Path = Field(Path(".slmforge/store"), description="Content-addressed artefact store.")

    @field_validator("hardware")
    @classmethod
    def _class_names(cls, value: list[str]) -> list[str]:
        if problems := check_class_names(value):
            raise ValueError("; ".join(problems))
        if len(set(value)) != len(value):
            raise ValueError(f"hardware: a class is listed twice in {value}")
        return value

    @field_validator("formats", mode="before")
    @classmethod
    def _format_sections(cls, value: Any) -> dict[str, BaseModel]:
        """Each section validated by its format's own config model (from the format registry)."""
        sections, problems = format_sections(value)
        if problems:
            raise ValueError("; ".join(problems))
        return sections

    @field_validator("convert", mode="before")
    @classmethod
    def _base_section(cls, value: Any) -> BaseModel:
        model = format_registry.base_config_model()
        return value if isinstance(value, model) else model.model_validate(value)

    @model_validator(mode="after")
    def _formats_agree_with_evaluation(self) -> PipelineConfig:
        for name, section in self.formats.items():
            fmt = format_registry.get_format(name)
            if isinstance(fmt, ChecksEvaluation) and (problem := fmt.evaluation_problem(section, self.evaluate)):
                raise ValueError(problem)
        return self


def format_sections(value: Any) -> tuple[dict[str, BaseModel], list[str]]:
    """(validated sections, one line per problem). A list of names takes each one's defaults;
    `name: null` switches a format off (e.g. one an included file turned on)."""
    if isinstance(value, list):
        value = {name: {} for name in value}
    if not isinstance(value, dict):
        return {}, [f"formats: give a mapping of format name to its settings, e.g. {{gguf: {{types: [Q8_0]}}}} "
                    f"(got {value!r})"]
    sections, problems = {}, []
    for name, section in value.items():
        if section is None:
            continue
        try:
            model = format_registry.config_model(name)
            sections[name] = section if isinstance(section, model) else model.model_validate(section)
        except ConfigError as exc:
            problems.extend(exc.problems)
        except ValidationError as exc:
            problems.extend(f"formats.{name}." + describe(error, model) for error in exc.errors())
    if not sections and not problems:
        problems.append(f"formats: every format is switched off (got {value!r}); give at least one, e.g. gguf: {{}}")
    return sections, problems


def read_config_file(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """A config file with its `include:` files composed in order, the including file last."""
    if not path.is_file():
        where = (f"included from {seen[-1]}; include paths are relative to the including file's folder"
                 if seen else "check the path of the config file")
        raise ConfigError(str(path), [f"file not found: {path} ({where})"])
    if path.resolve() in seen:
        chain = " -> ".join(map(str, seen + (path,)))
        raise ConfigError(str(path), [f"include cycle: {chain}; remove one of these includes"])
    data = read_yaml_mapping(path)
    includes = data.pop("include", None) or []
    # A lone string is one file; iterating it would try to include each of its characters.
    includes = [includes] if isinstance(includes, str) else includes
    if not isinstance(includes, list) or not all(isinstance(item, str) for item in includes):
        raise ConfigError(str(path), [
            f"include: must be a file name or a list of file names, got {includes!r}; "
            "write e.g. `include: [quant/default.yaml]`"
        ])
    merged: dict = {}
    for include in includes:
        merged = deep_merge(merged, read_config_file(path.parent / include, seen + (path.resolve(),)))
    return deep_merge(merged, data)


def deep_merge(base: dict, override: dict) -> dict:
    """`override` laid over `base`, mapping by mapping, at any depth.

    A mapping that names its `kind` (source, evaluate.corpus: discriminated sections) is a whole
    choice, so it replaces the mapping beneath instead of merging into it: the fields of one kind
    mean nothing to another (a `gguf` source given by `path` must not inherit the `package` and
    `file` of the included one). To change one field of an included section, leave `kind` out.
    """
    out = dict(base)
    for key, value in override.items():
        below = out.get(key)
        if isinstance(value, dict) and isinstance(below, dict) and "kind" not in value:
            out[key] = deep_merge(below, value)
        else:
            out[key] = value
    return out


def load_config(path: Path) -> PipelineConfig:
    """Read, compose and validate a config file; ConfigError lists every problem."""
    data = read_config_file(path)
    problems = []
    if "formats" in data:  # validated apart, so that each problem of each section is its own line
        data["formats"], problems = format_sections(data["formats"])
    try:
        config = PipelineConfig.model_validate(data)
    except ValidationError as exc:
        problems += [describe(error, PipelineConfig) for error in exc.errors()
                     if not (error["loc"][:1] == ("formats",) and problems)]
    if problems:
        raise ConfigError(str(path), problems)
    return config
