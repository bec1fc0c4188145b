"""Figure 3 of the CLOP paper: how tight is the Theorem 1 learning-rate bound?

Paper: ../shared/papers/001_a0916c72eb7a88d5.txt, Section 3.1 (Theorem 1, Figure 3 and the text after it)
and Appendix D. Gradient descent on L_class (Eq. (3)) for k unit class embeddings in R^100 with the
Appendix D step (:mod:`simulations.lclass`; ``eta`` is the paper's learning rate, 2(k-1) x an autograd one).

Panels written to ``figure3.png`` / ``figure3.pdf``:

* top (left, middle in the paper): singular values of X (k = 30, m = 100) over training at eta = 2.0 and eta = 2.1 from the
  same start (paper: 2.0 trains, 2.1 collapses completely);
* bottom left (right in the paper): per k = 3..100, the largest eta that avoided complete collapse (``||mu|| >= 1 - 1e-6``) in all
  of 5 trials, found by :func:`simulations.lclass.max_stable_lr` to a resolution of 1e-3, against the
  bound printed in the paper (:func:`theory.theorem1.paper_closed_form`), the bound that the Appendix D
  argument gives when its algebra is done correctly (:func:`theory.theorem1.lr_bound`, eps = 0) and the
  exact critical learning rate of the linearised step (:func:`theory.theorem1.critical_lr`);
* bottom right: the same three curves minus ``critical_lr``, with the finite-horizon estimate
  (:func:`simulations.lclass.finite_horizon_threshold`).

Horizon (``--steps``, default 2000). Just above the threshold the mean grows, and the collapsed state
attracts, at rates proportional to the distance delta from the threshold, so the first collapse comes
after T ~ K / (s delta) steps, K ~ ln(1/||mu_0||) + ln(1/sqrt(2 tol)) ~ 7-9, s = (k-2)^2/(k(k-1)). A
finite horizon N therefore measures a threshold about K/(s N) above the infinite-horizon one:
~0.005 for k >= 10 and ~0.02 for k = 3 at N = 2000, well inside the gaps this figure is about (the
printed bound is 0.04 below the critical value at k = 30, 1.8 below at k = 3). Doubling N halves the
excess and doubles the run time.

Data files (the figure is drawn from them): ``figure3_max_lr.csv`` (k, m, trial, max_lr,
theorem1_bound, critical_lr, paper_closed_form, min_collapse_lr, finite_horizon_estimate, steps) and
``figure3_spectra.csv`` (eta, step, index, singular_value).

Run: ``python simulations/lr_bound.py [--ks 3 4 ...] [--steps N] [--out DIR]`` or
``python -m simulations.lr_bound``.
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

from simulations._cli import add_run_args, run_script
from simulations.lclass import (
    COLLAPSE_TOL,
    finite_horizon_threshold,
    initial_embeddings,
    max_stable_lr,
    simulate,
)
from theory.theorem1 import critical_lr, lr_bound, paper_closed_form

SPECTRA_K = 30
SPECTRA_ETAS = (2.0, 2.1)  # Figure 3, left and middle (Section 3.1 text)
SUMMARY_KS = (3, 4, 5, 10, 20, 30, 50, 100)


def spectra_table(
    *, k: int = SPECTRA_K, m: int = 100, etas: Sequence[float] = SPECTRA_ETAS, steps: int = 1000,
    record_every: int = 20, seed: int = 0, device: str | torch.device | None = None,
) -> pd.DataFrame:
    """Singular values of X over training, one start for all etas: columns eta, step, index, singular_value."""
    res = simulate(k, m, list(etas), trials=1, steps=steps, seed=seed, device=device,
                   record=("singular_values", "mean_norm"), record_every=record_every)
    sv = res.singular_values[:, 0].cpu().numpy()  # (R, E, d)
    rows = []
    for r, step in enumerate(res.record_steps.tolist()):
        for j, eta in enumerate(etas):
            for i, v in enumerate(sv[r, j]):
                rows.append((float(eta), step, i + 1, float(v)))
    df = pd.DataFrame(rows, columns=["eta", "step", "index", "singular_value"])
    df.attrs["collapse_step"] = res.collapse_step[0].tolist()
    return df


def max_lr_table(
    ks: Sequence[int], *, m: int = 100, trials: int = 5, steps: int = 2000, resolution: float = 1e-3,
    seed: int = 0, device: str | torch.device | None = None, progress: bool = True,
) -> pd.DataFrame:
    """One row per (k, trial): the measured max lr and the three theoretical values."""
    res = max_stable_lr(ks, m, trials=trials, steps=steps, resolution=resolution, seed=seed,
                        device=device, progress=progress)
    rows = []
    for i, k in enumerate(res.ks.tolist()):
        m0 = torch.linalg.vector_norm(initial_embeddings(k, m, trials, seed=seed).mean(dim=1), dim=-1)
        for t in range(trials):
            rows.append(dict(
                k=k, m=m, trial=t, max_lr=float(res.max_lr[i, t]),
                theorem1_bound=lr_bound(k, 0.0), critical_lr=critical_lr(k),
                paper_closed_form=paper_closed_form(k), min_collapse_lr=float(res.min_collapse_lr[i, t]),
                finite_horizon_estimate=finite_horizon_threshold(k, steps, m0=float(m0[t]), tol=COLLAPSE_TOL),
                steps=steps,
            ))
    df = pd.DataFrame(rows)
    df.attrs["non_monotone"] = int(res.non_monotone.sum())
    return df


def summary(df: pd.DataFrame, ks: Sequence[int] = SUMMARY_KS) -> str:
    """Text table: measured min over trials against the bounds, for a few k."""
    g = df.groupby("k").agg(measured=("max_lr", "min"), paper=("paper_closed_form", "first"),
                            bound=("theorem1_bound", "first"), critical=("critical_lr", "first"),
                            horizon=("finite_horizon_estimate", "min"))
    g = g.loc[[k for k in ks if k in g.index]]
    lines = [f"{'k':>4} {'measured(min/5)':>16} {'paper Thm1':>11} {'Thm1 corrected':>15} {'critical_lr':>12}"
             f" {'meas-crit':>10} {'horizon est.':>13}"]
    for k, r in g.iterrows():
        lines.append(f"{k:>4} {r.measured:>16.4f} {r.paper:>11.4f} {r.bound:>15.4f} {r.critical:>12.4f}"
                     f" {r.measured - r.critical:>+10.4f} {r.horizon:>13.4f}")
    return "\n".join(lines)


def plot(out: Path) -> Path:
    """Draw figure3.png / figure3.pdf from the CSV files in ``out``; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    sp = pd.read_csv(out / "figure3_spectra.csv")
    ml = pd.read_csv(out / "figure3_max_lr.csv")
    fig, axes2 = plt.subplots(2, 2, figsize=(15, 11))
    axes = axes2.ravel()
    steps_all = sp["step"].unique()
    norm = Normalize(vmin=steps_all.min(), vmax=steps_all.max())
    cmap = plt.get_cmap("coolwarm")
    floor = 1e-17
    for ax, eta in zip(axes[:2], sorted(sp["eta"].unique())):
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
        ax.set_title(f"k = {SPECTRA_K}, m = 100, $\\eta$ = {eta}: {verdict}")
        ax.grid(alpha=0.3, which="both")
        sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
        fig.colorbar(sm, ax=ax, label="gradient step")
    mt = ml.groupby("k").agg(measured=("max_lr", "min"), lo=("max_lr", "min"), hi=("max_lr", "max"),
                             paper=("paper_closed_form", "first"), bound=("theorem1_bound", "first"),
                             critical=("critical_lr", "first"), horizon=("finite_horizon_estimate", "min"))
    ks = mt.index.to_numpy()
    steps = int(ml["steps"].iloc[0])
    trials = int(ml["trial"].nunique())
    ax = axes[2]
    ax.plot(ks, mt["measured"], "o", ms=3.5, color="k", label=f"measured: max $\\eta$ without collapse (min of {trials} trials)")
    ax.plot(ks, mt["paper"], "-", color="tab:red", lw=1.6, label="Theorem 1 as printed (paper closed form)")
    ax.plot(ks, mt["bound"], "-", color="tab:blue", lw=3.0, alpha=0.5, label="Theorem 1 derived correctly ($\\varepsilon$ = 0)")
    ax.plot(ks, mt["critical"], "--", color="tab:green", lw=1.4, label="critical lr of the linearised step")
    ax.set_xscale("log")
    ax.set_xlabel("number of class embeddings k (log scale)")
    ax.set_ylabel("learning rate $\\eta$ (Appendix D step)")
    ax.set_title(f"Max learning rate avoiding complete collapse\n(m = 100, {steps} steps, resolution 1e-3) vs Theorem 1")
    ax.legend(fontsize=8.5)
    ax.grid(alpha=0.3)
    ax = axes[3]
    ax.axhline(0, color="tab:green", ls="--", lw=1.4, label="critical lr (= corrected Theorem 1 bound)")
    ax.fill_between(ks, mt["lo"] - mt["critical"], mt["hi"] - mt["critical"], color="0.75", label=f"measured, range over {trials} trials")
    ax.plot(ks, mt["measured"] - mt["critical"], "o", ms=3.5, color="k", label="measured, min over trials")
    ax.plot(ks, mt["horizon"] - mt["critical"], "-", color="tab:purple", lw=1.2,
            label=f"finite-horizon estimate ({steps} steps, growth factors)")
    ax.plot(ks, mt["paper"] - mt["critical"], "-", color="tab:red", lw=1.6, label="Theorem 1 as printed")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xscale("log")
    ax.set_xlabel("number of class embeddings k (log scale)")
    ax.set_ylabel("$\\eta$ − critical lr  (symlog)")
    ax.set_title("Difference to the critical learning rate 2(k−1)/(k−2)")
    ax.legend(fontsize=8.5, loc="lower right")
    ax.grid(alpha=0.3, which="both")
    for ax in axes[2:]:
        ticks = [t for t in (3, 5, 10, 20, 30, 50, 100) if ks.min() <= t <= ks.max()]
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks])
    fig.tight_layout()
    png = out / "figure3.png"
    fig.savefig(png, dpi=130)
    fig.savefig(out / "figure3.pdf")
    plt.close(fig)
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Figure 3 of the CLOP paper (Theorem 1 tightness).")
    parser.add_argument("--ks", type=int, nargs="+", default=list(range(3, 101)), help="k values (default 3..100)")
    parser.add_argument("--m", type=int, default=100, help="embedding dimension (default 100)")
    parser.add_argument("--trials", type=int, default=5, help="trials per k (default 5, as in the paper)")
    parser.add_argument("--steps", type=int, default=2000, help="gradient steps per run (default 2000; see module doc)")
    parser.add_argument("--resolution", type=float, default=1e-3, help="search resolution in eta (default 1e-3)")
    parser.add_argument("--spectra-steps", type=int, default=1000, help="steps shown in the spectra panels (default 1000)")
    parser.add_argument("--spectra-every", type=int, default=20, help="record the spectrum every this many steps (default 20)")
    add_run_args(parser)
    args = parser.parse_args(argv)
    if any(k < 3 for k in args.ks):
        parser.error(f"--ks must all be >= 3; got {args.ks}")
    if args.m < 3:
        parser.error(f"--m must be >= 3; got {args.m}")
    return run_script(parser, args, _run)


def _run(args: argparse.Namespace, dev: torch.device, out: Path) -> int:
    start = time.perf_counter()
    sp = spectra_table(m=args.m, steps=args.spectra_steps, record_every=args.spectra_every, seed=args.seed, device=dev)
    sp.to_csv(out / "figure3_spectra.csv", index=False)
    t_sp = time.perf_counter() - start
    ml = max_lr_table(args.ks, m=args.m, trials=args.trials, steps=args.steps, resolution=args.resolution,
                      seed=args.seed, device=dev)
    ml.to_csv(out / "figure3_max_lr.csv", index=False)
    t_ml = time.perf_counter() - start - t_sp
    png = plot(out)
    total = time.perf_counter() - start
    cs = sp.attrs["collapse_step"]
    print(f"Figure 3 spectra (k={SPECTRA_K}, m={args.m}, seed {args.seed}): first complete-collapse step "
          + ", ".join(f"eta={e}: {c if c >= 0 else 'none'}" for e, c in zip(SPECTRA_ETAS, cs)))
    print(f"max lr avoiding complete collapse (||mu|| >= 1 - {COLLAPSE_TOL:g}) within {args.steps} steps, "
          f"min over {args.trials} trials, resolution {args.resolution:g}; non-monotone brackets: "
          f"{ml.attrs['non_monotone']}")
    print(summary(ml))
    print(f"wrote {png}, {out / 'figure3.pdf'}, {out / 'figure3_max_lr.csv'}, {out / 'figure3_spectra.csv'}")
    print(f"time: spectra {t_sp:.1f} s, search {t_ml:.1f} s, total {total:.1f} s on {dev}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
