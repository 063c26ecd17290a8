"""MLflow Model Registry: each passing variant a model version, an alias per device profile.

One registered model per model and format (`<model_name>-<format>`, e.g. SmolLM2-135M-Instruct-gguf);
each passing variant becomes a version whose source is its run, with its figures and provenance as
version tags. The same artefact with the same stored measurement is registered once (a nightly run
that reused everything adds no versions). For each device profile the alias `<device>` on each
registered model points at the version `slmforge recommend` would pick among that format's
variants of this run, and moves only when that version is at least as good as the one the alias
holds, within the measured noise (`should_move`).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from tasks.core.intervals import paired_interval

VERSION_TAGS = ("kld_mean", "kld_mean_se", "perplexity", "perplexity_se", "top1_agreement", "decode_tps",
                "decode_tps_sd", "decode_tps_rel", "decode_tps_rel_se", "prefill_tps", "size_bytes",
                "bits_per_weight", "peak_rss_bytes")


class RegistryConfig(BaseModel):
    """Registering passing variants and moving the per-device aliases."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = Field(True, description="Register passing variants and move device aliases after packaging.")
    devices: list[str] | None = Field(None, description="Device profiles that get an alias (None: every shipped one).")
    sigmas: float = Field(2.0, gt=0, description="Noise allowance of the alias rule, in combined se/sd.")


def should_move(old: dict[str, str] | None, new: dict[str, str], *, sigmas: float = 2.0,
                chunk_kld: tuple[list[float] | None, list[float] | None] = (None, None)) -> tuple[bool, str]:
    """Move an alias from version tags `old` to `new`?

    Yes when the alias is unset; when the two were measured on different texts (their figures are not
    compared: the alias follows the newest text); or when new is at least as good within noise: where
    both runs logged their per-chunk KLD (`chunk_kld`: old's, new's), the paired 95 % interval over
    chunks of new - old does not lie wholly above 0 (tasks.core.intervals); else
    kld_mean_new <= kld_mean_old + sigmas x sqrt(se_old^2 + se_new^2). And, when both decode speeds
    were timed on the same hardware id beside the same f16 anchor, decode_tps_rel_new >=
    decode_tps_rel_old - sigmas x sqrt(se_old^2 + se_new^2) (the figure per anchor and the noise between
    its rounds: host drift cancels there, not in a burst's sd). Other speeds are not compared: hosts of
    one kind differ by 20 %, and one host drifts by as much within an hour.
    """
    if old is None:
        return True, "alias was unset"
    if old.get("eval_text") != new.get("eval_text"):  # figures of two texts are not compared: the newest text holds
        return True, (f"measured on another text ({new.get('eval_text') or 'unrecorded'} vs "
                      f"{old.get('eval_text') or 'unrecorded'}): not compared; the alias follows this run's text")
    kld_old, kld_new = _f(old, "kld_mean"), _f(new, "kld_mean")
    if kld_new is None or kld_old is None:
        return False, "kld_mean missing on one side: kept"
    if (interval := paired_interval(*chunk_kld)) is not None:
        if interval.verdict() == "higher":
            return False, f"kld_mean worse beyond noise ({interval.describe()} over paired chunks): kept"
    else:
        allowance = sigmas * math.hypot(_f(old, "kld_mean_se") or 0.0, _f(new, "kld_mean_se") or 0.0)
        if kld_new > kld_old + allowance:
            return False, f"kld_mean {kld_new:.4g} > {kld_old:.4g} + noise {allowance:.2g}: kept"
    rel_old, rel_new = _f(old, "decode_tps_rel"), _f(new, "decode_tps_rel")
    if rel_old and rel_new and old.get("hardware_id") == new.get("hardware_id") \
            and old.get("speed_anchor") is not None and old.get("speed_anchor") == new.get("speed_anchor"):
        slack = sigmas * math.hypot(_f(old, "decode_tps_rel_se") or 0.0, _f(new, "decode_tps_rel_se") or 0.0)
        if rel_new < rel_old - slack:
            return False, f"decode_tps per f16 anchor {rel_new:.4g} < {rel_old:.4g} - noise {slack:.2g}: kept"
    judged = f"; paired over chunks: {interval.describe()}" if interval is not None else ""
    return True, f"at least as good within noise (kld_mean {kld_new:.4g} vs {kld_old:.4g}{judged})"


def registered_name(model_name: str, fmt: str) -> str:
    return f"{model_name}-{fmt}"


def version_tags(row: dict) -> dict[str, str]:
    """Version tags from a child run's search row: figures, provenance, where and how measured."""
    tags = {name: str(row[f"metrics.{name}"]) for name in VERSION_TAGS
            if isinstance(row.get(f"metrics.{name}"), float) and not math.isnan(row[f"metrics.{name}"])}
    for key in ("quant", "format", "source", "source_revision", "reference", "eval_text", "speed_anchor",
                "version.llama-cpp-python",
                "version.onnxruntime-genai"):
        if isinstance(row.get(f"params.{key}"), str):
            tags[key] = row[f"params.{key}"]
    for key in ("hardware_id", "artifact_key", "artifact_path", "measurement_key", "reused", "measured_in_run",
                "measured_at", "gate"):
        if isinstance(row.get(f"tags.slmforge.{key}"), str):
            tags[key] = row[f"tags.slmforge.{key}"]
    tags["run_id"] = row["run_id"]
    return tags


def _f(tags: dict, name: str) -> float | None:
    try:
        return float(tags[name])
    except (KeyError, TypeError, ValueError):
        return None
