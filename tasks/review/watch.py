"""The tracking edge of regression checks: find the previous run of the same config on the same
hardware id in MLflow, compare (tasks.review.regressions), tag both levels, publish to Prefect."""

from __future__ import annotations

import hashlib
import json

import yaml

from pydantic import BaseModel, Field

from tasks.core.errors import SlmforgeError
from tasks.core.intervals import CHUNK_METRIC_PREFIX, CHUNK_SERIES
from tasks.review.regressions import (EVAL_TEXT, SPEED_ANCHOR, Change, RegressionConfig, changed_versions, find_regressions,
                                      moved_with_build)
from tasks.tracking import client as tracking

CONFIG_TAG = "slmforge.config_sha256"
ENDED = ("FINISHED", "FAILED")


class RegressionReport(BaseModel):
    previous_run_id: str | None = Field(None, description="The parent run compared with (None: first run).")
    changes: list[Change] = Field(default_factory=list)
    unjudged: list[str] = Field(default_factory=list, description="Figures without a recorded se/sd.")
    versions_changed: list[str] = Field(default_factory=list)
    build_moves: list[Change] = Field(default_factory=list, description="Quality figures that moved beyond noise, "
                                      "either way, while only tool versions changed (moved_with_build).")

    def lines(self) -> list[str]:
        return [c.describe() for c in self.changes]


class RegressionError(SlmforgeError):
    """The run finished but figures regressed beyond noise, and the config asks to fail on that."""

    def __init__(self, report: RegressionReport, summary: dict) -> None:
        self.summary = summary
        super().__init__(f"{len(report.changes)} regression(s) against run {report.previous_run_id}:\n"
                         + "\n".join(f"  - {line}" for line in report.lines())
                         + "\nregressions.fail_on_regression is true, so the run is marked failed.")


def check_regressions(ctx, outcomes, config: RegressionConfig, *, hardware_id: str, versions: dict) -> RegressionReport:
    """Compare this run's variants with the previous run of the same resolved config on `hardware_id`."""
    client = ctx.client
    config_sha = config_identity(ctx.config_file.read_text())
    tracking.log_values(client, ctx.parent_run_id, tags={CONFIG_TAG: config_sha})
    previous = _previous_parent(client, ctx.experiment_id, config_sha, hardware_id, ctx.parent_run_id)
    if previous is None:
        tracking.log_values(client, ctx.parent_run_id, tags={"slmforge.regressions": "no previous run to compare"})
        return RegressionReport()
    old = {r.info.run_name: {**r.data.metrics, EVAL_TEXT: r.data.params.get(EVAL_TEXT),
                             SPEED_ANCHOR: r.data.params.get(SPEED_ANCHOR), CHUNK_SERIES: _chunk_series(client, r)}
           for r in client.search_runs([ctx.experiment_id], max_results=1000,
                                       filter_string=f"tags.`mlflow.parentRunId` = '{previous.info.run_id}'")}
    new = {o.variant.name: o.metrics for o in outcomes if not o.error}
    changes, unjudged = find_regressions(old, new, config)
    old_versions = {k.removeprefix("version."): v for k, v in previous.data.params.items() if k.startswith("version.")}
    versions_changed = changed_versions(old_versions, {k: str(v) for k, v in versions.items()})
    report = RegressionReport(previous_run_id=previous.info.run_id, changes=changes, unjudged=unjudged,
                              versions_changed=versions_changed,
                              build_moves=moved_with_build(old, new, config) if versions_changed else [])
    _tag(ctx, outcomes, report)
    return report


def _chunk_series(client, run) -> dict[str, list[float]]:
    """A logged run's per-chunk means, back from their metric histories (tasks.tracking.report)."""
    names = [key.removeprefix(CHUNK_METRIC_PREFIX) for key in run.data.metrics if key.startswith(CHUNK_METRIC_PREFIX)]
    return {name: tracking.read_series(client, run.info.run_id, CHUNK_METRIC_PREFIX + name) for name in names}


# Sections that shape no figure: a change there (or a new one with defaults) keeps runs comparable.
NOT_MEASURED = ("tracking", "registry", "regressions")


def config_identity(config_yaml: str) -> str:
    """sha256 of the resolved config less the sections that shape no figure: 'the same config'."""
    data = {k: v for k, v in (yaml.safe_load(config_yaml) or {}).items() if k not in NOT_MEASURED}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _previous_parent(client, experiment_id: str, config_sha: str, hardware_id: str, this_run: str):
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{CONFIG_TAG}` = '{config_sha}' and "
                              f"tags.`slmforge.hardware_id` = '{hardware_id}'",
                              order_by=["attributes.start_time DESC"], max_results=50)
    return next((r for r in runs if r.info.run_id != this_run and r.info.status in ENDED
                 and "mlflow.parentRunId" not in r.data.tags), None)


def _tag(ctx, outcomes, report: RegressionReport) -> None:
    for tag, changes in (("slmforge.regression", report.changes), ("slmforge.build_moved", report.build_moves)):
        by_variant: dict[str, list[str]] = {}
        for change in changes:
            by_variant.setdefault(change.variant, []).append(change.describe())
        for outcome in outcomes:
            if outcome.mlflow_run_id and outcome.variant.name in by_variant:
                tracking.log_values(ctx.client, outcome.mlflow_run_id, tags={tag: "; ".join(by_variant[outcome.variant.name])})
    tracking.log_values(ctx.client, ctx.parent_run_id, tags={
        "slmforge.regressions": str(len(report.changes)), "slmforge.previous_run": report.previous_run_id,
        "slmforge.regression_list": "\n".join(report.lines()) or "-",
        "slmforge.versions_changed": "; ".join(report.versions_changed) or "-",
        "slmforge.build_moves": "\n".join(c.describe() for c in report.build_moves) or "-",
    })


def publish_regressions(report: RegressionReport) -> None:
    """A Prefect markdown artifact on the flow run: what regressed, against which run, which tools changed."""
    from prefect.artifacts import create_markdown_artifact  # Prefect: heavy, only inside a flow run or a worker command

    if report.previous_run_id is None:
        text = "No previous run of this config on this hardware: nothing to compare."
    else:
        rows = "\n".join(f"| {c.variant} | {c.figure} | {c.old:.4g} | {c.new:.4g} | {c.noise:.2g} |"
                         for c in report.changes)
        table = ("| variant | figure | previous | now | noise |\n|---|---|---|---|---|\n" + rows) if rows else \
            "No figure changed beyond noise."
        versions = ", ".join(report.versions_changed) or "none"
        text = f"Compared with MLflow run `{report.previous_run_id}`.\n\n{table}\n\nTool versions changed: {versions}"
        if report.build_moves:
            text += ("\n\nQuality figures that moved (either way) with the tool versions alone:\n"
                     + "\n".join(f"- {c.describe()}" for c in report.build_moves))
    create_markdown_artifact(text, key="slmforge-regressions", description="Regressions against the previous run")
