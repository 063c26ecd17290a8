"""What a child run records for the review side: the model's KV geometry and where its figures came from.

Honest records: figures served from the store are the figures of an earlier measurement. The run
that first measured them writes `<store>/evaluate/<key>.origin.json` (its MLflow run, experiment,
tracking store and time); a run that reuses them is tagged reused with that origin, never as a
fresh measurement. Measurements stored before origins were written fall back to the earliest run
in this tracking store with the same measurement key, and to the time the store folder was made.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from tasks.core.secrets import redact
from tasks.review.fit import kv_layout_from_gguf, speed_context, onnx_kv_type

ORIGIN_SUFFIX = ".origin.json"


def measurement_record(stored_path: Path, key: str) -> dict:
    """What measure_variant hands to the tracking edge about its stored figures."""
    return {"key": key, "dir": str(stored_path), "measured_at": _folder_time(stored_path)}


def _folder_time(folder: Path) -> str:
    origin = folder / "measured_at.txt"
    if origin.is_file():
        return origin.read_text().strip()
    # Stored before the time was written: the folder was renamed into place when the measurement ended.
    return datetime.fromtimestamp(folder.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def origin_path(measurement: dict) -> Path:
    return Path(measurement["dir"] + ORIGIN_SUFFIX)


def write_origin(measurement: dict, *, run_id: str, experiment_id: str, tracking_uri: str) -> None:
    """Record the first run that measured these figures (a later run never overwrites it)."""
    path = origin_path(measurement)
    if path.exists():
        return
    record = {"run_id": run_id, "experiment_id": experiment_id, "tracking_uri": redact(tracking_uri),
              "measured_at": measurement["measured_at"], "measurement_key": measurement["key"]}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)


def origin_tags(measurement: dict | None, *, reused: bool, client, experiment_id: str) -> dict[str, str]:
    """Tags of a child run: reused or measured, and for reused figures the original run and time."""
    if measurement is None:
        return {"slmforge.reused": str(reused).lower()}
    tags = {"slmforge.reused": str(reused).lower(), "slmforge.measurement_key": measurement["key"],
            "slmforge.measured_at": measurement["measured_at"]}
    if not reused:
        return tags
    path = origin_path(measurement)
    if path.is_file():
        origin = json.loads(path.read_text())
        tags.update({"slmforge.measured_in_run": origin["run_id"],
                     "slmforge.measured_in_experiment": origin["experiment_id"],
                     "slmforge.measured_in_store": origin["tracking_uri"], "slmforge.measured_at": origin["measured_at"]})
        return tags
    tags["slmforge.measured_in_run"] = _earliest_run(client, experiment_id, measurement["key"]) or \
        "unknown (measured before slmforge recorded origins)"
    return tags


def _earliest_run(client, experiment_id: str, key: str) -> str | None:
    """The first run in this tracking store (any experiment: configs that differ only in review
    settings share measurements) that measured `key` itself."""
    ids = [experiment_id] + [e.experiment_id for e in client.search_experiments() if e.experiment_id != experiment_id]
    runs = client.search_runs(ids, filter_string=f"tags.`slmforge.measurement_key` = '{key}' "
                              "and tags.`slmforge.reused` = 'false'", order_by=["attributes.start_time ASC"],
                              max_results=1)
    return runs[0].info.run_id if runs else None


def model_params(base_gguf: Path, eval_config) -> dict[str, str]:
    """Params every child run needs to be fitted to a device (tasks.review.fit): the model's KV
    geometry from its base GGUF, and the context the speed worker (peak_rss_bytes) loaded it with."""
    n_ctx = speed_context(prefill_tokens=eval_config.prefill_tokens, decode_tokens=eval_config.decode_tokens,
                          depths=eval_config.depths, ttft_prompt_tokens=eval_config.ttft_prompt_tokens)
    return {**kv_layout_from_gguf(base_gguf).to_params(), "speed_n_ctx": str(n_ctx)}


def variant_params_for(model: dict[str, str], artefact: Path) -> dict[str, str]:
    """The model's params, plus the KV type a runtime fixes itself (ONNX Runtime GenAI's graph type)."""
    own = onnx_kv_type(artefact) if artefact.is_dir() else None
    return {**model, **({"runtime_kv_type": own} if own else {})}
