"""Step 1, acquire: bring a model from its source to a checked HF folder with a manifest."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from tasks.acquire import gguf_source, hub, inspect
from tasks.acquire.sources import GgufSource, HubSource, LocalSource, ModelSource
from tasks.store.artifacts import stored_step
from tasks.store.codeid import code_identity
from tasks.store.hashing import build_manifest, sha256_file, sha256_json
from tasks.store.versions import subset, tool_versions


class AcquireConfig(BaseModel):
    """How strictly a source is checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    allow_pickle: bool = Field(False, description="Accept pickle (.bin) weights; they can run code.")
    trust_remote_code: bool = Field(False, description="Accept models that need their own Python code.")
    allow_oversize: bool = Field(False, description="Accept models above 30B parameters.")
    dequantize_dtype: str = Field(
        "bfloat16", pattern="^(bfloat16|float16|float32)$",
        description="dtype of the HF weights written for a GGUF source.",
    )


class AcquiredModel(BaseModel):
    """A checked HF-format model folder and its provenance."""

    hf_dir: Path
    source: str = Field(description="Where it came from, e.g. 'hub:org/name' or 'gguf:pkg/file'.")
    source_revision: str = Field(description="Commit sha (hub), file sha256 (gguf) or manifest hash.")
    architecture: str
    param_count: int
    tier: str
    license: str | None
    from_quantized: str | None = Field(None, description="GGUF file type id when dequantized.")
    acquire_strategy: str | None = Field(None, description="How a GGUF was dequantized, e.g. 'streaming-bfloat16'.")
    predicted_peak_bytes: int | None = Field(None, description="The plan's peak memory for that strategy.")
    strategy_note: str | None = Field(None, description="Why a strategy other than the configured one was taken.")
    manifest: dict[str, str]
    identity: str = Field(description="Hash of the manifest: the cache identity of these weights.")
    reused: bool = False


def acquire_model(source: ModelSource, config: AcquireConfig, *, store_root: Path) -> AcquiredModel:
    """Acquire `source` into a checked HF folder; the pure core of the step."""
    if isinstance(source, HubSource):
        folder, revision = hub.download_snapshot(source, allow_pickle=config.allow_pickle)
        return _describe(folder, config, source=f"hub:{source.repo_id}", revision=revision)
    if isinstance(source, LocalSource):
        folder = source.path.expanduser().resolve()
        described = _describe(folder, config, source=f"local:{folder}", revision="")
        return described.model_copy(update={"source_revision": described.identity})
    return _acquire_gguf(source, config, store_root)


def _acquire_gguf(source: GgufSource, config: AcquireConfig, store_root: Path) -> AcquiredModel:
    path = gguf_source.locate_gguf(source)
    facts = gguf_source.read_gguf_facts(path)
    # The memory check first: a step that cannot fit fails in a second, before even hashing a large file.
    need, note = gguf_source.dequantize_strategy(path, config.dequantize_dtype)
    file_sha = sha256_file(path)
    method, dtype = need.strategy.split("-", 1)
    material = {
        "gguf_sha256": file_sha,
        "dtype": dtype,
        "versions": subset(tool_versions(), "transformers", "torch", "gguf"),
        "code": code_identity("tasks.acquire.dequantize", "tasks.acquire.gguf_source"),
    }
    if method != "transformers":  # the default path keeps its keys: stores built before this stay valid
        material["method"] = method
        material["code"] = code_identity("tasks.acquire.dequantize_stream", "tasks.acquire.gguf_source")
    stored = stored_step(
        store_root, "acquire", material,
        lambda tmp: gguf_source.dequantize_to_hf(path, tmp, dtype=dtype, method=method),
    )
    label = (f"gguf:{source.parts.label()}/{source.file}" if source.parts else
             f"gguf:{source.package}/{source.file}" if source.package else f"gguf:{path}")
    described = _describe(stored.path, config, source=label, revision=file_sha)
    return described.model_copy(update={
        # The file's or package's own word first; the config's (with its provenance in a comment) fills the gap.
        "license": facts["license"] or gguf_source.package_license(source) or source.license,
        "from_quantized": str(facts["file_type"]),
        "reused": stored.reused,
        "acquire_strategy": need.strategy,
        "predicted_peak_bytes": need.peak_bytes,
        "strategy_note": note,
    })


def _describe(folder: Path, config: AcquireConfig, *, source: str, revision: str) -> AcquiredModel:
    model_config = inspect.read_model_config(folder)
    inspect.check_remote_code(model_config, trust_remote_code=config.trust_remote_code)
    weights = inspect.weight_files(folder, allow_pickle=config.allow_pickle)
    param_count = inspect.count_parameters(weights)
    manifest = build_manifest(folder, exclude=frozenset({"slmforge-manifest.json"}))
    return AcquiredModel(
        hf_dir=folder,
        source=source,
        source_revision=revision,
        architecture=inspect.architecture_of(model_config),
        param_count=param_count,
        tier=inspect.tier_of(param_count, allow_oversize=config.allow_oversize),
        license=inspect.find_license(folder),
        manifest=manifest,
        identity=sha256_json(manifest),
    )
