"""Quality vs size and quality vs decode speed, Pareto fronts marked (matplotlib, Agg, PNG).

One panel per (hardware id, model tier); one colour per format; one marker per model; each point
labelled with its quant. Pure: a table in, matplotlib Figures out (saving and logging are the caller's).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in flows; set before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from tasks.review.compare import QUALITY_METRICS, pareto_mask  # noqa: E402

# Speed and size on the x axis; which way is better decides the front.
AXES = {"size": ("size_bytes", "lower", "size (MB)", 1e-6), "decode": ("decode_tps", "higher", "decode tok/s", 1.0)}
# Divergences span decades (Q8_0 ~1e-3, Q4_0 ~1e-1): a log axis keeps every point readable.
LOG_QUALITY = {"kld_mean", "kld_p99", "delta_p_rms"}
MARKERS = "osD^vP*X<>"


def comparison_figures(frame: pd.DataFrame, quality: str = "kld_mean") -> dict[str, Figure]:
    """{'quality_vs_size': Figure, 'quality_vs_decode': Figure} for the rows of `frame`."""
    return {f"quality_vs_{axis}": quality_figure(frame, axis=axis, quality=quality) for axis in AXES}


def quality_figure(frame: pd.DataFrame, *, axis: str, quality: str) -> Figure:
    x_col, x_better, x_label, x_scale = AXES[axis]
    # A panel per evaluation text too, when there are several: their quality figures are not comparable.
    keys = ["hardware_id", "tier", *(["eval_text"] if "eval_text" in frame and frame["eval_text"].nunique() > 1 else [])]
    panels = sorted(frame.groupby(keys, dropna=False).groups, key=str) or [("-",) * len(keys)]
    cols = min(len(panels), 2)
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7.5 * cols, 5.5 * rows), squeeze=False)
    colours = _colours(frame["format"].dropna().unique())
    markers = {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(sorted(frame["model"].dropna().unique()))}
    for ax, key in zip(axes.flat, panels):
        selected = np.logical_and.reduce([frame[k].astype(str) == str(v) for k, v in zip(keys, key)])
        rows_of = frame[selected]
        _panel(ax, rows_of, x=(x_col, x_better, x_scale), quality=quality, colours=colours, markers=markers)
        ax.set_title(f"hardware {key[0]} · tier {key[1]}" + (f" · text {key[2]}" if len(key) > 2 else ""), fontsize=10)
        ax.set_xlabel(x_label)
        ax.set_ylabel(f"{quality} ({QUALITY_METRICS[quality]} is better)")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    # Quality is measured against each model's own reference: across models it says what a quant loses,
    # and where that reference is a quantized source's dequantization the footnote says so.
    fig.suptitle(f"{quality} vs {x_label} (each model vs its own reference): Pareto front dashed, front points ringed",
                 fontsize=11)
    notes = reference_notes(frame)
    fig.tight_layout(rect=(0, 0.03 * len(notes) / max(rows, 1), 1, 1))
    for i, note in enumerate(notes):
        fig.text(0.01, 0.005 + 0.02 * i / max(rows, 1), note, fontsize=8, ha="left", va="bottom")
    return fig


def reference_notes(frame: pd.DataFrame) -> list[str]:
    """One line per model: 'reference of <model>: f16 of the dequantized Q4_K_M source'."""
    if "reference" not in frame:
        return []
    pairs = frame[["model", "reference"]].dropna().drop_duplicates().sort_values("model")
    return [f"reference of {model}: {ref}" for model, ref in pairs.itertuples(index=False)]


def _panel(ax, rows: pd.DataFrame, *, x: tuple, quality: str, colours: dict, markers: dict) -> None:
    x_col, x_better, x_scale = x
    log = quality in LOG_QUALITY
    # A log axis cannot show 0: the f16 reference scores 0 against itself, so it is left out there.
    data = rows[rows[x_col].notna() & rows[quality].notna() & (~log | (rows[quality] > 0))]
    if data.empty:
        ax.text(0.5, 0.5, f"no runs with {x_col} and {quality}", ha="center", transform=ax.transAxes)
        return
    for (fmt, model), group in data.groupby(["format", "model"]):
        ax.scatter(group[x_col] * x_scale, group[quality], color=colours[fmt], marker=markers[model], s=46,
                   label=f"{model} · {fmt}", zorder=3)
        for _, row in group.iterrows():
            ax.annotate(str(row["quant"]), (row[x_col] * x_scale, row[quality]), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
    front = data[pareto_mask(data[x_col], data[quality], x_better=x_better, y_better=QUALITY_METRICS[quality])]
    front = front.sort_values(x_col)
    ax.plot(front[x_col] * x_scale, front[quality], "--", color="black", linewidth=1, zorder=2, label="Pareto front")
    ax.scatter(front[x_col] * x_scale, front[quality], s=160, facecolors="none", edgecolors="black", zorder=4)
    if log:
        ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")


def _colours(formats) -> dict[str, str]:
    palette = plt.get_cmap("tab10").colors
    return {fmt: palette[i % len(palette)] for i, fmt in enumerate(sorted(formats))}


def save_figures(figures: dict[str, Figure], out_dir: Path) -> dict[str, Path]:
    """Each figure as <name>.png (written to a temporary name, then renamed); figures are closed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, fig in figures.items():
        path = out_dir / f"{name}.png"
        tmp = path.with_name(f".{name}.tmp.png")
        fig.savefig(tmp, dpi=110)
        plt.close(fig)
        tmp.replace(path)
        paths[name] = path
    return paths
