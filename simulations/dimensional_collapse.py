"""Figure 4 of the CLOP paper: minimising L_class gives rank k - 1 without a simplex ETF.

Paper: ../shared/papers/001_a0916c72eb7a88d5.txt, Section 3.2 (Figure 4, Lemma 2): "minimizing total cosine
similarity via gradient descent leads to convergence within a subspace of rank k - 1 (left), while failing
to preserve equal distances between the vectors (right)". Class embeddings start Gaussian, normalised to the
unit sphere (full rank k in R^m, m >= k), and follow the Appendix D step of :mod:`simulations.lclass`.

Learning rate. The paper does not state the one used for Figure 4. The default ``--eta 0.2`` is far
below the collapse threshold 2(k-1)/(k-2) (> 2 for every k; Figure 3), a stable run, and small enough that
the last singular value visibly "gradually drops to zero" (near the end the mean shrinks by about
|1 - eta k/(k-1+eta)| ~ 0.8 per step). Larger stable rates (eta = 1.0, 2.0) reach the same kind of end
state — rank k - 1, L_class = -k, spread cosines — in fewer steps (eta = 1 removes the mean to first
order in a single step).

Why rank k - 1 (a reading of the result, checked numerically here): the global minima of
L_class = ||sum_i x_i||^2 - k are exactly the zero-mean configurations, L_class = -k, and sum_i x_i = 0 is
a linear dependency among the k rows, so every minimiser has rank <= k - 1. Gradient descent removes the
mean and otherwise keeps the random geometry of the start, so it stops at a generic zero-mean configuration
of rank exactly k - 1 whose pairwise cosines are spread around -1/(k-1) (their average is exactly
-1/(k-1) when the mean is zero), not all equal to it as in a simplex ETF.

Outputs: ``figure4.png`` and ``figure4.csv`` (long format: k, m, eta, trial, step, quantity, index, value
with quantity in {singular_value, pairwise_cosine, l_class}; singular values over training for every trial,
pairwise cosines and L_class at the end). The figure is drawn from the table in memory (:func:`plot`
redraws it from the CSV) and states the final rank (singular values above ``RANK_RTOL`` times the
largest), the spread of the pairwise cosines (std, min, max) and L_class + k. Both files are written to
temporary files and renamed into place together (:func:`clop.util.io.staged_outputs`): an interrupted run
leaves the previous run's pair as it was.

Run: ``python simulations/dimensional_collapse.py [--ks 10 30] [--steps N] [--trials T] [--out DIR]``.
"""

from __future__ import annotations

if __name__ == "__main__" and __package__ in (None, ""):  # run as a file: make the repo root importable
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import argparse
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from clop.util.io import staged_outputs
from clop.util.cli import check_int, check_positive_float
from simulations._cli import add_run_args, run_script
from simulations.lclass import simulate
from simulations.memory import simulate_bytes

RANK_RTOL = 1e-10
"""A singular value counts towards the rank when it exceeds RANK_RTOL x the largest one."""


def run(
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
    """Draw Figure 4 from the table of :func:`run` into ``png``. ``eta`` and ``m`` default to the table's
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
        ax.hist(cos, bins=60, color="tab:blue", alpha=0.75, label=f"final pairwise cosines, {n_tr} trials")
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


def _memory(args: argparse.Namespace, dev: torch.device) -> tuple[int, int, str]:
    """Estimated (host, device) bytes: the largest k's simulation plus the long table of every k."""
    host = device = 0
    rows = 0
    for k in args.ks:
        h, d = simulate_bytes(k, args.m, 1, args.trials, args.steps, args.record_every, ("singular_values", "l_class"), dev)
        host, device = max(host, h), max(device, d)
        rows += args.trials * ((args.steps // args.record_every + 2) * min(k, args.m) + k * (k - 1) // 2 + 1)
    host += rows * 8 * 8 * 3  # eight columns; the per-k frames, their concatenation and the index grids
    settings = (f"--ks {min(args.ks)}..{max(args.ks)} ({len(args.ks)} values), --m {args.m}, --trials {args.trials}, "
                f"--steps {args.steps}, --record-every {args.record_every}")
    return host, device, settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Figure 4 of the CLOP paper (dimensional collapse under L_class).")
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 30], help="k values (default 10 30)")
    parser.add_argument("--m", type=int, default=100, help="embedding dimension (default 100; needs m >= k)")
    parser.add_argument("--eta", type=float, default=0.2, help="learning rate, Appendix D units (default 0.2, stable)")
    parser.add_argument("--steps", type=int, default=300, help="gradient steps (default 300: the mean is at round-off by then)")
    parser.add_argument("--trials", type=int, default=10, help="independent starts per k (default 10)")
    parser.add_argument("--record-every", type=int, default=5, help="record the spectrum every this many steps (default 5)")
    add_run_args(parser)
    args = parser.parse_args(argv)
    check_int(parser, "--m", args.m, 3)
    if any(k < 3 or k > args.m for k in args.ks):
        parser.error(f"--ks must lie in [3, m={args.m}]; got {args.ks}")
    check_positive_float(parser, "--eta", args.eta)
    check_int(parser, "--steps", args.steps, 1)
    check_int(parser, "--trials", args.trials, 1)
    check_int(parser, "--record-every", args.record_every, 1)
    return run_script(parser, args, _run, memory=_memory)


def _run(args: argparse.Namespace, dev: torch.device, out: Path) -> int:
    start = time.perf_counter()
    df = run(args.ks, m=args.m, eta=args.eta, steps=args.steps, trials=args.trials, record_every=args.record_every,
             seed=args.seed, device=dev)
    with staged_outputs(out) as stage:  # the CSV and the figure drawn from it replace the old pair together
        df.to_csv(stage("figure4.csv"), index=False)
        draw(df, stage("figure4.png"))
    png = out / "figure4.png"
    stats = final_stats(df)
    print(f"Figure 4: eta={args.eta}, m={args.m}, {args.steps} steps, {args.trials} trials per k")
    print(stats[["rank_min", "rank_max", "max_last_sv_ratio", "etf_cosine", "cos_mean", "cos_std", "cos_min",
                 "cos_max", "max_abs_lclass_plus_k"]].to_string(float_format=lambda v: f"{v:.4g}"))
    print(f"wrote {png}, {out / 'figure4.csv'} in {time.perf_counter() - start:.1f} s on {dev}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
