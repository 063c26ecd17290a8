"""Measured variants from any MLflow store as one pandas table, and its Pareto fronts.

The pure core of `slmforge compare`: MLflow's own search API reads the runs (any tracking URI),
everything after that is pandas on the returned frame, so it is tested without a store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from tasks.core.errors import UserError
from tasks.evaluate.domains import SUMMARY_KLD
from tasks.core.intervals import mean_interval, paired_interval, perplexity_ratio_interval
from tasks.review.search import read_runs, with_chunk_series
from tasks.tracking.client import resolve_tracking_uri

# Quality figures a comparison can rank on, and which way is better.
QUALITY_METRICS: dict[str, str] = {
    "kld_mean": "lower", "kld_p99": "lower", "perplexity_ratio": "lower",
    "delta_p_rms": "lower", "top1_agreement": "higher",
}
# The columns of the comparison table, in reading order (public metric names, DESIGN.md).
TABLE_COLUMNS = (
    "model", "tier", "hardware_id", "format", "quant", "reference", "eval_text", "size_bytes", "bits_per_weight", "perplexity",
    "perplexity_ratio", "perplexity_ratio_low", "perplexity_ratio_high", "kld_mean", "kld_mean_low", "kld_mean_high",
    "kld_p99", "top1_agreement", "prefill_tps", "decode_tps", "decode_tps_rel",
    "ttft_ms", "peak_rss_bytes", "decode_efficiency", "gate", "reused", "experiment", "run_id", "parent_run_id", "start_time",
)
UNRECORDED_TEXT = "unrecorded"  # runs from before the text was logged: comparable with none
_TAGS = {"tier": "slmforge.tier", "hardware_id": "slmforge.hardware_id", "gate": "slmforge.gate",
         "reused": "slmforge.reused", "parent_run_id": "mlflow.parentRunId", "run_name": "mlflow.runName"}


class CompareSelection(BaseModel):
    """Which variant runs to compare; an empty list selects everything."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tracking_uri: str | None = Field(None, description="MLflow URI (default $MLFLOW_TRACKING_URI, else the local store).")
    experiments: list[str] = Field(default_factory=list, description="Experiment names (default: all).")
    models: list[str] = Field(default_factory=list, description="Model names as in the run names, e.g. smollm2-135m-instruct.")
    hardware: list[str] = Field(default_factory=list, description="Hardware ids (tag slmforge.hardware_id).")
    formats: list[str] = Field(default_factory=list, description="Formats, e.g. gguf, onnx.")
    parent_run_ids: list[str] = Field(default_factory=list, description="Only the variants of these pipeline runs.")
    quality: Literal["kld_mean", "kld_p99", "perplexity_ratio", "delta_p_rms", "top1_agreement"] = Field(
        "kld_mean", description="The quality figure on the plots' y axis and in the Pareto fronts.")
    all_runs: bool = Field(False, description="Keep every run; default keeps the newest per model, hardware, variant.")


def search_variant_runs(selection: CompareSelection) -> pd.DataFrame:
    """The raw runs of the selected experiments, as MLflow's search API returns them."""
    # One parent is a server-side filter; several are selected in pandas (_select).
    parent = f"tags.mlflow.parentRunId = '{selection.parent_run_ids[0]}'" if len(selection.parent_run_ids) == 1 else ""
    uri = resolve_tracking_uri(selection.tracking_uri)
    return with_chunk_series(uri, read_runs(uri, selection.experiments, filter_string=parent))


def variant_table(raw: pd.DataFrame, selection: CompareSelection) -> pd.DataFrame:
    """One row per measured variant run (pipeline children: they carry params.format), selected."""
    if raw.empty or "params.format" not in raw:
        return pd.DataFrame(columns=list(TABLE_COLUMNS))
    # Finished runs only: a killed or failed run may hold part of its figures (e.g. speed but no KLD).
    frame = raw[raw["params.format"].notna() & (raw["status"] == "FINISHED")].copy()
    # What the quality columns are against: a quantized source's dequantization is no original weights.
    reference = (frame["params.reference"] if "params.reference" in frame else pd.Series(None, index=frame.index)).astype(object)
    # Which tokens the quality figures were measured on: figures of two texts are never ranked together.
    text = (frame["params.eval_text"] if "params.eval_text" in frame else pd.Series(None, index=frame.index)).astype(object)
    out = pd.DataFrame({"format": frame["params.format"], "quant": frame["params.quant"],
                        "reference": reference.where(reference.notna(), "unrecorded (before references were logged)"),
                        "eval_text": text.where(text.notna(), UNRECORDED_TEXT),
                        "experiment": frame.get("experiment"), "run_id": frame["run_id"],
                        "start_time": frame["start_time"]})
    for column, tag in _TAGS.items():
        out[column] = frame.get(f"tags.{tag}")
    _add_intervals(out, frame)
    # Each evaluation domain's kld_mean and their summary (tasks.evaluate.domains), where runs have them.
    domains = [c.removeprefix("metrics.") for c in frame if c.startswith("metrics.")
               and (c.endswith("/kld_mean") or c == f"metrics.{SUMMARY_KLD}")]
    for column in [*TABLE_COLUMNS, *domains]:
        if column not in out:
            out[column] = pd.to_numeric(frame.get(f"metrics.{column}"), errors="coerce")
    out["model"] = [model_of(name, f, q) for name, f, q in zip(out["run_name"], out["format"], out["quant"])]
    out = _select(out, selection)
    if not selection.all_runs:  # a nightly store holds many runs of the same variant: the newest speaks
        out = out.sort_values("start_time").drop_duplicates(["model", "hardware_id", "format", "quant", "eval_text"],
                                                            keep="last")
    columns = list(TABLE_COLUMNS)
    at = columns.index("kld_p99")  # the domains' KLD beside the main text's
    columns[at:at] = domains
    return out.sort_values(["model", "hardware_id", "format", "size_bytes"])[columns].reset_index(drop=True)


def _add_intervals(out: pd.DataFrame, frame: pd.DataFrame) -> None:
    """95 % bootstrap intervals over chunks (tasks.core.intervals): kld_mean's, and perplexity_ratio's
    paired chunk by chunk with the f16 base of the same pipeline run. Empty where a run logged no
    per-chunk figures or scored fewer than MIN_CHUNKS chunks."""
    kld = frame["chunks.kld"] if "chunks.kld" in frame else pd.Series(None, index=frame.index, dtype=object)
    nll = frame["chunks.nll"] if "chunks.nll" in frame else pd.Series(None, index=frame.index, dtype=object)
    parents = frame.get("tags.mlflow.parentRunId", pd.Series(None, index=frame.index))
    is_base = frame.get("tags.slmforge.is_base", pd.Series(None, index=frame.index)) == "true"
    base_nll = {parent: series for parent, series, base in zip(parents, nll, is_base) if base and isinstance(series, list)}
    low, high, ppl_low, ppl_high = [], [], [], []
    for series, chunk_nll, parent, base in zip(kld, nll, parents, is_base):
        interval = mean_interval(series) if isinstance(series, list) else None
        low.append(interval.low if interval else np.nan)
        high.append(interval.high if interval else np.nan)
        paired = None if base or not isinstance(chunk_nll, list) else perplexity_ratio_interval(
            base_nll.get(parent), chunk_nll)
        ppl_low.append(paired[0] if paired else np.nan)
        ppl_high.append(paired[1] if paired else np.nan)
    out["kld_mean_low"], out["kld_mean_high"] = low, high
    out["perplexity_ratio_low"], out["perplexity_ratio_high"] = ppl_low, ppl_high


def model_of(run_name: str | None, fmt: str, quant: str) -> str:
    """The model part of a variant's run name (tasks.core.naming.variant_name: <model>-<format>-<quant>)."""
    suffix = f"-{fmt}-{str(quant).lower()}"
    name = str(run_name or "unknown")
    return name[: -len(suffix)] if name.endswith(suffix) else name


def _select(frame: pd.DataFrame, selection: CompareSelection) -> pd.DataFrame:
    for column, wanted in (("model", selection.models), ("hardware_id", selection.hardware),
                           ("format", selection.formats), ("parent_run_id", selection.parent_run_ids)):
        if wanted:
            frame = frame[frame[column].isin(wanted)]
    return frame


def pareto_mask(x: pd.Series, y: pd.Series, *, x_better: str = "lower", y_better: str = "lower",
                tied: np.ndarray | None = None) -> np.ndarray:
    """True for the points no other point beats on both axes (ties on both keep both).

    `tied[i, j]`: the qualities of i and j cannot be told apart (a paired interval over chunks holds
    0). Such a pair counts as equal on quality: neither beats the other by it, and the one better on
    the other axis beats the other, so the front does not keep a variant for a quality lead that is noise."""
    xs = np.asarray(x, dtype=float) * (1 if x_better == "lower" else -1)
    ys = np.asarray(y, dtype=float) * (1 if y_better == "lower" else -1)
    valid = np.isfinite(xs) & np.isfinite(ys)
    same = np.zeros((len(xs), len(xs)), dtype=bool) if tied is None else np.asarray(tied, dtype=bool)
    mask = np.zeros(len(xs), dtype=bool)
    for i in np.flatnonzero(valid):
        no_worse, better = (ys <= ys[i]) | same[:, i], (ys < ys[i]) & ~same[:, i]
        beaten = valid & (xs <= xs[i]) & no_worse & ((xs < xs[i]) | better)
        mask[i] = not beaten.any()
    return mask


def quality_ties(run_ids: list[str], chunk_kld: dict[str, list[float]]) -> np.ndarray:
    """tied[i, j] where both runs logged per-chunk KLD on the same chunks and their paired 95 %
    interval holds 0 (tasks.core.intervals); False where there is no interval (too few chunks)."""
    tied = np.zeros((len(run_ids), len(run_ids)), dtype=bool)
    for i, a in enumerate(run_ids):
        for j in range(i + 1, len(run_ids)):
            interval = paired_interval(chunk_kld.get(a), chunk_kld.get(run_ids[j]))
            tied[i, j] = tied[j, i] = interval is not None and interval.verdict() == "indistinguishable"
    return tied


def with_pareto_flags(frame: pd.DataFrame, quality: str, chunk_kld: dict[str, list[float]] | None = None
                      ) -> pd.DataFrame:
    """Adds pareto_size and pareto_decode: on the front of its (hardware, tier, evaluation text) panel;
    quality measured on two texts is two panels, never one front. With `chunk_kld` (run id -> per-chunk
    KLD) a kld_mean lead within the noise of a paired interval is no lead (pareto_mask's `tied`)."""
    out = frame.copy()
    out["pareto_size"], out["pareto_decode"] = False, False
    panels = ["hardware_id", "tier", *(["eval_text"] if "eval_text" in out else [])]
    for _, panel in out.groupby(panels, dropna=False):
        y = panel[quality]
        better = QUALITY_METRICS[quality]
        tied = quality_ties(list(panel["run_id"]), chunk_kld) if chunk_kld and quality == "kld_mean" else None
        out.loc[panel.index, "pareto_size"] = pareto_mask(panel["size_bytes"], y, y_better=better, tied=tied)
        out.loc[panel.index, "pareto_decode"] = pareto_mask(panel["decode_tps"], y, x_better="higher",
                                                            y_better=better, tied=tied)
    return out


def chunk_kld_by_run(raw: pd.DataFrame) -> dict[str, list[float]]:
    """run id -> its per-chunk KLD, from a frame read with tasks.review.search.with_chunk_series."""
    if raw.empty or "chunks.kld" not in raw:
        return {}
    return {run: list(series) for run, series in zip(raw["run_id"], raw["chunks.kld"]) if isinstance(series, list)}


def write_tables(frame: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """comparison.csv and comparison.md, each written to a temporary name, then renamed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "comparison.csv", "md": out_dir / "comparison.md"}
    for kind, path in paths.items():
        tmp = path.with_name(path.name + ".tmp")
        if kind == "csv":
            frame.to_csv(tmp, index=False)
        else:
            tmp.write_text(markdown_table(frame) + "\n")
        tmp.replace(path)
    return paths


def markdown_table(frame: pd.DataFrame) -> str:
    """The table people read: ids and times left to the CSV."""
    shown = frame.drop(columns=[c for c in ("run_id", "parent_run_id", "start_time", "experiment") if c in frame])
    for column in ("size_bytes", "peak_rss_bytes"):  # whole bytes, not 9.173e+07
        shown[column] = shown[column].round().astype("Int64")
    return shown.to_markdown(index=False, floatfmt=".4g")
