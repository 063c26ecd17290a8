"""`slmforge validate`: every problem of a config, found without heavy work."""

from __future__ import annotations

from pathlib import Path

from tasks.acquire.gguf_source import locate_gguf
from tasks.acquire.sources import GgufSource, HubSource, LocalSource
from tasks.config import PipelineConfig, load_config
from tasks.formats.gguf.convert import converter_gguf_problem
from tasks.errors import ConfigError, SlmforgeError
from tasks.evaluate.corpus import FileCorpus
from tasks.formats.onnx.export import check_onnx_versions


def config_problems(path: Path) -> tuple[PipelineConfig | None, list[str]]:
    """(config or None, problems). Schema errors first; then the sources the config points at."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        return None, exc.problems
    problems = []
    source = config.source
    if isinstance(source, LocalSource) and not (source.path.expanduser() / "config.json").is_file():
        problems.append(f"source.path: {source.path} is not a model folder (no config.json)")
    if isinstance(source, GgufSource):
        try:
            locate_gguf(source)
        except SlmforgeError as exc:
            problems.append(f"source: {exc}")
    if isinstance(source, HubSource) and "/" not in source.repo_id:
        problems.append(f"source.repo_id: {source.repo_id!r} should look like 'owner/name'")
    corpus = config.evaluate.corpus
    if isinstance(corpus, FileCorpus) and not corpus.path.is_file():
        problems.append(f"evaluate.corpus.path: {corpus.path} does not exist")
    if (gguf_problem := converter_gguf_problem()) is not None:
        problems.append(f"installation: {gguf_problem}")
    if config.evaluate.prefill_tokens > 8192:
        problems.append("evaluate.prefill_tokens: above 8192 is slower than useful; llama-bench uses 512")
    problems.extend(_installed_quant_type_problems(config))
    if "onnx" in config.formats:
        # Olive / GenAI / ORT releases that break each other: found now, not after an hour of GGUF work.
        problems.extend(f"formats: 'onnx': {problem}" for problem in check_onnx_versions())
    return config, problems


def _installed_quant_type_problems(config: PipelineConfig) -> list[str]:
    """Types the static table accepts but the installed llama-cpp-python lacks (an upgrade drift)."""
    if "gguf" not in config.formats:
        return []
    import llama_cpp

    missing = [t for t in config.formats["gguf"].types if not hasattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{t}")]
    return [f"formats.gguf.types: {missing} unknown to the installed llama-cpp-python"] if missing else []
