"""Rung 3's report: the per-run and per-cell tables, the figure, the claim records and rung3.md.

Paper: CLOP, arXiv 2403.18699, Sec. 3.1 (Theorem 1's mu). Writes into ``out`` (default
``paper_figures/ladder/rung3``), all staged and put in place together (:func:`clop.util.io.staged_outputs`):

* ``rung3_runs.csv``   one row per finished or diverged run: norm, optimizer, lr, seed and
  :data:`training.rung3.measure.MEASURES`;
* ``rung3_cells.csv``  one row per normalisation x optimiser x lr: runs, diverged, collapsed, mean mu with its 95 %
  Student-t interval over the finite seeds, mean stable rank, top-1, weight growth ``w_end / w_init`` and the
  effective step ``lr / growth^2`` (the step of a scale-invariant weight in units of its step at the initial
  norm), and the collapse verdict of the cell (:func:`training.rung3.verdicts.collapse_cells`);
* ``rung3_mu.png``     mu against lr, one panel per optimiser, one line per normalisation (mean and interval over
  seeds, each seed a dot; diverged runs counted in the panel);
* ``claims.csv``       :func:`training.rung3.verdicts.all_claims` through :func:`clop.claims.write_claims`;
* ``rung3.md``         the tables and the verdicts with their numbers, and the command with its run time;
* ``ladder_rows``      (optional, default ``paper_figures/ladder/ladder_rows_rung3.csv``): one row per optimiser x
  normalisation for the ladder's table and figure (c) (:func:`ladder_rows`, the columns of
  ``simulations.rungs.summary.LADDER_COLUMNS``, docs/ladder.md "Adding a rung"): the collapse onset bracketed
  between the lr below the lowest lr whose collapse verdict holds and that lr, ``below`` when it is the lowest
  lr run, ``none`` up to the largest lr otherwise. No prediction: the network has no linearisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from clop.claims import Claim, write_claims
from clop.stats import paired_gain
from clop.util.io import staged_outputs
from training.rung3.grid import RUNG3, NetworkRung
from training.rung3.measure import COLLAPSE_MU, MEASURES
from training.rung3.verdicts import all_claims, collapse_cells

__all__ = ["CELL_COLUMNS", "REPORT_FILES", "RUN_COLUMNS", "cell_table", "check_table", "draw", "markdown",
           "report_files", "write_report"]

RUN_COLUMNS = ("run", "norm", "optimizer", "lr", "seed", *MEASURES)
CELL_COLUMNS = ("norm", "optimizer", "lr", "runs", "diverged", "collapsed", "mu", "mu_low", "mu_high", "stable_rank",
                "top1", "w_growth", "eff_step", "verdict")


def report_files(rung: NetworkRung = RUNG3) -> tuple[str, ...]:
    """The files :func:`write_report` writes for ``rung`` (``rung3_runs.csv``, ..., or ``rung4_...``)."""
    n = rung.number
    return (f"rung{n}_runs.csv", f"rung{n}_cells.csv", f"rung{n}_mu.png", "claims.csv", f"rung{n}.md")


REPORT_FILES = report_files(RUNG3)
LADDER_COLUMNS = ("rung", "model", "optimiser", "loss", "setting", "event", "units", "predicted", "prediction",
                  "status", "measured_lo", "measured_hi", "trials", "ratio", "eta_emb", "note")
"""The columns of the ladder's rows (those of ``simulations.rungs.summary``, which training may not import)."""


def check_table(tab: pd.DataFrame, rung: NetworkRung = RUNG3) -> pd.DataFrame:
    """``tab`` with :data:`RUN_COLUMNS` in order; ValueError naming the missing columns or a norm ``rung`` lacks."""
    missing = [c for c in RUN_COLUMNS if c not in tab.columns]
    if missing:
        raise ValueError(f"the run table lacks the column(s) {missing}; expected {list(RUN_COLUMNS)}")
    bad = sorted(set(tab["norm"]) - set(rung.norms))
    if bad:
        raise ValueError(f"the run table has unknown norm(s) {bad}; expected some of {list(rung.norms)}")
    return tab.loc[:, list(RUN_COLUMNS)].reset_index(drop=True)


def cell_table(tab: pd.DataFrame, rung: NetworkRung = RUNG3) -> pd.DataFrame:
    """One row per norm x optimiser x lr (module docstring)."""
    rows = []
    for norm in [n for n in rung.norms if n in set(tab["norm"])]:
        for opt in sorted(set(tab[tab["norm"] == norm]["optimizer"])):
            verdicts = {c["lr"]: c["verdict"] for c in collapse_cells(tab, opt, norm)}
            sub = tab[(tab["norm"] == norm) & (tab["optimizer"] == opt)]
            for lr, c in sub.groupby("lr"):
                ok = c[~c["diverged"].astype(bool)]
                mu = ok["mu"].to_numpy(float)
                g = paired_gain(mu) if len(mu) else None
                lo, hi = (g.low, g.high) if g is not None and g.n > 1 else (math.nan, math.nan)
                growth = float(ok["w_growth"].mean()) if len(ok) else math.nan
                rows.append({"norm": norm, "optimizer": opt, "lr": float(lr), "runs": len(c),
                             "diverged": int(c["diverged"].astype(bool).sum()),
                             "collapsed": int(c["collapsed"].astype(bool).sum()),
                             "mu": float(mu.mean()) if len(mu) else math.nan, "mu_low": lo, "mu_high": hi,
                             "stable_rank": float(ok["stable_rank"].mean()) if len(ok) else math.nan,
                             "top1": float(c["top1"].mean()), "w_growth": growth,
                             "eff_step": float(lr) / growth**2 if growth > 0 else math.nan,
                             "verdict": verdicts[float(lr)]})
    return pd.DataFrame(rows, columns=list(CELL_COLUMNS))


def ladder_rows(cells: pd.DataFrame, rung: NetworkRung = RUNG3) -> pd.DataFrame:
    """One ladder row per optimiser x normalisation of ``cells`` (module docstring)."""
    rows = []
    for (norm, opt), c in cells.groupby(["norm", "optimizer"], sort=False):
        c = c.sort_values("lr")
        lrs = c["lr"].tolist()
        held = c[c["verdict"] == "holds"]["lr"].tolist()
        if held:
            i = lrs.index(held[0])
            status, lo, hi = ("below", math.nan, held[0]) if i == 0 else ("bracketed", lrs[i - 1], held[0])
        else:
            status, lo, hi = "none", max(lrs), math.nan
        top = c.iloc[-1]
        rows.append({"rung": rung.number, "model": f"{rung.model}, {rung.norms[norm].label}", "optimiser": opt,
                     "loss": "infonce", "setting": f"{norm}, batch {rung.batch}, {int(c['runs'].max())} seeds",
                     "event": "collapse", "units": f"lr (batch {rung.batch})", "predicted": math.nan,
                     "prediction": "none (a network: no linearisation)",
                     "status": status, "measured_lo": lo, "measured_hi": hi, "trials": int(c["runs"].max()),
                     "ratio": math.nan, "eta_emb": math.nan,
                     "note": f"at lr {top['lr']:g}: mu {top['mu']:.3f}, weights x{top['w_growth']:.3g}, "
                             f"{int(top['collapsed'])}/{int(top['runs'])} collapsed, {int(top['diverged'])} diverged"})
    return pd.DataFrame(rows, columns=list(LADDER_COLUMNS))


def draw(tab: pd.DataFrame, cells: pd.DataFrame, path: Path, rung: NetworkRung = RUNG3) -> None:
    """``rung3_mu.png``: mu against lr, one panel per optimiser, one line per normalisation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    opts = sorted(set(cells["optimizer"]))
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(1, len(opts), figsize=(max(8.0, 5.2 * len(opts)), 4.4), sharey=True, squeeze=False)
    lrs = sorted(set(cells["lr"]))
    colours = {"bn": "tab:blue", "nobn": "tab:red", "fixed": "tab:green"}
    shift = {"bn": 0.97, "nobn": 1.0, "fixed": 1.03}
    for ax, opt in zip(axes[0], opts):
        notes: list[str] = []
        for norm in [n for n in rung.norms if n in set(cells["norm"])]:
            c = cells[(cells["optimizer"] == opt) & (cells["norm"] == norm)].sort_values("lr")
            if c.empty:
                continue
            x = c["lr"].to_numpy(float) * shift[norm]
            err = np.vstack([c["mu"] - c["mu_low"], c["mu_high"] - c["mu"]])
            div = c[c["diverged"] > 0]
            notes += [f"{norm}: {int(d['diverged'])} diverged at lr {d['lr']:g}" for _, d in div.iterrows()]
            ax.errorbar(x, c["mu"], yerr=np.nan_to_num(err), color=colours[norm], marker="o", capsize=3,
                        label=rung.norms[norm].label)
            r = tab[(tab["optimizer"] == opt) & (tab["norm"] == norm)]
            ax.scatter(r["lr"] * shift[norm], r["mu"], s=9, color=colours[norm], alpha=0.4)
        if notes:
            ax.text(0.02, 0.55, "\n".join(notes), transform=ax.transAxes, fontsize=7, va="center")
        ax.axhline(COLLAPSE_MU, color="k", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xticks(lrs)  # the grid's lrs, labelled as given
        ax.set_xticklabels([f"{x:g}" for x in lrs])
        ax.xaxis.set_minor_formatter(NullFormatter())
        if len(lrs) == 1:
            ax.set_xlim(lrs[0] / 2, lrs[0] * 2)
        ax.set_xlabel(f"learning rate (batch {rung.batch})")
        ax.set_title(f"{opt.upper()}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mu (mean pairwise cosine, held-out images)")
    axes[0][0].set_ylim(-0.05, 1.05)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=len(labels), frameon=False)
    fig.suptitle(f"Rung {rung.number}: {rung.model}, InfoNCE (10 % labels), {tab['seed'].nunique()} seeds\n"
                 "mu of the held-out embeddings against lr, by normalisation; dashed: complete collapse", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def markdown(cells: pd.DataFrame, claims: Sequence[Claim], seconds: float | None, epochs: int,
             rung: NetworkRung = RUNG3) -> str:
    """rung3.md (module docstring)."""
    head = "| " + " | ".join(CELL_COLUMNS) + " |\n|" + "---|" * len(CELL_COLUMNS) + "\n"
    body = "".join("| " + " | ".join(_fmt(r[c]) for c in CELL_COLUMNS) + " |\n" for _, r in cells.iterrows())
    verdicts = "".join(f"* **{c.id}** ({c.verdict}): {c.tested}. {c.result}\n" for c in claims)
    took = f" in {seconds:.0f} s" if seconds is not None else " (this report redrawn from the runs with --report-only)"
    grid = "; ".join(f"{n}: lr {', '.join(f'{x:g}' for x in sorted(set(cells[cells['norm'] == n]['lr'])))}"
                     for n in rung.norms if n in set(cells["norm"]))
    return (
        f"# Rung {rung.number}: the {rung.model} at large learning rates, {rung.compared}\n\n"
        f"Generated by `{rung.command}`{took} (runs, {epochs} epochs each, under `{rung.runs}`).\n"
        f"InfoNCE with 10 % labels for the probe, batch {rung.batch} ({grid}); mu is the mean pairwise cosine of the "
        f"{rung.heldout} held-out unit embeddings (complete collapse: mu >= {COLLAPSE_MU}); `w_growth` is the joint norm of the "
        "weights before a BatchNorm at the end over its value at initialisation; `eff_step` = lr / w_growth^2, the "
        "step of a scale-invariant weight in units of the step it would take at its initial norm. The question "
        f"and the reading of these numbers: docs/ladder.md, rung {rung.number}.\n\n"
        f"![mu against lr](rung{rung.number}_mu.png)\n\n## Cells (mean over seeds; mu interval 95 % Student-t)\n\n"
        + head + body + "\n## Verdicts (clop.stats)\n\n" + verdicts
    )


def write_report(tab: pd.DataFrame, out: str | Path, *, seconds: float | None = None, epochs: int = 25,
                 rows_path: str | Path | None = None, rung: NetworkRung = RUNG3) -> list[Claim]:
    """Write :func:`report_files` of ``rung`` into ``out`` from the per-run table ``tab``, and the ladder's rows
    to ``rows_path`` when given; returns the claims."""
    tab = check_table(tab, rung)
    cells = cell_table(tab, rung)
    claims = all_claims(tab, rung)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs_csv, cells_csv, png, claims_csv, md = report_files(rung)
    with staged_outputs(out) as stage:
        tab.to_csv(stage(runs_csv), index=False)
        cells.to_csv(stage(cells_csv), index=False)
        draw(tab, cells, stage(png), rung)
        write_claims(stage(claims_csv), claims)
        stage(md).write_text(markdown(cells, claims, seconds, epochs, rung))
    if rows_path is not None:
        rows_path = Path(rows_path)
        rows_path.parent.mkdir(parents=True, exist_ok=True)
        with staged_outputs(rows_path.parent) as stage:
            ladder_rows(cells, rung).to_csv(stage(rows_path.name), index=False)
    return claims
