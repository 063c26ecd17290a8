"""A variant = one format x quant of the model, and the record the pipeline keeps for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tasks.evaluate.domains import MAIN_DOMAIN, SUMMARY_KLD
from tasks.formats.base import Built


class Variant(BaseModel):
    """One artefact to evaluate and package."""

    name: str = Field(description="e.g. smollm2-135m-instruct-gguf-q4_k_m")
    format: str = Field(description="gguf or onnx")
    quant: str = Field(description="Q4_K_M, F16, int4, ...")
    path: Path = Field(description="The GGUF file or the ONNX folder.")
    key: str = Field(description="Store key of the artefact (its content identity).")
    is_base: bool = False


class VariantOutcome(BaseModel):
    """Everything known about a variant at the end of a run."""

    variant: Variant
    metrics: dict[str, Any] = Field(default_factory=dict)
    gate: str = "not-checked"  # pass / fail / not-checked
    gate_reasons: list[str] = Field(default_factory=list)
    gate_within_noise: list[str] = Field(default_factory=list, description="Checks whose interval over chunks "
                                         "holds their limit (tasks.core.gates).")
    package_dir: Path | None = None
    package_files: list[str] = Field(default_factory=list, description="Files of the package logged to MLflow.")
    package_checks: dict[str, str] = Field(default_factory=dict, description="The package's checks and verdicts.")
    error: str | None = None
    reused: bool = False
    measurement: dict | None = Field(None, description="The stored measurement behind the figures "
                                     "(tasks.review.records.measurement_record).")
    mlflow_run_id: str | None = None
    built: Built | None = Field(None, description="The built artefact (None when its build failed).")


SUMMARY_COLUMNS = (
    "format", "quant", "size_bytes", "bits_per_weight", "perplexity", "kld_mean", "kld_p99",
    "top1_agreement", "delta_p_rms", "prefill_tps", "decode_tps", "ttft_ms", "load_s",
    "peak_rss_bytes", "decode_efficiency", "task_score", "golden_agreement", "gate",
)


def summary_rows(outcomes: list[VariantOutcome]) -> list[dict]:
    """One flat row per variant with the public metric names; missing values are None."""
    rows = []
    for outcome in outcomes:
        row = {"format": outcome.variant.format, "quant": outcome.variant.quant, "gate": outcome.gate}
        for column in SUMMARY_COLUMNS[2:-1]:
            row[column] = outcome.metrics.get(column)
        # Each domain's KLD and their summary (tasks.evaluate.domains), where the protocol has domains.
        row.update({k: v for k, v in outcome.metrics.items() if k == SUMMARY_KLD or k.endswith("/kld_mean")
                    or k == MAIN_DOMAIN})
        # HumanEval's pass@1, its interval and the flips against the f16, where the protocol ran it.
        row.update({k: v for k, v in outcome.metrics.items()
                    if k.startswith("humaneval_") and isinstance(v, (int, float))})
        if outcome.error:
            row["gate"] = "error"
        rows.append(row)
    return rows


def summary_frame(outcomes: list[VariantOutcome]):
    """The results table as a pandas DataFrame (sortable by any metric)."""
    import pandas as pd  # pandas: only where a table is built

    return pd.DataFrame(summary_rows(outcomes), columns=list(SUMMARY_COLUMNS))
