"""The figures of the practice study: each drawn from the frame written as its CSV.

Paper: "Preventing collapse in contrastive learning with orthonormal prototypes" (CLOP), arXiv 2403.18699.

Inputs are the frames of :mod:`training.practice.report` (``figure6_data`` ... and the ``eta_eff.csv`` rows
with ``in_figure``): one row per (optimiser,) variant and x value with the mean, the 95 % t-interval and each
seed's value (``values`` / ``seeds``, ';'-separated; ``diverged_seeds``), ``kind`` "variant" or "reference"
(the untrained encoder, drawn as a horizontal line). Line styles follow training.sweeps.figures: colour per loss
(InfoNCE blue, SupCon red), dashed open markers without CLOP, solid with CLOP, dotted squares with ETF prototypes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from training.eval.evaluate import COLLAPSE_MEAN_NORM
from training.eval.geometry import MIN_R2_STEP, critical_lr
from training.practice.claims import BASELINES, OPT_NAMES, SUM_SMALL, SV_SMALL, judged_batches
from training.practice.grid import STUDY
from training.practice.table import K, variant_name
from training.sweeps.grid import COMPARISON, VARIANTS

FIGURE_METRICS = (("mu_norm", "μ = ‖mean unit embedding‖"), ("sum_norm", "‖Σ c_i‖ of the k unit class means"),
                  ("sv_min_ratio", "s_k / s_1 of the k class means"), ("abs_cos_mean", "mean |cos| of the class pairs"))
"""The rows of collapse.png: end-of-run keys of :mod:`training.practice.endgeom` and their axis labels."""
_GUIDES = {
    "mu_norm": ((COLLAPSE_MEAN_NORM, "complete collapse (0.999)"),),
    "sum_norm": ((K, "k: collapsed"), (K ** 0.5, "√k: orthonormal"), (SUM_SMALL, "about zero (claim)")),
    "sv_min_ratio": ((1.0, "1: orthonormal"), (SV_SMALL, "rank k − 1 below (claim)")),
    "abs_cos_mean": ((1.0, "1: collapsed"), (1 / (K - 1), "1/(k−1): simplex ETF")),
}
_LIMITS = {"mu_norm": (0, 1.05), "sum_norm": (0, K + 0.5), "sv_min_ratio": (0, 1.05), "abs_cos_mean": (0, 1.05)}



def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _style(variant: str) -> dict:
    """Colour per loss (InfoNCE blue, SupCon red, as training.sweeps.figures); dashed open markers without CLOP, solid with
    CLOP, dotted squares with ETF prototypes."""
    v = VARIANTS[variant]
    color = {"infonce": "tab:blue", "supcon": "tab:red"}.get(v.loss, "tab:gray")
    if v.clop_lambda == 0:
        return dict(color=color, linestyle="--", marker="o", markerfacecolor="white")
    if v.prototypes == "etf":
        return dict(color=color, linestyle=":", marker="s", markerfacecolor=color)
    return dict(color=color, linestyle="-", marker="o", markerfacecolor=color)


def _lines(ax, data: pd.DataFrame, x: str, jitter: float = 0.0) -> None:
    """One line per variant (mean, 95 % interval bars), each seed a small dot; reference rows as horizontal lines."""
    variants = [v for v in COMPARISON if v in set(data.loc[data["kind"] == "variant", "variant"])]
    for i, v in enumerate(variants):
        pts = data[(data["kind"] == "variant") & (data["variant"] == v)].sort_values(x)
        st = _style(v)
        xs = pts[x].to_numpy(dtype=float) * (1 + jitter * (i - (len(variants) - 1) / 2))
        mean = pts["mean"].to_numpy(dtype=float)
        err = np.vstack([mean - pts["low"].to_numpy(dtype=float), pts["high"].to_numpy(dtype=float) - mean])
        ax.errorbar(xs, mean, yerr=np.where(np.isfinite(err), err, 0.0), capsize=2.5, linewidth=1.4, markersize=4.5,
                    elinewidth=0.9, label=pts["label"].iloc[0], **st)
        for xv, seeds, vals, div in zip(xs, pts["seeds"], pts["values"], pts["diverged_seeds"]):
            gone = set(_split(div))
            for seed, y in zip(_split(seeds), _split(vals)):
                if y:
                    ax.plot([xv], [float(y)], linestyle="none", marker="x" if seed in gone else ".",
                            markersize=5 if seed in gone else 3.5, color=st["color"], alpha=0.8 if seed in gone else 0.55)
    refs = data[data["kind"] == "reference"]
    for _, r in refs.iterrows():
        ls = "-." if "10%" in r["label"] else (0, (1, 1))
        ax.axhline(r["mean"], color="0.35", linestyle=ls, linewidth=1.1, label=f"{r['label']} (lr → 0)")


def _split(text: object) -> list[str]:
    return [] if pd.isna(text) or str(text) == "" else str(text).split(";")


def _accuracy_ylim(ax, data: pd.DataFrame) -> None:
    """Top-1 axes: the range of the seeds, means and references (bars may run past it), within [0, 100]."""
    ys = [float(y) for vals in data["values"] for y in _split(vals) if y] + list(data["mean"].dropna())
    if ys:
        ax.set_ylim(max(0.0, min(ys) - 2.0), min(100.5, max(ys) + 1.5))


def _finish(fig, png: Path, handles_from, title: str, ncol: int = 3) -> None:
    handles, labels = handles_from.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8.5, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.savefig(png, dpi=110, format="png")
    _plt().close(fig)


def plot_figure6(data: pd.DataFrame, png: Path, epochs: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.2, 6.0))
    fig.subplots_adjust(left=0.1, right=0.97, top=0.86, bottom=0.3)
    _lines(ax, data, "batch_size", jitter=0.012)
    _accuracy_ylim(ax, data)
    xs = sorted(set(data.loc[data["kind"] == "variant", "batch_size"].astype(int)))
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs)
    judged = set(judged_batches(xs))  # below the paper's range: drawn with the figure seeds only, not judged
    ax.set_xticklabels([f"{b}\nlr {0.3 * b / 256:.4g}" + ("" if b in judged else "\n(not judged)") for b in xs])
    ax.minorticks_off()
    ax.set_xlabel("batch size (images per step, log$_2$ scale); lr = 0.3 × batch/256 below it")
    ax.set_ylabel("top-1 linear-probe accuracy on the 359 test digits (%)")
    ax.grid(True, alpha=0.3)
    _finish(fig, png, ax, f"Figure 6 in miniature: top-1 vs batch size, each loss with and without CLOP\n"
            f"digits 8×8, small CNN, {epochs} epochs, LARS; mean over seeds with 95 % t-interval,\n"
            "dots = seeds (× = diverged, at chance); grey: untrained encoder")


def plot_figure7(data: pd.DataFrame, png: Path, epochs: str) -> None:
    plt = _plt()
    opts = [o for o in STUDY.optimizers if o in set(data["optimizer"])]
    fig, axes = plt.subplots(1, len(opts), figsize=(max(6.2 * len(opts), 9.5), 5.6), sharey=True, squeeze=False)
    fig.subplots_adjust(left=0.07, right=0.98, top=0.84, bottom=0.24, wspace=0.06)
    for ax, opt in zip(axes[0], opts):
        d = data[(data["optimizer"] == opt) | (data["kind"] == "reference")]
        _lines(ax, d, "lr", jitter=0.02)
        _accuracy_ylim(ax, data)
        xs = sorted(set(d.loc[d["kind"] == "variant", "lr"].astype(float)))
        ax.set_xscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{x:g}" for x in xs])
        ax.minorticks_off()
        ax.set_xlabel("learning rate used = base_lr × batch/256 (batch 256; log scale)")
        ax.set_title(f"{OPT_NAMES[opt]}")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("top-1 linear-probe accuracy on the 359 test digits (%)")
    _finish(fig, png, axes[0][0], f"Figure 7 in miniature: top-1 vs learning rate, LARS and SGD, each loss with and "
            f"without CLOP\ndigits 8×8, small CNN, batch 256, {epochs} epochs; mean over seeds with 95 % t-interval, "
            "dots = seeds (× = diverged, at chance); grey: untrained encoder", ncol=4)


def plot_collapse(data: pd.DataFrame, png: Path, epochs: str) -> None:
    plt = _plt()
    opts = [o for o in STUDY.optimizers if o in set(data["optimizer"])]
    fig, axes = plt.subplots(len(FIGURE_METRICS), len(opts), figsize=(max(6.2 * len(opts), 9.5), 13.0), sharex=True,
                             squeeze=False)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.9, bottom=0.14, hspace=0.12, wspace=0.12)
    for r, (key, name) in enumerate(FIGURE_METRICS):
        for c, opt in enumerate(opts):
            ax = axes[r][c]
            d = data[(data["metric"] == key) & ((data["optimizer"] == opt) | (data["kind"] == "reference"))]
            _lines(ax, d, "lr", jitter=0.02)
            for y, t in _GUIDES[key]:
                ax.axhline(y, color="k", linewidth=0.7, alpha=0.7)
                ax.text(0.01, y, f" {t}", transform=ax.get_yaxis_transform(), va="bottom", fontsize=7.5)
            ax.set_ylim(*_LIMITS[key])
            ax.set_xscale("log")
            xs = sorted(set(d.loc[d["kind"] == "variant", "lr"].astype(float)))
            ax.set_xticks(xs)
            ax.set_xticklabels([f"{x:g}" for x in xs])
            ax.minorticks_off()
            ax.grid(True, alpha=0.3)
            if r == 0:
                ax.set_title(OPT_NAMES[opt])
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
            if r == len(FIGURE_METRICS) - 1:
                ax.set_xlabel("learning rate used (batch 256; log scale)")
    _finish(fig, png, axes[0][0], "Collapse vs learning rate: held-out test embeddings z after the last epoch, with "
            f"and without CLOP\ndigits, small CNN, batch 256, {epochs} epochs; k = 10 classes; mean with 95 % "
            "t-interval, dots = seeds; grey: untrained encoder", ncol=4)


def plot_eta(eta: pd.DataFrame, png: Path, epochs: str) -> None:
    plt = _plt()
    crit = critical_lr(K)
    opts = [o for o in STUDY.optimizers if o in set(eta["optimizer"])]
    width = max(6.2 * len(opts), 9.5)
    fig, axes = plt.subplots(2, len(opts), figsize=(width, 8.4), sharex=True, sharey="row", squeeze=False)
    fig.subplots_adjust(left=1.1 / width, right=0.98, top=0.88, bottom=0.16, hspace=0.1, wspace=0.15)
    lrs = sorted(set(eta["lr"].astype(float)))
    colors = dict(zip(lrs, plt.get_cmap("viridis")(np.linspace(0.0, 0.9, max(1, len(lrs))))))
    for c, opt in enumerate(opts):
        for v in BASELINES:
            for lr in lrs:
                d = eta[(eta["optimizer"] == opt) & (eta["variant"] == v) & np.isclose(eta["lr"], lr)].sort_values("epoch")
                if d.empty:
                    continue
                ls = "-" if v == "infonce10" else "--"
                lab = f"lr {lr:g}, {variant_name(v)}"
                for r, key in enumerate(("eta_step", "r2_step")):
                    ax = axes[r][c]
                    ax.plot(d["epoch"], d[key], linestyle=ls, color=colors[lr], linewidth=1.2, label=lab if r == 0 else None)
                    ok, bad = d[d["trusted"]], d[~d["trusted"]]
                    ax.plot(ok["epoch"], ok[key], linestyle="none", marker="o", markersize=4.5, color=colors[lr])
                    ax.plot(bad["epoch"], bad[key], linestyle="none", marker="o", markersize=4.5, markerfacecolor="white",
                            color=colors[lr])
        top, bottom = axes[0][c], axes[1][c]
        top.axhline(crit, color="k", linewidth=1.0)
        top.text(0.01, crit, f" η_crit = 2(k−1)/(k−2) = {crit:g}", transform=top.get_yaxis_transform(), va="bottom",
                 fontsize=8)
        top.set_yscale("symlog", linthresh=0.01)
        vals = eta["eta_step"].astype(float)
        vals = vals[np.isfinite(vals)]
        top.set_ylim(min(0.0, 2 * float(vals.min())) if len(vals) else 0.0,
                     2 * max(crit, float(vals.max()) if len(vals) else crit))
        top.set_title(OPT_NAMES[opt])
        top.grid(True, alpha=0.3)
        bottom.axhline(MIN_R2_STEP, color="k", linewidth=0.8, linestyle=":")
        bottom.set_ylim(-1.05, 1.05)  # r2_step can be far below -1 (the step predicts worse than no change)
        bottom.set_xlabel("epoch (each point: the interval ending there, 1 fit per epoch)")
        bottom.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("η per optimiser step (eta_step; symlog)")
    axes[1][0].set_ylabel(f"R² of the fitted Appendix D steps, r2_step\n(used ≥ {MIN_R2_STEP:g}; axis cut at −1)")
    _finish(fig, png, axes[0][0], "Effective Appendix D step of the held-out class means during training vs the "
            f"critical rate (k = 10)\nbaselines without CLOP, batch 256, {epochs} epochs, one seed; filled: a fit that "
            f"explains ≥ {MIN_R2_STEP:g} of the motion (pooled), open: not", ncol=4)
