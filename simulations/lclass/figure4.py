"""Figure 4 of arXiv 2403.18699 (Sec. 3.2, Lemma 2): minimising L_class gives rank k - 1 without a simplex
ETF. The table, its statistics and the figure; ``simulations/dimensional_collapse.py`` is the script.

The paper: "minimizing total cosine similarity via gradient descent leads to convergence within a subspace
of rank k - 1 (left), while failing to preserve equal distances between the vectors (right)". Class
embeddings start Gaussian, normalised to the unit sphere (full rank k in R^m, m >= k), and follow the
Appendix D step of :mod:`simulations.lclass.model`.

Learning rate. The paper does not state the one used for Figure 4. The script's default eta = 0.2 is far
below the collapse threshold 2(k-1)/(k-2) (> 2 for every k; Figure 3), a stable run, and small enough that
the last singular value visibly "gradually drops to zero" (near the end the mean shrinks by about
|1 - eta k/(k-1+eta)| ~ 0.8 per step). Larger stable rates reach the same kind of end state in fewer steps
(eta = 1 removes the mean to first order in a single step).

Why rank k - 1: the global minima of L_class = ||sum_i x_i||^2 - k are exactly the zero-mean
configurations, L_class = -k, and sum_i x_i = 0 is a linear dependency among the k rows, so every
minimiser has rank <= k - 1. Gradient descent removes the mean and otherwise keeps the random geometry of
the start, so it stops at a generic zero-mean configuration of rank exactly k - 1 whose pairwise cosines are
spread around -1/(k-1) (their average is exactly -1/(k-1) when the mean is zero), not all equal to it as
in a simplex ETF.

:func:`figure4_table` gives the long table written to ``figure4.csv`` (k, m, eta, trial, step, quantity,
index, value with quantity in {singular_value, pairwise_cosine, l_class}: singular values over training
for every trial, pairwise cosines and L_class at the end); :func:`final_stats` the statistics per k;
:func:`draw` the figure, which states the final rank (singular values above :data:`RANK_RTOL` times the
largest), the spread of the pairwise cosines (std, min, max) and L_class + k; :func:`plot` redraws it
from the CSV.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from clop.util.io import staged_outputs
from simulations.lclass.simulate import simulate

__all__ = ["RANK_RTOL", "figure4_table", "final_stats", "draw", "plot"]

RANK_RTOL = 1e-10
"""A singular value counts towards the rank when it exceeds RANK_RTOL x the largest one."""


def figure4_table(
    ks: Sequence[int] = (10, 30), *, m: int = 100, eta: float = 0.2, steps: int = 300, trials: int = 10,
    record_every: int = 5, seed: int = 0, device: str | torch.device | None = None,
) -> pd.DataFrame:
    """Simulate every k and return the long-format table written to figure4.csv."""
    frames = []
    for k in ks:
        res = simulate(k, m, [eta], trials=trials, steps=steps, seed=seed, device=device,
                       record=("singular_values", "l_class"), record_every=record_every)
        sv = res.singular_values[:, :, 0].cpu().numpy()  # (R, T, d)
        rsteps = res.record_steps.numpy()
        r_idx, t_idx, i_idx = np.meshgrid(np.arange(len(rsteps)), np.arange(trials), np.arange(sv.shape[-1]), indexing="ij")
        frames.append(pd.DataFrame(dict(k=k, trial=t_idx.ravel(), step=rsteps[r_idx.ravel()], quantity="singular_value",
                                        index=i_idx.ravel() + 1, value=sv.ravel())))
        x = res.embeddings()[:, 0]  # (T, k, m) unit rows
        cos = (x @ x.transpose(-1, -2)).cpu().numpy()
        iu = np.triu_indices(k, 1)
        for t in range(trials):
            frames.append(pd.DataFrame(dict(k=k, trial=t, step=rsteps[-1], quantity="pairwise_cosine",
                                            index=np.arange(len(iu[0])), value=cos[t][iu])))
        lc = res.l_class[:, :, 0].cpu().numpy()  # (R, T)
        frames.append(pd.DataFrame(dict(k=k, trial=np.arange(trials), step=rsteps[-1], quantity="l_class", index=0,
                                        value=lc[-1])))
    df = pd.concat(frames, ignore_index=True)
    df.insert(1, "m", m)
    df.insert(2, "eta", float(eta))
    return df


def final_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Per k: final ranks over trials, cosine spread, L_class + k, ETF value."""
    rows = []
    for k, d in df.groupby("k"):
        sv = d[d.quantity == "singular_value"]
        last = sv[sv.step == sv.step.max()]
        ranks = [int((g.value > RANK_RTOL * g.value.max()).sum()) for _, g in last.groupby("trial")]
        ratio = [float(g.sort_values("index").value.iloc[-1] / g.value.max()) for _, g in last.groupby("trial")]
        cos = d[d.quantity == "pairwise_cosine"].value
        lc = d[d.quantity == "l_class"].value
        per_trial_std = d[d.quantity == "pairwise_cosine"].groupby("trial").value.std(ddof=0)
        rows.append(dict(k=k, trials=len(ranks), rank_min=min(ranks), rank_max=max(ranks),
                         max_last_sv_ratio=max(ratio), etf_cosine=-1.0 / (k - 1), cos_mean=cos.mean(),
                         cos_std=cos.std(ddof=0), cos_min=cos.min(), cos_max=cos.max(),
                         min_trial_cos_std=per_trial_std.min(), max_abs_lclass_plus_k=float(np.abs(lc + k).max())))
    return pd.DataFrame(rows).set_index("k")


def draw(df: pd.DataFrame, png: Path, eta: float | None = None, m: int | None = None) -> None:
    """Draw Figure 4 from the table of :func:`figure4_table` into ``png``. ``eta`` and ``m`` default to the table's
    columns of those names (tables written before those columns existed need them passed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    eta = float(df["eta"].iloc[0]) if eta is None else eta
    m = int(df["m"].iloc[0]) if m is None else m
    stats = final_stats(df)
    ks = sorted(df.k.unique())
    fig, axes = plt.subplots(len(ks), 2, figsize=(14, 4.8 * len(ks)), squeeze=False)
    cmap = plt.get_cmap("coolwarm")
    floor = 1e-17
    for row, k in enumerate(ks):
        d = df[df.k == k]
        st = stats.loc[k]
        r_lo, r_hi, n_tr = int(st.rank_min), int(st.rank_max), int(st.trials)
        sv = d[(d.quantity == "singular_value") & (d.trial == 0)]
        norm = Normalize(vmin=sv.step.min(), vmax=sv.step.max())
        ax = axes[row, 0]
        for step, g in sv.groupby("step"):
            ax.plot(g["index"], np.maximum(g.value, floor), color=cmap(norm(step)), lw=0.9)
        etf = np.sqrt(k / (k - 1))
        ax.axhline(etf, color="k", ls=":", lw=1.2, label=f"simplex ETF: k−1 values = $\\sqrt{{k/(k-1)}}$ = {etf:.3f}, last 0")
        ax.set_yscale("log")
        ax.set_ylim(floor / 3, 30)
        ax.set_xlabel("singular value index i")
        ax.set_ylabel("singular value $\\sigma_i$ of X (< 1e-17 drawn at 1e-17)")
        ax.set_title(f"k = {k}, m = {m}, $\\eta$ = {eta}: spectra over training (trial 0)\n"
                     f"final rank (σ_i > {RANK_RTOL:g}·σ_1) = {r_lo}"
                     + ("" if r_lo == r_hi else f"..{r_hi}") + f" in all {n_tr} trials")
        ax.legend(fontsize=8.5, loc="lower left")
        ax.grid(alpha=0.3, which="both")
        fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="gradient step")
        ax = axes[row, 1]
        cos = d[d.quantity == "pairwise_cosine"].value
        lo, hi = float(cos.min()), float(cos.max())
        if hi - lo < 1e-6:  # all pairs alike (e.g. complete collapse at a huge eta): a visible bar around them
            lo, hi = lo - 0.05, hi + 0.05
        ax.hist(cos, bins=60, range=(lo, hi), color="tab:blue", alpha=0.75, label=f"final pairwise cosines, {n_tr} trials")
        ax.axvline(-1.0 / (k - 1), color="tab:red", lw=2, label=f"simplex ETF: all equal −1/(k−1) = {-1 / (k - 1):.3f}")
        ax.set_xlabel("cosine similarity $x_i^\\top x_j$ (i < j) at the end")
        ax.set_ylabel("number of pairs")
        ax.set_title(f"k = {k}: not an ETF — cosines std {st.cos_std:.3f}, min {st.cos_min:.3f}, max {st.cos_max:.3f}\n"
                     f"(mean {st.cos_mean:.4f}); final max |L_class + k| = {st.max_abs_lclass_plus_k:.1e}")
        ax.legend(fontsize=8.5)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        fig.savefig(png, dpi=130, format="png")
    finally:
        plt.close(fig)


def plot(out: Path, eta: float | None = None, m: int | None = None) -> Path:
    """Redraw figure4.png from figure4.csv in ``out`` (atomically); returns the PNG path."""
    out = Path(out)
    df = pd.read_csv(out / "figure4.csv")
    with staged_outputs(out) as stage:
        draw(df, stage("figure4.png"), eta, m)
    return out / "figure4.png"
