"""Figures 6-9 of the CLOP paper (Sec. 5): linear-probe accuracy vs batch size and vs learning rate, ours.

:func:`select_figure6` / :func:`select_figure7` pick the rows of the paper's main setting, :func:`figure_data`
aggregates them per (dataset, variant, x) over seeds, and :func:`plot_sweep` draws a figure from that data (or
from the CSV it was written to): one panel per dataset, one line per variant, mean with min-max bars.
Selection rules: lambda in {0, 1} (CLOP off / the paper's lambda = 1), CLOP rows with cosine similarity,
augmentation simclr ("All experiments are performed using the SimCLR framework", Sec. 5); Figure 6 at
base_lr 0.3 (lr = 0.3 x batch / 256), Figure 7 at batch 1024.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from clop.util.io import atomic_path
from training import paper_results as PR
from training.sweeps.results import (
    DATASET_NAMES,
    METRIC_NAMES,
    aggregate,
    close_to,
    dataset_order,
    format_setting,
    variant_order,
    varying,
)

__all__ = ["select_figure6", "select_figure7", "figure_data", "plot_sweep"]


def _main_setting(df: pd.DataFrame, augmentation: str) -> tuple[pd.Series, str]:
    mask = (close_to(df["clop_lambda"], 0.0) | close_to(df["clop_lambda"], PR.CLOP_LAMBDA))
    mask &= (~df["clop"]) | (df["similarity"] == "cosine")
    mask &= df["augmentation"] == augmentation
    rule = (f"λ = 0 (no CLOP) or λ = {PR.CLOP_LAMBDA:g}; CLOP with cosine similarity (orthonormal or ETF "
            f"prototypes); augmentation {augmentation}")
    return mask, rule


def select_figure6(df: pd.DataFrame, *, base_lr: float = PR.BASE_LR, augmentation: str = "simclr") -> tuple[pd.DataFrame, str]:
    """Rows of the batch-size sweep (Fig. 6): base_lr == ``base_lr`` (lr = base_lr x batch/256) and the
    paper's main setting; returns (rows, the rule in words)."""
    mask, rule = _main_setting(df, augmentation)
    mask &= close_to(df["base_lr"], base_lr)
    return df[mask].copy(), f"base_lr = {base_lr:g} (lr = {base_lr:g} x batch/256, every batch size); {rule}"


def select_figure7(df: pd.DataFrame, *, batch_size: int = PR.LR_SWEEP_BATCH, augmentation: str = "simclr") -> tuple[pd.DataFrame, str]:
    """Rows of the learning-rate sweep (Fig. 7): batch_size == ``batch_size`` and the paper's main setting;
    returns (rows, the rule in words)."""
    mask, rule = _main_setting(df, augmentation)
    mask &= df["batch_size"] == batch_size
    return df[mask].copy(), f"batch size {batch_size} (every learning rate); {rule}"


def figure_data(rows: pd.DataFrame, x: str) -> pd.DataFrame:
    """Points of a sweep figure: one row per (dataset, variant, x) with the mean / min / max over seeds.

    ``x`` is "batch_size" (Fig. 6) or "lr" (Fig. 7). Settings of :data:`CONTEXT_COLUMNS` that differ inside
    one point are appended to the variant's name ("SupCon 100% [epochs=100]"). Columns: dataset, variant,
    loss, label_fraction, clop_lambda, prototypes, batch_size, base_lr, lr, n_runs, seeds, top1_mean,
    top1_min, top1_max, top5_mean, top5_min, top5_max.
    """
    if x not in ("batch_size", "lr"):
        raise ValueError(f"x must be 'batch_size' or 'lr'; got {x!r}")
    rows = rows.copy()
    extra = varying(rows, ["dataset", "variant", "batch_size", "base_lr"])
    if extra:
        rows["variant"] = rows["variant"] + " [" + rows[extra].apply(
            lambda r: ", ".join(f"{c}={format_setting(r[c])}" for c in extra), axis=1) + "]"
    order = variant_order(rows)
    keys = ["dataset", "variant", "loss", "label_fraction", "clop_lambda", "prototypes", "batch_size", "base_lr"]
    out = aggregate(rows, keys)
    out.insert(out.columns.get_loc("base_lr") + 1, "lr", out["base_lr"] * out["batch_size"] / 256.0)
    ds_rank = {d: i for i, d in enumerate(dataset_order(out["dataset"]))}
    v_rank = {v: i for i, v in enumerate(order)}
    out = out.sort_values(["dataset", "variant", x], key=lambda s: s.map(ds_rank) if s.name == "dataset"
                          else (s.map(v_rank) if s.name == "variant" else s))
    cols = ["dataset", "variant", "loss", "label_fraction", "clop_lambda", "prototypes", "batch_size", "base_lr",
            "lr", "n_runs", "seeds", "top1_mean", "top1_min", "top1_max", "top5_mean", "top5_min", "top5_max"]
    return out[cols].reset_index(drop=True)


def _styles(frame: pd.DataFrame) -> dict[str, dict]:
    """Matplotlib style per variant: colour per (loss, label fraction, extra settings); dashed line and open
    marker without CLOP, solid with orthonormal CLOP, dotted with square markers for ETF CLOP."""
    fixed = {("infonce", 0.1): "tab:blue", ("supcon", 1.0): "tab:red"}  # the paper's two baselines
    palette = ["tab:green", "tab:purple", "tab:brown", "tab:olive", "tab:cyan", "tab:pink", "tab:gray",
               "tab:orange"]
    families: dict[tuple, str] = {}
    out = {}
    for r in frame.drop_duplicates("variant").itertuples():
        suffix = r.variant.split(" [", 1)[1] if " [" in r.variant else ""
        fam = (r.loss, round(float(r.label_fraction), 6), suffix)
        if fam not in families:
            base = fixed.get(fam[:2]) if not suffix else None
            taken = set(families.values())
            free = [c for c in palette if c not in taken] or palette
            families[fam] = base if base and base not in taken else free[0]
        color = families[fam]
        if not r.clop_lambda > 0:
            out[r.variant] = dict(color=color, linestyle="--", marker="o", markerfacecolor="white")
        elif r.prototypes == "etf":
            out[r.variant] = dict(color=color, linestyle=":", marker="s", markerfacecolor=color)
        else:
            out[r.variant] = dict(color=color, linestyle="-", marker="o", markerfacecolor=color)
    return out


def _layout(n: int, labels_all: list[str], title: str, footnote: str, plt) -> tuple:
    """A figure of ``n`` panels sized for its wrapped title, footnote and legend: (fig, height in inches,
    legend columns, legend and footnote heights in inches, the wrapped title and footnote)."""
    width = max(5.0 * n + 0.8, 8.0)
    ncol = max(1, min(len(labels_all), 2 if n == 1 else (3 if n == 2 else 5)))
    legend_rows = math.ceil(len(labels_all) / ncol)
    # wrap the title (12 pt) and footnote (8.5 pt) to the figure width: about 0.55 em per character
    title = "\n".join(textwrap.fill(t, int(width * 72 / (12 * 0.53))) for t in title.split("\n")) if title else ""
    footnote = textwrap.fill(footnote, int(width * 72 / (8.5 * 0.55))) if footnote else ""
    title_lines = title.count("\n") + 1 if title else 0
    foot_lines = footnote.count("\n") + 1 if footnote else 0
    # layout in inches: title, axes, tick labels + x label, footnote, legend
    top_in = 0.45 + 0.22 * title_lines
    axes_in, xlab_in, foot_in, leg_in = 3.9, 0.85, 0.16 * foot_lines + 0.1, 0.28 * legend_rows + 0.15
    height = top_in + axes_in + xlab_in + foot_in + leg_in
    fig, _ = plt.subplots(1, n, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.2 / width, top=1 - top_in / height,
                        bottom=(xlab_in + foot_in + leg_in) / height, wspace=0.25)
    return fig, height, ncol, leg_in, foot_in, title, footnote


def _draw_panel(ax, sub: pd.DataFrame, ds: str, order: list[str], styles: dict[str, dict], x: str, metric: str,
                handles: dict[str, object]) -> None:
    """One dataset's panel: a line per variant (mean, min-max bars), log axis, ticks at the x values."""
    from matplotlib.ticker import FixedLocator, NullLocator

    for v in order:
        pts = sub[sub["variant"] == v].sort_values(x)
        if pts.empty:
            continue
        mean = 100 * pts[f"{metric}_mean"].to_numpy()
        lo = mean - 100 * pts[f"{metric}_min"].to_numpy()
        hi = 100 * pts[f"{metric}_max"].to_numpy() - mean
        yerr = np.vstack([lo, hi]) if (pts["n_runs"] > 1).any() else None
        h = ax.errorbar(pts[x].to_numpy(), mean, yerr=yerr, capsize=3, linewidth=1.6, markersize=5,
                        elinewidth=1, label=v, **styles[v])
        handles.setdefault(v, h)
    xs = sorted(set(sub[x]))
    if x == "batch_size":
        ax.set_xscale("log", base=2)
        ax.set_xlabel("global batch size (images, log$_2$ scale)")
    else:
        ax.set_xscale("log")
        ax.set_xlabel("learning rate = base_lr × batch / 256 (log scale)")
    ax.xaxis.set_major_locator(FixedLocator(xs))
    ax.xaxis.set_minor_locator(NullLocator())
    crowded = len(xs) > 1 and min(b / a for a, b in zip(xs, xs[1:])) < 1.5  # e.g. lr 1 and 1.2
    ax.set_xticklabels([format_setting(float(v)) for v in xs], rotation=90 if crowded else (45 if len(xs) > 7 else 0))
    if len(xs) == 1:
        ax.set_xlim(xs[0] / 2, xs[0] * 2)
    ax.set_ylabel(f"{METRIC_NAMES[metric]} linear-probe accuracy (%)")
    ax.set_title(DATASET_NAMES.get(ds, ds))
    ax.grid(True, alpha=0.3)


def plot_sweep(data: pd.DataFrame | str | Path, png_path: str | Path, *, x: str, metric: str = "top1",
               title: str = "", footnote: str = "", atomic: bool = True) -> Path:
    """Draw a sweep figure from its data (the frame of :func:`figure_data`, or the CSV it was written to):
    one panel per dataset, one line per variant, mean over seeds with min-max bars; ``x`` "batch_size"
    (log2 axis) or "lr" (log10 axis); ``metric`` "top1" or "top5" (plotted in percent). Written as PNG
    to ``png_path``, through a temporary file and an atomic rename unless ``atomic`` is False (``png_path``
    is itself a staged temporary of :func:`clop.util.io.staged_outputs`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if metric not in METRIC_NAMES:
        raise ValueError(f"metric must be one of {sorted(METRIC_NAMES)}; got {metric!r}")
    frame = data if isinstance(data, pd.DataFrame) else pd.read_csv(data)
    datasets = dataset_order(frame["dataset"])
    order = list(dict.fromkeys(frame["variant"]))  # the CSV is sorted in legend order
    styles = _styles(frame)
    n = len(datasets)
    labels_all = list(order)
    fig, height, ncol, leg_in, foot_in, title, footnote = _layout(n, labels_all, title, footnote, plt)
    handles: dict[str, object] = {}
    for ax, ds in zip(fig.axes, datasets):  # the panels, left to right
        _draw_panel(ax, frame[frame["dataset"] == ds], ds, order, styles, x, metric, handles)
    labels = [v for v in labels_all if v in handles]
    fig.legend([handles[v] for v in labels], labels, loc="lower center", ncol=ncol, fontsize=9.5,
               frameon=False, bbox_to_anchor=(0.5, 0.02 / height))
    if footnote:
        fig.text(0.5, (leg_in + 0.05) / height, footnote, ha="center", va="bottom", fontsize=8.5, color="0.3")
    fig.suptitle(title, fontsize=12, y=1 - 0.08 / height, va="top")
    png_path = Path(png_path)
    try:
        if atomic:
            with atomic_path(png_path) as tmp:
                fig.savefig(tmp, dpi=120, format="png")
        else:
            fig.savefig(png_path, dpi=120, format="png")
    finally:
        plt.close(fig)
    return png_path
