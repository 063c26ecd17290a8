"""The tracking edge of a run: parent/child MLflow runs, Prefect artifacts, the printed summary."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml
from mlflow.tracking import MlflowClient

from tasks.acquire import AcquiredModel
from tasks.core.reference import reference_label
from tasks.hosts.hardware import llama_system_info
from tasks.review import records
from tasks.evaluate.humaneval.step import FLIP_TAGS, PROBLEM_METRIC_PREFIX, PROBLEM_SERIES
from tasks.core.intervals import CHUNK_METRIC_PREFIX, CHUNK_SERIES
from tasks.review.publish import log_run_figures
from tasks.tracking import client as tracking
from tasks.tracking.mlflow_ui import mark_model_development
from tasks.variants import VariantOutcome, summary_frame


@dataclass
class RunContext:
    """Where this flow run is tracked; passed explicitly to every logging call."""

    client: MlflowClient
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    config_file: Path
    open_runs: set[str] = field(default_factory=set)  # child runs not yet terminated
    variant_params: dict = field(default_factory=dict)  # the model's KV geometry, on every child run


@contextmanager
def tracked_run(config, *, config_yaml: str, flow_run_id: str, hardware: dict, versions: dict) -> Iterator[RunContext]:
    """The parent run of one flow run, never left RUNNING: whatever ends the block (an error, a
    kill signal Python sees, a keyboard interrupt) terminates it and every open child as FAILED
    (KILLED for an interrupt), and the run's temporary folder is removed."""
    ctx = open_parent_run(config, config_yaml=config_yaml, flow_run_id=flow_run_id, hardware=hardware,
                          versions=versions)
    try:
        yield ctx
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "FAILED"
        tracking.log_values(ctx.client, ctx.parent_run_id, tags={"slmforge.error": f"{type(exc).__name__}: {exc}"[:5000]})
        for run_id in [*ctx.open_runs, ctx.parent_run_id]:
            ctx.client.set_terminated(run_id, status)
        raise
    finally:
        shutil.rmtree(ctx.config_file.parent, ignore_errors=True)


@contextmanager
def attached_run(tracking_uri: str, experiment_id: str, parent_run_id: str, config_yaml: str) -> Iterator[RunContext]:
    """A worker's view of a parent run another process opened: the children it opens here are
    closed as FAILED if the block fails, and the parent is left to its owner."""
    config_file = Path(tempfile.mkdtemp(prefix="slmforge-config-")) / "resolved_config.yaml"
    config_file.write_text(config_yaml)
    ctx = RunContext(MlflowClient(tracking_uri=tracking_uri), tracking_uri, experiment_id, parent_run_id, config_file)
    try:
        yield ctx
    except BaseException as exc:
        for run_id in ctx.open_runs:
            tracking.log_values(ctx.client, run_id, tags={"slmforge.error": f"{type(exc).__name__}: {exc}"[:5000]})
            ctx.client.set_terminated(run_id, "FAILED")
        raise
    finally:
        shutil.rmtree(config_file.parent, ignore_errors=True)


def fail_open_children(ctx: RunContext, *, tag: tuple[str, str], reason: str) -> list[str]:
    """Close as FAILED the children with `tag` still RUNNING: their worker died before closing them."""
    name, value = tag
    runs = ctx.client.search_runs([ctx.experiment_id], filter_string=(
        f"tags.mlflow.parentRunId = '{ctx.parent_run_id}' and tags.`{name}` = '{value}' "
        "and attributes.status = 'RUNNING'"))
    for run in runs:
        tracking.log_values(ctx.client, run.info.run_id, tags={"slmforge.error": reason[:5000]})
        ctx.client.set_terminated(run.info.run_id, "FAILED")
    return [run.info.run_id for run in runs]


def open_parent_run(config, *, config_yaml: str, flow_run_id: str, hardware: dict, versions: dict) -> RunContext:
    uri = tracking.resolve_tracking_uri(config.tracking.tracking_uri)
    tracking.prepare_store(uri)
    client = MlflowClient(tracking_uri=uri)
    experiment_id = tracking.ensure_experiment(client, config.tracking.experiment or config.name, uri)
    mark_model_development(client, experiment_id)  # opens on the runs views, not MLflow 3's GenAI traces
    reap_dead_runs(client, experiment_id)
    run_id = tracking.start_run(client, experiment_id, name=f"{config.name}-{flow_run_id[:8]}", tags={
        "prefect.flow_run_id": flow_run_id, "slmforge.hardware_id": hardware["hardware_id"], OWNER_TAG: owner(),
    })

    tracking.log_values(client, run_id, params={f"version.{k}": v for k, v in versions.items()},
                        tags={**{f"hardware.{k}": v for k, v in hardware.items()},
                              "hardware.llama_system_info": llama_system_info()})
    config_file = Path(tempfile.mkdtemp(prefix="slmforge-config-")) / "resolved_config.yaml"
    config_file.write_text(config_yaml)
    tracking.log_files(client, run_id, [config_file])
    return RunContext(client, uri, experiment_id, run_id, config_file, {run_id})


OWNER_TAG = "slmforge.owner"
# What the quality figures are against (tasks.core.reference): on the parent and every child run.
REFERENCE_TAG = "slmforge.reference"


def owner(pid: int | None = None) -> str:
    """host:pid:start-time of a process: who must close a run (a reused pid has another start time)."""
    process = psutil.Process(pid)
    return f"{socket.gethostname()}:{process.pid}:{process.create_time():.2f}"


def reap_dead_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark KILLED the runs of this host left RUNNING by a flow process that no longer exists
    (SIGKILL, power loss: nothing in the process could close them). Other hosts' runs are left."""
    host = socket.gethostname()
    reaped = []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000):
        tag = run.data.tags.get(OWNER_TAG, "")
        run_host, _, rest = tag.partition(":")
        pid, _, started = rest.partition(":")
        if run_host != host or not pid.isdigit() or _alive(int(pid), started):
            continue
        tracking.log_values(client, run.info.run_id, tags={
            "slmforge.error": f"the flow process {pid} on {host} ended without closing this run (killed); "
                              "marked KILLED by a later run"})
        client.set_terminated(run.info.run_id, "KILLED")
        reaped.append(run.info.run_id)
    return reaped


def _alive(pid: int, started: str) -> bool:
    try:
        return f"{psutil.Process(pid).create_time():.2f}" == started
    except psutil.NoSuchProcess:
        return False


def reference_of(model: AcquiredModel, config) -> str:
    """What this run's quality figures are against, e.g. 'f16 of the dequantized Q4_K_M source'."""
    return reference_label(from_quantized=model.from_quantized, outtype=config.convert.outtype)


def log_model_facts(ctx: RunContext, model: AcquiredModel, *, reference: str) -> None:
    tracking.log_values(ctx.client, ctx.parent_run_id, params={
        "source": model.source, "source_revision": model.source_revision, "architecture": model.architecture,
        "param_count": model.param_count, "license": model.license or "unknown",
        "from_quantized_file_type": model.from_quantized or "none", "reference": reference,
    }, tags={"slmforge.tier": model.tier, REFERENCE_TAG: reference})


def log_model_plan(ctx: RunContext, model: AcquiredModel) -> None:
    """How acquire fitted the memory it had (param `acquire_strategy`, tag when it deviated)."""
    tags = {"slmforge.memory_plan": model.strategy_note} if model.strategy_note else {}
    tracking.log_values(ctx.client, ctx.parent_run_id, params={"acquire_strategy": model.acquire_strategy or "n/a"},
                        tags=tags)


def log_step_records(ctx: RunContext, steps: list) -> None:
    """Each step's wall time and peak memory as metrics on the parent run. (The store's JSON record,
    which `slmforge plan` fits its cost model on, is written step by step: tasks.plan.records.keep_run_record.)"""
    metrics = {}
    for step in steps:
        key = "step." + step.step.replace(" ", "_")
        metrics[f"{key}.wall_s"], metrics[f"{key}.peak_rss_bytes"] = step.wall_s, step.peak_rss_bytes
        if step.memory_wait_s:  # it waited for memory held by the steps beside it (tasks.plan.ledger)
            metrics[f"{key}.memory_wait_s"] = step.memory_wait_s
    tracking.log_values(ctx.client, ctx.parent_run_id, metrics=metrics)


def note_model_layout(ctx: RunContext, base_gguf: Path, eval_config) -> None:
    """The model's KV geometry (from the base GGUF) and the speed worker's context, logged on the
    parent and kept for every child: `slmforge recommend` fits variants to devices with them."""
    ctx.variant_params = records.model_params(base_gguf, eval_config)
    tracking.log_values(ctx.client, ctx.parent_run_id, params=ctx.variant_params)


def open_variant_run(ctx: RunContext, outcome: VariantOutcome, *, model: AcquiredModel, hardware_id: str,
                     versions: dict, reference: str, tags: dict[str, str] | None = None) -> str:
    """The child run of one variant, logged as soon as it is measured (or failed): params and figures."""
    v = outcome.variant
    run_id = tracking.start_run(ctx.client, ctx.experiment_id, name=v.name, parent_run_id=ctx.parent_run_id, tags={
        "slmforge.tier": model.tier, "slmforge.hardware_id": hardware_id,
        "slmforge.artifact_path": str(v.path), "slmforge.artifact_key": v.key, OWNER_TAG: owner(),
        REFERENCE_TAG: reference, **(tags or {}),
    })
    ctx.open_runs.add(run_id)
    params = {"format": v.format, "quant": v.quant, "source": model.source, "reference": reference,
              "source_revision": model.source_revision, **{f"version.{k}": x for k, x in versions.items()}}
    params.update(outcome.built.params if outcome.built else {})  # recipe facts, e.g. imatrix (issue 11)
    for name in ("threads", "n_gpu_layers", "n_ctx", "chunks", "eval_text", "eval_domain", "speed_anchor"):
        if name in outcome.metrics:
            params[name] = outcome.metrics[name]
    params.update(records.variant_params_for(ctx.variant_params, v.path))
    tracking.log_values(ctx.client, run_id, params=params, metrics={**outcome.metrics, "reused": float(outcome.reused)},
                        tags={"slmforge.is_base": str(v.is_base).lower(), **records.origin_tags(
                            outcome.measurement, reused=outcome.reused, client=ctx.client,
                            experiment_id=ctx.experiment_id)})
    if series := outcome.metrics.get(CHUNK_SERIES):  # per chunk, for paired intervals (tasks.core.intervals)
        tracking.log_series(ctx.client, run_id, series, prefix=CHUNK_METRIC_PREFIX)
    if series := outcome.metrics.get(PROBLEM_SERIES):  # per HumanEval problem, for flips (pass 1.0 / fail 0.0)
        tracking.log_series(ctx.client, run_id, series, prefix=PROBLEM_METRIC_PREFIX)
    if outcome.measurement and not outcome.reused:
        records.write_origin(outcome.measurement, run_id=run_id, experiment_id=ctx.experiment_id,
                             tracking_uri=ctx.tracking_uri)
    outcome.mlflow_run_id = run_id
    return run_id


def close_variant_run(ctx: RunContext, outcome: VariantOutcome, *, artifacts: str) -> None:
    """Derived figures, gate and package files, then the run's end state (FAILED on an error).
    `artifacts` "copy" puts a packaged variant's built file or folder into MLflow as well."""
    v, run_id = outcome.variant, outcome.mlflow_run_id
    tracking.log_values(ctx.client, run_id, metrics=outcome.metrics, tags={
        "slmforge.gate": outcome.gate, "slmforge.gate_reasons": "; ".join(outcome.gate_reasons) or "-",
        **({"slmforge.gate_within_noise": "; ".join(outcome.gate_within_noise)} if outcome.gate_within_noise else {}),
        **({"slmforge.error": outcome.error} if outcome.error else {}),
        **({"slmforge.serve": "pass" if outcome.metrics["serve_smoke_pass"] else "fail"}
           if "serve_smoke_pass" in outcome.metrics else {}),
        **{f"slmforge.{name}": verdict for name, verdict in outcome.package_checks.items()},
        # Which HumanEval problems flipped against the f16 (derived after the run opened): ids, "-" for none.
        **{f"slmforge.{name}": outcome.metrics[name] for name in FLIP_TAGS if name in outcome.metrics},
    })
    files = [ctx.config_file]
    if outcome.metrics.get("prompts"):  # the greedy answers behind task_score / golden_agreement
        answers = ctx.config_file.parent / v.name / "prompt_answers.json"
        answers.parent.mkdir(exist_ok=True)
        answers.write_text(json.dumps(outcome.metrics["prompts"], indent=2))
        files.append(answers)
    if outcome.package_dir is not None:
        files += [outcome.package_dir / name for name in outcome.package_files]
        if artifacts == "copy" and v.path.is_file():
            files.append(v.path)
        elif artifacts == "copy" and v.path.is_dir():  # a folder format (ONNX): its files under its name
            ctx.client.log_artifacts(run_id, str(v.path), artifact_path=v.path.name)
    tracking.log_files(ctx.client, run_id, [f for f in files if f.exists()])
    ctx.client.set_terminated(run_id, "FAILED" if outcome.error else "FINISHED")
    ctx.open_runs.discard(run_id)


def close_parent_run(ctx: RunContext, outcomes: list[VariantOutcome], other_errors: list[str] = ()) -> None:
    """The results table, then FAILED if any variant or anything else of the run (a hardware class) failed."""
    frame = summary_frame(outcomes)
    table = Path(ctx.config_file.parent) / "results.csv"
    frame.to_csv(table, index=False)
    tracking.log_files(ctx.client, ctx.parent_run_id, [table])
    if other_errors:
        tracking.log_values(ctx.client, ctx.parent_run_id, tags={"slmforge.error": "\n".join(other_errors)[:5000]})
    log_run_figures(ctx.client, ctx.tracking_uri, ctx.parent_run_id)  # seen in the MLflow UI with no command
    failed = any(o.error for o in outcomes) or bool(other_errors)
    ctx.client.set_terminated(ctx.parent_run_id, "FAILED" if failed else "FINISHED")
    ctx.open_runs.discard(ctx.parent_run_id)


def publish_prefect_artifacts(ctx: RunContext, outcomes: list[VariantOutcome]) -> None:
    """The results table and the MLflow link, visible on the flow run in the Prefect UI."""
    # Prefect: heavy, only inside a flow run or a worker command
    from prefect.artifacts import create_link_artifact, create_table_artifact

    rows = summary_frame(outcomes).astype(object).where(lambda f: f.notna(), None).to_dict("records")
    create_table_artifact(rows, key="slmforge-results", description="Measured variants")
    create_link_artifact(
        tracking.run_url(ctx.tracking_uri, ctx.experiment_id, ctx.parent_run_id),
        link_text="MLflow parent run", key="slmforge-mlflow-run",
    )


def dump_config(config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
