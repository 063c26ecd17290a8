"""Model card (README.md) of a packaged variant: measured figures and provenance."""

from __future__ import annotations

import yaml

from tasks.core.reference import is_requantization
from tasks.evaluate.domains import domain_figures_table

# Metrics shown in the card, with their unit and the companion spread key when one exists.
CARD_METRICS = (
    ("size_bytes", "bytes", None), ("bits_per_weight", "bits", None),
    ("perplexity", "", "perplexity_se"), ("kld_mean", "nats", "kld_mean_se"), ("kld_p99", "nats", None),
    ("top1_agreement", "fraction", "top1_agreement_se"), ("delta_p_rms", "probability", None),
    ("prefill_tps", "tok/s", "prefill_tps_sd"), ("decode_tps", "tok/s", "decode_tps_sd"),
    ("ttft_ms", "ms", "ttft_ms_sd"),
    ("prefill_tps_rel", "x f16, timed side by side", "prefill_tps_rel_se"),
    ("decode_tps_rel", "x f16, timed side by side", "decode_tps_rel_se"), ("load_s", "s", None), ("peak_rss_bytes", "bytes", None),
    ("decode_efficiency", "fraction", None), ("decode_read_bytes_per_s", "bytes/s", None), ("perplexity_ratio", "x base", None),
    ("task_score", "fraction", None), ("golden_agreement", "fraction", None),
    ("humaneval_pass_at_1", "fraction of the problems run (greedy)", None),
    ("humaneval_lost", "problems the f16 passes, this fails", None),
    ("humaneval_gained", "problems the f16 fails, this passes", None),
)


def _format(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def metrics_table(metrics: dict[str, float]) -> str:
    rows = ["| metric | value | ± | unit |", "|---|---|---|---|"]
    for name, unit, spread in CARD_METRICS:
        if name in metrics:
            plus = _format(metrics[spread]) if spread and spread in metrics else ""
            rows.append(f"| `{name}` | {_format(metrics[name])} | {plus} | {unit} |")
    return "\n".join(rows)


def hub_metadata(*, base_model: str | None, license: str | None, tags: list[str]) -> str:
    """The Hub's model-card metadata block (YAML front matter): with `base_model_relation: quantized`
    a published variant is listed under its base model's quantizations."""
    data = {"base_model": base_model, "base_model_relation": "quantized" if base_model else None,
            "license": (license or "").lower() or None, "tags": tags, "library_name": None}
    return "---\n" + yaml.safe_dump({k: v for k, v in data.items() if v}, sort_keys=False) + "---\n\n"


def model_card(*, title: str, variant: dict, provenance: dict, metrics: dict, usage: str,
               metadata: str = "") -> str:
    """Markdown card: what this is, how it measured, where it came from, how to run it."""
    prov = "\n".join(f"- **{key}**: `{value}`" for key, value in provenance.items())
    var = "\n".join(f"- **{key}**: `{value}`" for key, value in variant.items())
    by_domain = domain_figures_table(metrics)
    by_domain = (f"### By domain\n\n{by_domain}\n\nEach evaluation text scored on its own chunks, in the same "
                 "reference pass; a chat domain's conversations go through the model's chat template, as "
                 "served.\n\n") if by_domain else ""
    return (
        f"{metadata}# {title}\n\n{var}\n\n## Measured\n\n{metrics_table(metrics)}\n\n"
        f"{reference_sentence(provenance.get('reference'))} Perplexity and divergence follow llama-perplexity's "
        "protocol (second half of each chunk scored, same tokens as the reference); speed follows llama-bench "
        "(warm-up, then repeated runs, mean ± sd).\n\n"
        f"{by_domain}"
        f"## Provenance\n\n{prov}\n\n## Use\n\n{usage}\n"
    )


def reference_sentence(reference: str | None) -> str:
    """The card's first word on the figures: what they are against (a quantized source's own dequantization)."""
    if not reference:
        return "Quality figures are against the f16 base."
    if is_requantization(reference):
        return (f"**Reference: {reference}.** The source is itself quantized: KLD and top-1 agreement measure "
                "the loss of re-quantizing it, not the loss from the original weights.")
    return f"Quality figures are against the reference: {reference}."
