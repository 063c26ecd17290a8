"""The registry edge: register this run's passing variants and move the device aliases (rules in
tasks.review.registry), through MLflow's client with explicit ids."""

from __future__ import annotations

from mlflow.exceptions import MlflowException

from tasks.review.devices import load_device, shipped_devices
from tasks.review.recommend import recommend
from tasks.review.registry import RegistryConfig, registered_name, should_move, version_tags
from tasks.core.intervals import CHUNK_METRIC_PREFIX
from tasks.review.search import runs_frame, with_chunk_series
from tasks.tracking.client import read_series


def register_run(client, *, experiment_id: str, parent_run_id: str, model_name: str,
                 config: RegistryConfig) -> list[str]:
    """Register passing variants of the parent run, move aliases; returns one line per action."""
    children = client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
                                  max_results=1000)
    frame = runs_frame(children)
    if frame.empty or "tags.slmforge.gate" not in frame:
        return []  # nothing was gated (every variant failed before its gate)
    passing = frame[(frame.get("tags.slmforge.gate") == "pass") & (frame["status"] == "FINISHED")]
    passing = with_chunk_series(client.tracking_uri, passing, names=("kld",))  # recommend's paired intervals
    versions, lines = {}, []
    for row in passing.to_dict("records"):
        versions[row["run_id"]], line = _version_for(client, registered_name(model_name, row["params.format"]), row)
        lines.append(line)
    for device_name in config.devices or shipped_devices():
        device = load_device(device_name)
        for fmt, rows in passing.groupby("params.format"):
            pick = recommend(rows, device).pick
            if pick is not None:
                lines.append(_move_alias(client, registered_name(model_name, fmt), device.name,
                                         versions[pick.run_id], sigmas=config.sigmas))
    return lines


def _version_for(client, name: str, row: dict):
    """The version of this run's artefact and measurement: an existing one, else a new one."""
    tags = version_tags(row)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Variants of one model in one format, registered "
                                       "by slmforge; aliases name the device profile each version is chosen for.")
    same = (tags.get("artifact_key"), tags.get("measurement_key"))
    for version in client.search_model_versions(f"name = '{name}'"):
        if (version.tags.get("artifact_key"), version.tags.get("measurement_key")) == same and same[1]:
            return version, f"{name} v{version.version}: already registered ({row['tags.mlflow.runName']})"
    version = client.create_model_version(name, source=f"runs:/{row['run_id']}", run_id=row["run_id"], tags=tags)
    return version, f"{name} v{version.version}: registered {row['tags.mlflow.runName']}"


def _chunk_kld(client, run_id: str | None) -> list[float] | None:
    """A version's per-chunk KLD from its run (none for the f16 base, or a run from before they were logged)."""
    if not run_id:
        return None
    try:
        return read_series(client, run_id, f"{CHUNK_METRIC_PREFIX}kld") or None
    except MlflowException:  # the run was deleted since: judged on the standard error
        return None


def _move_alias(client, name: str, alias: str, new, *, sigmas: float) -> str:
    try:
        old = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        old = None
    if old is not None and old.version == new.version:
        return f"{name}@{alias}: stays on v{new.version} (still the pick)"
    series = (_chunk_kld(client, old.run_id) if old else None, _chunk_kld(client, new.run_id))
    move, reason = should_move(old.tags if old else None, new.tags, sigmas=sigmas, chunk_kld=series)
    if move:
        client.set_registered_model_alias(name, alias, new.version)
        return f"{name}@{alias}: -> v{new.version} ({reason})"
    return f"{name}@{alias}: stays on v{old.version}, not v{new.version} ({reason})"
