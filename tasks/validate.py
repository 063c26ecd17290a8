"""`slmforge validate`: every problem of a config, found without heavy work."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from urllib.parse import urlsplit

from tasks.acquire import inspect
from tasks.acquire.gguf_source import locate_gguf, read_gguf_facts
from tasks.acquire.sources import GgufSource, HubSource, LocalSource
from tasks.config import PipelineConfig, load_config
from tasks.core.errors import ConfigError, SlmforgeError
from tasks.evaluate.corpus import FileCorpus, short_text_problem
from tasks.evaluate.domains import evaluation_text_problems
from tasks.formats import REFERENCE_FORMAT, get_format, refusals
from tasks.formats.base import ChecksInstallation
from tasks.tracking.client import resolve_tracking_uri

# Bytes per weight of the f16 base GGUF's tensors, by convert.outtype: its size sets the least room the store needs.
BASE_BYTES_PER_WEIGHT = {"f16": 2, "bf16": 2, "f32": 4}
TRACKING_CONNECT_TIMEOUT_S = 5


def config_problems(path: Path) -> tuple[PipelineConfig | None, list[str]]:
    """(config or None, problems). Schema errors first; then the sources the config points at."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        return None, exc.problems
    problems, param_count = _source_problems(config)
    problems += _corpus_problems(config)
    problems += _store_problems(config, param_count)
    problems += _tracking_problems(config.tracking.tracking_uri)
    if (base_problem := get_format(REFERENCE_FORMAT).base_installation_problem()) is not None:
        problems.append(f"installation: {base_problem}")
    if config.evaluate.prefill_tokens > 8192:
        problems.append("evaluate.prefill_tokens: above 8192 is slower than useful; llama-bench uses 512")
    for name, section in config.formats.items():
        if isinstance(fmt := get_format(name), ChecksInstallation):
            problems.extend(fmt.installation_problems(section))
    return config, problems


def _source_problems(config: PipelineConfig) -> tuple[list[str], int | None]:
    """(problems of the model source, its parameter count when cheap to know)."""
    source, problems, param_count = config.source, [], None
    if isinstance(source, LocalSource):
        param_count = _local_source_problems(source, config, problems)
    if isinstance(source, GgufSource):
        try:
            read_gguf_facts(locate_gguf(source))  # the header only: a truncated or garbage file fails here
        except SlmforgeError as exc:
            problems.append(f"source: {exc}")
    if isinstance(source, HubSource) and "/" not in source.repo_id:
        problems.append(f"source.repo_id: {source.repo_id!r} should look like 'owner/name'")
    return problems, param_count


def _corpus_problems(config: PipelineConfig) -> list[str]:
    corpus, source = config.evaluate.corpus, config.source
    if not isinstance(corpus, FileCorpus):  # read now, pins checked: a changed text fails here, not after builds
        return evaluation_text_problems(corpus, config.evaluate.domains)
    if not corpus.path.is_file():
        return [f"evaluate.corpus.path: {corpus.path} does not exist; give an existing UTF-8 text file"]
    tokenizer = source.path.expanduser() / "tokenizer.json" if isinstance(source, LocalSource) else None
    short = short_text_problem(corpus.path, config.evaluate.n_ctx, tokenizer)
    return ([f"evaluate.corpus.path: {short}"] if short else []) + evaluation_text_problems(
        corpus, config.evaluate.domains)


def _local_source_problems(source: LocalSource, config: PipelineConfig, problems: list[str]) -> int | None:
    """What acquire and convert would refuse in a local folder, found now; returns its parameter count."""
    folder = source.path.expanduser()
    if not folder.exists():
        problems.append(f"source.path: {source.path} does not exist; point it at a local model folder (config.json "
                        "and weights), or use `source: {kind: hub, repo_id: owner/name}`")
        return None
    if not (folder / "config.json").is_file():
        problems.append(f"source.path: {source.path} is not a model folder (no config.json); point it at the "
                        "folder that holds config.json and the weights")
        return None
    param_count = None
    try:
        model_config = inspect.read_model_config(folder)
        inspect.check_remote_code(model_config, trust_remote_code=config.acquire.trust_remote_code)
        weights = inspect.weight_files(folder, allow_pickle=config.acquire.allow_pickle)
        if all(w.suffix == ".safetensors" for w in weights):  # headers only; a pickle would have to be loaded
            param_count = inspect.count_parameters(weights)
            inspect.tier_of(param_count, allow_oversize=config.acquire.allow_oversize)
        architecture = inspect.architecture_of(model_config)
    except SlmforgeError as exc:
        problems.append(f"source: {exc}")
        return param_count
    if (reason := get_format(REFERENCE_FORMAT).base_refusal(architecture)) is not None:
        problems.append(f"source: {reason}")
    others = {name: section for name, section in config.formats.items() if name != REFERENCE_FORMAT}
    problems.extend(f"formats: {reason}" for reason in refusals(architecture, others))
    return param_count


def _store_problems(config: PipelineConfig, param_count: int | None) -> list[str]:
    """A store that cannot be written, or has less room than the base GGUF alone, fails after minutes."""
    store = config.store_dir.expanduser()
    existing = next((p for p in (store, *store.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        return [f"store_dir: {existing} is a file, not a folder; point store_dir at a folder"]
    if not os.access(existing, os.W_OK | os.X_OK):  # root passes permission bits, not a read-only mount
        if os.statvfs(existing).f_flag & os.ST_RDONLY:
            return [f"store_dir: {store} is on a read-only file system; point store_dir at a writable folder"]
        return [f"store_dir: {store} is not writable by this user; fix its permissions or point store_dir "
                "at a writable folder"]
    need = (param_count or 0) * BASE_BYTES_PER_WEIGHT[config.convert.outtype]
    free = shutil.disk_usage(existing).free
    if need > free:
        return [f"store_dir: {store} has {free / 1e6:,.1f} MB free, and the {config.convert.outtype} base GGUF "
                f"alone needs about {need / 1e6:,.1f} MB; free space on that disk, or point store_dir at one with room"]
    return []


def _tracking_problems(configured: str | None) -> list[str]:
    """An MLflow server that does not answer: found in seconds, not after MLflow's minutes of retries."""
    parts = urlsplit(resolve_tracking_uri(configured))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return []
    where = "tracking.tracking_uri" if configured else "MLFLOW_TRACKING_URI"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = f"{parts.scheme}://{parts.hostname}:{port}"  # credentials in the URI stay out of the message
    try:
        socket.create_connection((parts.hostname, port), timeout=TRACKING_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        return [f"{where}: no MLflow server answers at {address} ({exc.strerror or exc}); start it "
                f"(`mlflow server --port {port}`), or set {where} to another store (unset, slmforge uses "
                "sqlite:///mlruns/mlflow.db)"]
    return []
