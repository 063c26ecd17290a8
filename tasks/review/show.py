"""The printed answer of `slmforge recommend`: the pick, the rule, why better-ranked ones lost, every candidate."""

from __future__ import annotations

from rich.table import Table

from tasks.review.fit import mib
from tasks.review.recommend import TIE_SIGMAS, Recommendation


def print_recommendation(rec: Recommendation, console) -> None:
    d = rec.device
    if rec.tier is not None:
        console.print(f"tier {rec.tier}", style="bold", markup=False)
    bandwidth = f", bandwidth {d.memory_bandwidth / 1e9:g} GB/s" if d.memory_bandwidth else ""
    console.print(f"device {d.name}: budget {mib(d.memory_budget)} (margin {d.margin:.0%} -> {mib(d.usable_bytes)} "
                  f"usable), context {d.context_length}, KV cache {d.kv_cache_type}, swa_full {d.swa_full}, "
                  f"{d.threads} threads{bandwidth}", markup=False)
    where = "measured on this device" if rec.measured_on_device else \
        "never measured on this device: speeds predicted from decode efficiency x bandwidth"
    console.print(f"figures: {where}", markup=False)
    for reference in sorted({c.reference for c in rec.candidates if c.reference}):
        # A quantized source's own dequantization scores its re-quantization near 0: say so beside the ranking.
        console.print(f"kld_mean against: {reference}", markup=False)
    console.print(f"rule: lowest kld_mean among passing variants that fit; within {TIE_SIGMAS:g} x combined "
                  "kld_mean_se (or a paired 95 % interval over chunks that holds 0, where the runs logged their chunks) "
                  "counts as a tie, won by the faster decode (per f16 anchor where both were timed beside one), "
                  "then the smaller file", markup=False)
    if rec.pick is None:
        console.print("recommended: none - no passing variant fits this device", style="red", markup=False)
    else:
        p = rec.pick
        speed = "no speed figure" if p.decode_tps is None else f"decode {p.decode_tps:.1f} tok/s ({p.speed_kind})"
        console.print(f"recommended: {p.name} (run {p.run_id}): kld_mean {p.kld_mean:.4g}, {speed}, "
                      f"{p.fit.explain()}", style="green", markup=False)
    for note in rec.notes:
        console.print(f"  not chosen  {note}", markup=False)
    console.print(_table(rec))


def _table(rec: Recommendation) -> Table:
    table = Table(title=f"candidates for {rec.device.name} (best quality first)")
    for column in ("variant", "kld_mean", "need", "decode tok/s", "status"):
        table.add_column(column, justify="right" if column in ("kld_mean", "need", "decode tok/s") else "left")
    for c in rec.candidates:
        kld = "-" if c.kld_mean is None else f"{c.kld_mean:.4g} ± {c.kld_mean_se:.2g}"
        kld = "0 (reference)" if c.kld_mean == 0 and c.kld_mean_se == 0 else kld
        need = "-" if c.fit is None else mib(c.fit.need_bytes)
        speed = "-" if c.decode_tps is None else f"{c.decode_tps:.1f} {c.speed_kind}"
        status = "recommended" if c is rec.pick else ("eligible" if c.excluded is None else c.excluded)
        table.add_row(c.name, kld, need, speed, status)
    return table
