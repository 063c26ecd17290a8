"""The one small interface every format implements, and the records that cross it.

A format is a folder under `tasks/formats/<name>/` whose `__init__.py` exposes `FORMAT`, an object
with the attributes and methods of `Format` below. The flow never names a format: it asks the
registry (`tasks.formats`) for the configured ones and calls these methods. Measurement runs in a
fresh worker process (`tasks.evaluate.worker`) that imports the format's `runtime_module`, which
provides `load()` returning a `LoadedModel`.

Optional capabilities are declared here too, each a small protocol a format object may also
satisfy (checked with isinstance, never found by name): `Serves` (serve a variant on loopback),
`BuildsBase` (the reference format: the full-precision base every format is scored against, with
the config model of its `convert:` section), `Refuses` (why the format cannot take a model of some
architecture at all; asked once the architecture is known and before anything is converted, by
`tasks.formats.refuse_unsupported`, so such a model fails in seconds with the reason) and
`ChecksEvaluation` (a problem between its section and the `evaluate:` section of one config),
`ChecksInstallation` (what the installed tools lack for its section, found by `slmforge validate`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, Field

from tasks.evaluate.corpus import BuiltinCorpus, CorpusConfig


class BaseArtifact(BaseModel):
    """The full-precision GGUF every variant is built from or scored against (the reference)."""

    path: Path
    key: str = Field(description="Store key: content identity of the base.")
    quant: str = Field(description="Its precision label, e.g. F16.")
    reused: bool = False
    n_weights: int = Field(description="Weights in the model (the denominator of bits_per_weight).")


class BuildInputs(BaseModel):
    """What a format may build from: the acquired HF folder and the base GGUF."""

    hf_dir: Path
    hf_identity: str = Field(description="sha256 identity of the HF folder's manifest.")
    architecture: str
    model_name: str
    base: BaseArtifact
    store_root: Path
    evaluation_corpora: list[CorpusConfig] = Field(
        default_factory=lambda: [BuiltinCorpus()],
        description="Every evaluation text of the run (EvalConfig.corpora): the importance matrix's built-in "
                    "calibration text drops whatever it shares with them.",
    )


class Built(BaseModel):
    """One built variant: a file or a folder in the store."""

    format: str
    quant: str
    path: Path
    key: str
    reused: bool
    build_s: float | None = Field(None, description="Wall time of the build that made it (also on reuse).")
    versions: dict[str, str] = Field(default_factory=dict)
    request: dict[str, Any] = Field(
        default_factory=dict, description="Extra, format-specific fields for the measurement worker."
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Format-specific recipe facts logged as MLflow params (e.g. imatrix)."
    )


class Packaged(BaseModel):
    folder: Path
    key: str
    reused: bool
    label: str = Field(description="How to refer to it when deploying, e.g. an Ollama tag.")
    files_to_track: list[str] = Field(default_factory=list, description="Files logged to MLflow.")
    checks: dict[str, str] = Field(default_factory=dict, description="Checks the package made, by name, with "
                                   "their one-line verdict (e.g. deploy_validation: 'valid' or 'not validated: ...').")


class PackageInputs(BaseModel):
    """Everything packaging needs besides the variant: model facts, figures, provenance."""

    hf_dir: Path
    model_name: str
    metrics: dict[str, Any]
    provenance: dict[str, Any]
    store_root: Path
    threads: int


class Format(Protocol):
    """A deployable artefact format (GGUF, ONNX, ...): build, size, package; runtime in a worker."""

    name: str
    config_model: type[BaseModel]  # its section under `formats:` in a pipeline config
    runtime_module: str  # imported by the measurement worker; provides `load(...) -> LoadedModel`
    measure_tools: tuple[str, ...]  # packages whose versions shape its figures (cache keys, records)

    def variants(self, config: BaseModel) -> list[str]:
        """The quant labels this config asks for, in table order."""

    def build(self, quant: str, inputs: BuildInputs, config: BaseModel) -> Built:
        """Build (or reuse from the store) one variant."""

    def size_facts(self, built: Built, base: BaseArtifact) -> dict[str, float]:
        """size_bytes, bits_per_weight and weight_bytes (bytes read per decoded token)."""

    def package(self, built: Built, inputs: PackageInputs, config: BaseModel) -> Packaged:
        """A deployable folder of one passing variant, checked as far as this host allows."""


@runtime_checkable
class Serves(Protocol):
    def serve(self, built: Built, inputs: PackageInputs, config: BaseModel) -> Any:
        """Serve the variant on loopback, check its answers, load it (None when its config turns serving off)."""


@runtime_checkable
class BuildsBase(Protocol):
    base_config_model: type[BaseModel]  # the `convert:` section of a pipeline config
    base_tools: tuple[str, ...]  # the tools (tool_versions names) that build and measure the base: provenance

    def build_base(self, model: Any, *, model_name: str, config: BaseModel, store_root: Path) -> BaseArtifact:
        """The full-precision base (or reuse it from the store): the reference of every format."""

    def base_refusal(self, architecture: str) -> str | None:
        """Why the base cannot be built for a model of `architecture` at all (None: it can)."""

    def base_installation_problem(self) -> str | None:
        """What the installed tools lack to build the base (`slmforge validate`), or None."""


@runtime_checkable
class Refuses(Protocol):
    def refusal(self, architecture: str, config: BaseModel) -> str | None:
        """Why the format cannot take a model of `architecture` at all (None: it can)."""


@runtime_checkable
class ChecksInstallation(Protocol):
    def installation_problems(self, config: BaseModel) -> list[str]:
        """What the installed tools lack for this section (`slmforge validate`), each a whole sentence."""


@runtime_checkable
class ChecksEvaluation(Protocol):
    def evaluation_problem(self, config: BaseModel, evaluate: BaseModel) -> str | None:
        """A problem between the format's section and the config's `evaluate:` section (None: none)."""


class LoadedModel(Protocol):
    """A variant loaded in a measurement worker (one per process)."""

    n_vocab: int
    load_s: float

    def chunk_logits(self, token_ids: list[int], first: int) -> np.ndarray:
        """float32 logits (rows = positions first .. len-2) of one chunk run from an empty cache."""

    def time_prefill(self, token_ids: list[int]) -> float:
        """Seconds to process `token_ids` from an empty cache, computing only the last logits."""

    def time_decode(self, n_tokens: int, context: list[int], token_ids: list[int]) -> float:
        """Seconds for `n_tokens` single-token steps after `context` (untimed) was processed."""

    def time_first_token(self, token_ids: list[int]) -> float:
        """Seconds from handing over a prompt to holding the first generated token."""

    def chat_tokens(self, message: str) -> list[int]:
        """One user turn through the model's own chat template, with the generation prompt."""

    def greedy(self, prompt_ids: list[int], max_tokens: int,
               done: Callable[[list[int]], bool] | None = None) -> list[int]:
        """Argmax continuation; the end-of-generation token is included when reached. `done(generated)`,
        asked after each token, ends it early (a caller that cuts the text there anyway)."""

    def is_end(self, token: int) -> bool:
        """True for end-of-generation tokens."""

    def detokenize(self, token_ids: list[int]) -> str:
        """Text of generated tokens."""

    def chat_template(self) -> str | None:
        """The model's own chat template (Jinja), None for a model without one."""

    def special_texts(self) -> tuple[str, str]:
        """(BOS, EOS) as text, as a chat template writes them ('' where the model has none)."""

    def encode(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        """Token ids of a prompt; BOS first when `add_bos` and the tokenizer puts one there; special-token
        texts (<|im_start|>) parsed as such when `special`."""
