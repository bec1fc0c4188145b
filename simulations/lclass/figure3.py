"""Figure 3 of arXiv 2403.18699 (Sec. 3.1): how tight is the Theorem 1 learning-rate bound? The tables,
the printed summary and the figure; ``simulations/lr_bound.py`` is the script that runs them.

Gradient descent on L_class (Eq. (3)) for k unit class embeddings in R^m with the Appendix D step
(:mod:`simulations.lclass.model`; ``eta`` is the paper's learning rate, 2(k-1) x an autograd one).

* :func:`spectra_table`: singular values of X (k = 30, m = 100 by default) over training at eta = 2.0 and
  eta = 2.1 (:data:`SPECTRA_ETAS`) from the same start (paper: 2.0 trains, 2.1 collapses completely);
* :func:`max_lr_table`: per k and trial, the largest eta that avoided complete collapse
  (``||mu|| >= 1 - 1e-6``), found by :func:`simulations.lclass.search.max_stable_lr` in
  [:data:`SEARCH_LO`, :data:`SEARCH_HI`], beside the bound printed in the paper
  (:func:`theory.theorem1.paper_closed_form`), the bound the Appendix D argument gives when its algebra is
  done correctly (:func:`theory.theorem1.lr_bound`, eps = 0), the exact critical learning rate of the
  linearised step (:func:`theory.theorem1.critical_lr`) and the finite-horizon estimate
  (:func:`simulations.lclass.model.finite_horizon_threshold`);
* :func:`draw`: the figure. Top (left and middle in the paper): the two spectra. Bottom left (right in the
  paper): the measured max eta (min over trials) against the three theoretical values. Bottom right: the
  same minus ``critical_lr``, with the finite-horizon estimate where it is finite and inside the searched
  range. :func:`plot` redraws it from the CSV files.

Search cap. Where even eta = :data:`SEARCH_HI` does not collapse within the horizon (a very short
``--steps``), there is no measurement: the summary and the figure say "no collapse below the cap eta = 6"
and the CSV leaves ``max_lr`` empty, instead of reporting the cap.

Horizon. Just above the threshold the first collapse comes after T ~ K / (s delta) steps (delta the
distance from the threshold, K ~ ln(1/||mu_0||) + ln(1/sqrt(2 tol)), s = (k-2)^2/(k(k-1))), so a search
with a horizon of N steps measures a threshold about K/(s N) above the infinite-horizon one; doubling N
halves the excess. The titles and the summary state the m, steps, trials and resolution actually used.

CSV columns. ``figure3_max_lr.csv``: k, m, trial, max_lr, theorem1_bound, critical_lr, paper_closed_form,
min_collapse_lr, finite_horizon_estimate, steps, resolution, search_lo, search_hi (``max_lr`` is empty
where no collapse was found below ``search_hi``, then ``min_collapse_lr`` = inf, or where ``search_lo``
already collapsed; ``finite_horizon_estimate`` is empty where it is infinite or above ``search_hi``).
``figure3_spectra.csv``: k, m, eta, step, index, singular_value.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from clop.util.io import staged_outputs
from simulations.lclass.model import (
    COLLAPSE_TOL,
    finite_horizon_threshold,
    initial_embeddings,
)
from simulations.lclass.search import max_stable_lr
from simulations.lclass.simulate import simulate
from theory.theorem1 import critical_lr, lr_bound, paper_closed_form

__all__ = [
    "SPECTRA_K", "SPECTRA_ETAS", "SUMMARY_KS", "SEARCH_LO", "SEARCH_HI", "OUTPUTS", "SPECTRUM_FLOOR",
    "spectra_table", "max_lr_table", "per_k", "summary", "draw", "plot",
]

SPECTRA_K = 30
"""k of the spectra panels (the paper's; the script uses min(SPECTRA_K, m))."""
SPECTRA_ETAS = (2.0, 2.1)  # Figure 3, left and middle (Section 3.1 text)
SUMMARY_KS = (3, 4, 5, 10, 20, 30, 50, 100)
SEARCH_LO, SEARCH_HI = 1.0, 6.0  # the eta range searched (max_stable_lr's lo and hi)
OUTPUTS = ("figure3_spectra.csv", "figure3_max_lr.csv", "figure3_claims.csv", "figure3.png", "figure3.pdf")
"""The files the script writes into --out, replaced together."""


def spectra_table(
    *, k: int = SPECTRA_K, m: int = 100, etas: Sequence[float] = SPECTRA_ETAS, steps: int = 1000,
    record_every: int = 20, seed: int = 0, device: str | torch.device | None = None,
) -> pd.DataFrame:
    """Singular values of X over training, one start for all etas: columns k, m, eta, step, index, singular_value."""
    res = simulate(k, m, list(etas), trials=1, steps=steps, seed=seed, device=device,
                   record=("singular_values", "mean_norm"), record_every=record_every)
    sv = res.singular_values[:, 0].cpu().numpy()  # (R, E, d)
    rsteps = res.record_steps.numpy()
    r, e, i = np.meshgrid(np.arange(sv.shape[0]), np.arange(sv.shape[1]), np.arange(sv.shape[2]), indexing="ij")
    df = pd.DataFrame(dict(k=k, m=m, eta=np.asarray(etas, dtype=np.float64)[e.ravel()], step=rsteps[r.ravel()],
                           index=i.ravel() + 1, singular_value=sv.ravel()))
    df.attrs["collapse_step"] = res.collapse_step[0].tolist()
    return df


def max_lr_table(
    ks: Sequence[int], *, m: int = 100, trials: int = 5, steps: int = 2000, resolution: float = 1e-3,
    seed: int = 0, device: str | torch.device | None = None, progress: bool = True,
    lo: float = SEARCH_LO, hi: float = SEARCH_HI,
) -> pd.DataFrame:
    """One row per (k, trial): the measured max lr and the three theoretical values.

    ``max_lr`` is NaN where there is no measurement: no collapse up to ``hi`` (``min_collapse_lr`` = inf)
    or a collapse already at ``lo``. ``finite_horizon_estimate`` is NaN where the estimate is infinite or
    above ``hi`` (outside the searched range, where the growth-factor model says nothing usable).
    """
    res = max_stable_lr(ks, m, trials=trials, steps=steps, resolution=resolution, lo=lo, hi=hi, seed=seed,
                        device=device, progress=progress)
    rows = []
    for i, k in enumerate(res.ks.tolist()):
        m0 = torch.linalg.vector_norm(initial_embeddings(k, m, trials, seed=seed).mean(dim=1), dim=-1)
        for t in range(trials):
            capped = math.isinf(res.min_collapse_lr[i, t])
            est = finite_horizon_threshold(k, steps, m0=float(m0[t]), tol=COLLAPSE_TOL)
            rows.append(dict(
                k=k, m=m, trial=t, max_lr=math.nan if capped else float(res.max_lr[i, t]),
                theorem1_bound=lr_bound(k, 0.0), critical_lr=critical_lr(k),
                paper_closed_form=paper_closed_form(k), min_collapse_lr=float(res.min_collapse_lr[i, t]),
                finite_horizon_estimate=est if est <= hi else math.nan,
                steps=steps, resolution=resolution, search_lo=lo, search_hi=hi,
            ))
    df = pd.DataFrame(rows)
    df.attrs["non_monotone"] = int(res.non_monotone.sum())
    return df


def per_k(ml: pd.DataFrame) -> pd.DataFrame:
    """Per k: ``status`` ('measured', 'capped': no collapse below the cap in any trial, 'floor': a trial
    collapsed already at the lowest eta searched), the min / max over trials of the measured max lr
    (NaN unless measured), the theoretical values and the smallest meaningful horizon estimate."""
    rows = {}
    for k, d in ml.groupby("k"):
        capped = np.isinf(d["min_collapse_lr"].to_numpy())
        floor = ~capped & d["max_lr"].isna().to_numpy()
        measured = d["max_lr"][~capped & ~floor]
        status = "floor" if floor.any() else "capped" if capped.all() else "measured"
        ok = status == "measured"
        rows[k] = dict(status=status, measured=measured.min() if ok else math.nan,
                       lo=measured.min() if ok else math.nan, hi=measured.max() if ok else math.nan,
                       paper=d["paper_closed_form"].iloc[0], bound=d["theorem1_bound"].iloc[0],
                       critical=d["critical_lr"].iloc[0], horizon=d["finite_horizon_estimate"].min())
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "k"
    return out


def _setting(ml: pd.DataFrame, col: str, default: float = math.nan) -> float:
    return float(ml[col].iloc[0]) if col in ml else default


def _ks_text(ks) -> str:
    return ", ".join(str(int(k)) for k in ks)


def summary(df: pd.DataFrame, ks: Sequence[int] = SUMMARY_KS) -> str:
    """Text table: measured min over trials against the bounds, for a few k (all k when none of ``ks``
    was run), headed by the settings of the run and followed by what could not be measured."""
    g = per_k(df)
    sel = [k for k in ks if k in g.index] or list(g.index)
    trials, steps, m = int(df["trial"].nunique()), int(df["steps"].iloc[0]), int(df["m"].iloc[0])
    lo, hi, res = _setting(df, "search_lo", SEARCH_LO), _setting(df, "search_hi", SEARCH_HI), _setting(df, "resolution")
    lines = [f"max lr avoiding complete collapse (||mu|| >= 1 - {COLLAPSE_TOL:g}) within {steps} steps, m = {m}, "
             f"min over {trials} trial(s), resolution {res:g}, searched η in [{lo:g}, {hi:g}]",
             f"{'k':>4} {f'measured(min/{trials})':>16} {'paper Thm1':>11} {'Thm1 corrected':>15} {'critical_lr':>12}"
             f" {'meas-crit':>10} {'horizon est.':>13}"]
    for k in sel:
        r = g.loc[k]
        ok = r.status == "measured"
        meas = f"{r.measured:>16.4f}" if ok else f"{'—':>16}"
        diff = f"{r.measured - r.critical:>+10.4f}" if ok else f"{'—':>10}"
        hor = f"{r.horizon:>13.4f}" if np.isfinite(r.horizon) else f"{'—':>13}"
        lines.append(f"{k:>4} {meas} {r.paper:>11.4f} {r.bound:>15.4f} {r.critical:>12.4f} {diff} {hor}")
    capped = g.index[g.status == "capped"]
    if len(capped):
        lines.append(f"no collapse below the cap η = {hi:g} within {steps} steps in any trial for k = {_ks_text(capped)}: "
                     f"no maximum is reported there (a longer --steps lets collapse show at lower η)")
    floor = g.index[g.status == "floor"]
    if len(floor):
        lines.append(f"collapse already at η = {lo:g}, the lowest η searched, for k = {_ks_text(floor)}: "
                     "no maximum is reported there")
    no_h = [k for k in sel if not np.isfinite(g.loc[k, "horizon"])]
    if no_h:
        lines.append(f"horizon est. —: the growth-factor model predicts no collapse below η = {hi:g} within {steps} "
                     f"steps for k = {_ks_text(no_h)}")
    return "\n".join(lines)


SPECTRUM_FLOOR = 1e-17
"""Singular values below this are drawn at it (the spectra panels use a log scale)."""


def _draw_spectra(fig, axes, sp: pd.DataFrame, ml: pd.DataFrame) -> None:
    """Top panels: the singular values of X over training, one panel per eta, coloured by step."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    steps_all = sp["step"].unique()
    norm = Normalize(vmin=steps_all.min(), vmax=steps_all.max())
    cmap = plt.get_cmap("coolwarm")
    floor = SPECTRUM_FLOOR
    sk = int(sp["k"].iloc[0]) if "k" in sp else int(sp["index"].max())
    sm_ = int(sp["m"].iloc[0]) if "m" in sp else int(ml["m"].iloc[0])
    for ax, eta in zip(axes, sorted(sp["eta"].unique())):
        d = sp[sp["eta"] == eta]
        for step, g in d.groupby("step"):
            ax.plot(g["index"], np.maximum(g["singular_value"], floor), color=cmap(norm(step)), lw=0.9)
        final = d[d["step"] == d["step"].max()].sort_values("index")["singular_value"].to_numpy()
        ax.set_yscale("log")
        ax.set_ylim(floor / 3, 20)
        ax.set_xlabel("singular value index i")
        ax.set_ylabel("singular value $\\sigma_i$ of X (< 1e-17 drawn at 1e-17)")
        last = int(d["step"].max())
        verdict = (f"complete collapse ($\\sigma_2/\\sigma_1$ < 1e-8 at step {last})" if final[1] < 1e-8 * final[0] else
                   f"rank {int((final > 1e-10 * final[0]).sum())} ($\\sigma_i$ > 1e-10 $\\sigma_1$) at step {last}")
        ax.set_title(f"k = {sk}, m = {sm_}, $\\eta$ = {eta}: {verdict}")
        ax.grid(alpha=0.3, which="both")
        sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
        fig.colorbar(sm, ax=ax, label="gradient step")


def _draw_max_lr(ax, mt: pd.DataFrame, ml: pd.DataFrame) -> None:
    """Bottom left: the measured max lr per k against the printed, corrected and critical values."""
    ks = mt.index.to_numpy()
    meas = mt[mt.status == "measured"]
    capped = mt[mt.status == "capped"]
    steps, trials, m = int(ml["steps"].iloc[0]), int(ml["trial"].nunique()), int(ml["m"].iloc[0])
    hi, res = _setting(ml, "search_hi", SEARCH_HI), _setting(ml, "resolution")
    res_text = f", resolution {res:g}" if np.isfinite(res) else ""
    ax.plot(meas.index, meas["measured"], "o", ms=3.5, color="k",
            label=f"measured: max $\\eta$ without collapse (min of {trials} trials)")
    if len(capped):
        ax.plot(capped.index, np.full(len(capped), hi), "^", ms=5, color="0.5",
                label=f"no collapse below the cap $\\eta$ = {hi:g} (no measurement)")
    dot = "_" if len(ks) < 2 else None  # a single k: a line of one point needs a marker to show
    ax.plot(ks, mt["paper"], "-", marker=dot, ms=12, color="tab:red", lw=1.6, label="Theorem 1 as printed (paper closed form)")
    ax.plot(ks, mt["bound"], "-", marker=dot, ms=12, color="tab:blue", lw=3.0, alpha=0.5,
            label="Theorem 1 derived correctly ($\\varepsilon$ = 0)")
    ax.plot(ks, mt["critical"], "--", marker=dot, ms=12, color="tab:green", lw=1.4, label="critical lr of the linearised step")
    if len(capped):
        ax.set_ylim(top=hi * 1.25)  # room above the cap markers for the legend
    ax.set_xscale("log")
    ax.set_xlabel("number of class embeddings k (log scale)")
    ax.set_ylabel("learning rate $\\eta$ (Appendix D step)")
    ax.set_title(f"Max learning rate avoiding complete collapse\n(m = {m}, {steps} steps{res_text}, "
                 f"{trials} trials) vs Theorem 1")
    ax.legend(fontsize=8.5)
    ax.grid(alpha=0.3)


def _draw_difference(ax, mt: pd.DataFrame, ml: pd.DataFrame) -> None:
    """Bottom right: everything minus the critical learning rate, with the finite-horizon estimate."""
    ks = mt.index.to_numpy()
    meas = mt[mt.status == "measured"]
    steps, trials = int(ml["steps"].iloc[0]), int(ml["trial"].nunique())
    dot = "_" if len(ks) < 2 else None
    ax.axhline(0, color="tab:green", ls="--", lw=1.4, label="critical lr (= corrected Theorem 1 bound)")
    ax.fill_between(meas.index, meas["lo"] - meas["critical"], meas["hi"] - meas["critical"], color="0.75",
                    label=f"measured, range over {trials} trials")
    ax.plot(meas.index, meas["measured"] - meas["critical"], "o", ms=3.5, color="k", label="measured, min over trials")
    hor = mt[np.isfinite(mt["horizon"])]
    ax.plot(hor.index, hor["horizon"] - hor["critical"], "-", color="tab:purple", lw=1.2,
            label=f"finite-horizon estimate ({steps} steps, growth factors)")
    ax.plot(ks, mt["paper"] - mt["critical"], "-", marker=dot, ms=12, color="tab:red", lw=1.6, label="Theorem 1 as printed")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xscale("log")
    ax.set_xlabel("number of class embeddings k (log scale)")
    ax.set_ylabel("$\\eta$ − critical lr  (symlog)")
    ax.set_title("Difference to the critical learning rate 2(k−1)/(k−2)")
    ax.legend(fontsize=8.5, loc="lower right")
    ax.grid(alpha=0.3, which="both")


def draw(sp: pd.DataFrame, ml: pd.DataFrame, png: Path, pdf: Path | None = None) -> None:
    """Draw Figure 3 from the spectra and max-lr tables into ``png`` (and ``pdf``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes2 = plt.subplots(2, 2, figsize=(15, 11))
    axes = axes2.ravel()
    _draw_spectra(fig, axes[:2], sp, ml)
    mt = per_k(ml)
    _draw_max_lr(axes[2], mt, ml)
    _draw_difference(axes[3], mt, ml)
    ks = mt.index.to_numpy()
    for ax in axes[2:]:
        ticks = [t for t in (3, 5, 10, 20, 30, 50, 100) if ks.min() <= t <= ks.max()] or [int(ks.min())]
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks])
    fig.tight_layout()
    try:
        fig.savefig(png, dpi=130, format="png")
        if pdf is not None:
            fig.savefig(pdf, format="pdf", metadata={"CreationDate": None})  # no date: the same figure, the same bytes
    finally:
        plt.close(fig)


def plot(out: Path) -> Path:
    """Redraw figure3.png / figure3.pdf from the CSV files in ``out`` (both replaced together); returns the PNG path."""
    out = Path(out)
    sp = pd.read_csv(out / "figure3_spectra.csv")
    ml = pd.read_csv(out / "figure3_max_lr.csv")
    with staged_outputs(out) as stage:
        draw(sp, ml, stage("figure3.png"), stage("figure3.pdf"))
    return out / "figure3.png"
