"""The verdicts of the SSEM grid (:mod:`simulations.ssem.grid`), its claims, ssem.md and the figure.

Paper: Lee, Oh, Lee & Sohn (2025), arXiv 2503.08203 (SSEM). Question: does the boundary alpha*(tau, k, n)
derived in :mod:`theory.ssem` (the paper's theorem text was not available) separate collapsed from non-collapsed
free-embedding runs, and do the runs end at the derived optimal spread rho*?

A cell is one (convention, tau, alpha) with its :attr:`~simulations.ssem.grid.Settings.trials` runs (different
starts). Decided with :mod:`clop.stats` from the runs' within-class variance W, every spread floored at
:data:`RESOLUTION`:

* **separation** (claim ``SSEM-sim-boundary-<convention>``): a cell the theory calls collapsed (alpha <= alpha*)
  must have W equivalent to 0 within :data:`COLLAPSE_TOL` (``equivalence_verdict``); a cell it calls spread
  must have W clearly above COLLAPSE_TOL (``direction_verdict`` on W - COLLAPSE_TOL with COLLAPSE_TOL as the
  negligible band). Cells just beyond the boundary, where the derived spread itself is below
  :data:`BAND` (rho* < BAND, too close to collapse for the resolution of the measurement), are not counted and
  are listed. Holm's correction over the counted cells for ``fails``.
* **spread** (claim ``SSEM-sim-spread-<convention>``): W - rho* equivalent to 0 within COLLAPSE_TOL in every cell.

A claim holds when every counted cell holds, fails when some cell fails after Holm's correction, and is
inconclusive otherwise. Files (:func:`write_report`): ``ssem_runs.csv`` (every run), ``ssem_cells.csv`` (every
cell with its verdicts), ``ssem_boundary.csv`` (alpha* on a fine tau grid), ``claims.csv`` (the grid's claims and
the derivation's, :func:`theory.ssem.claims`, which no other study writes), ``ssem.md``, ``ssem.png``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from clop import stats
from clop.claims import Claim, write_claims
from clop.losses.ssem_loss import SSEM_CONVENTIONS
from theory.ssem import QUOTE_COLLAPSE, QUOTE_MODEL, WHERE, boundary, optimal_rho
from theory.ssem import claims as ssem_theory_claims

__all__ = [
    "BAND",
    "COLLAPSE_TOL",
    "OUTPUTS",
    "RESOLUTION",
    "STUCK_GAP",
    "boundary_table",
    "cell_table",
    "derived_claims",
    "grid_claims",
    "markdown",
    "plot",
    "write_report",
]

COLLAPSE_TOL = 0.01
"""W below this is class collapse (spread s = sqrt(W) below 0.1); also the tolerance of W against rho*."""
RESOLUTION = 1e-3
"""Floor of the spread of W over a cell's runs: how far a finished run may still be from its end state."""
BAND = 0.03
"""Cells beyond the boundary whose derived rho* is below this are too close to collapse to count for separation."""
STUCK_GAP = 1e-3
"""A run whose final loss exceeds the family's minimum by more than this settled on another configuration."""
OUTPUTS = ("ssem_runs.csv", "ssem_cells.csv", "ssem_boundary.csv", "claims.csv", "ssem.md", "ssem.png")
COMMAND = "python simulations/ssem_grid.py --out paper_figures/ssem"


def _cell(group: pd.DataFrame) -> dict:
    first = group.iloc[0]
    w = group["within"].to_numpy()
    collapsed_pred = bool(first["alpha"] <= first["alpha_star"])
    in_band = (not collapsed_pred) and first["rho_star"] < BAND
    g_spread = stats.paired_gain(w - first["rho_star"], RESOLUTION)
    spread_v, spread_why = stats.equivalence_verdict(g_spread, COLLAPSE_TOL)
    if collapsed_pred:
        g_sep = stats.paired_gain(w, RESOLUTION)
        sep_v, sep_why = stats.equivalence_verdict(g_sep, COLLAPSE_TOL)
        judge = stats.equivalence_judge(COLLAPSE_TOL)
    else:
        g_sep = stats.paired_gain(w - COLLAPSE_TOL, RESOLUTION)
        sep_v, sep_why = stats.direction_verdict(g_sep, COLLAPSE_TOL)
        judge = stats.raises_judge(COLLAPSE_TOL)
    return {
        "convention": first["convention"], "tau": first["tau"], "alpha": first["alpha"],
        "alpha_star": first["alpha_star"], "rho_star": first["rho_star"], "runs": len(group),
        "within_mean": float(w.mean()), "within_min": float(w.min()), "within_max": float(w.max()),
        "between_mean": float(group["between"].mean()), "drift_max": float(group["drift"].max()),
        "loss_gap_min": float(group["loss_gap"].min()), "loss_gap_max": float(group["loss_gap"].max()),
        "stuck": int((group["loss_gap"].to_numpy() > STUCK_GAP).sum()),
        "predicted": "collapsed" if collapsed_pred else "spread",
        "measured": "collapsed" if w.mean() < COLLAPSE_TOL else "spread", "band": in_band,
        "separation": "not counted" if in_band else sep_v, "separation_reason": sep_why,
        "separation_margin_se": math.nan if in_band else stats.margin_se(g_sep, judge),
        "spread": spread_v, "spread_reason": spread_why,
        "spread_margin_se": stats.margin_se(g_spread, stats.equivalence_judge(COLLAPSE_TOL)),
        "_g_sep": g_sep, "_judge_sep": judge, "_g_spread": g_spread,
    }


def cell_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (convention, tau, alpha) with both verdicts (module docstring); Holm's correction applied per
    convention and claim (a ``fails`` that does not survive it becomes ``inconclusive``)."""
    cells = pd.DataFrame([_cell(g) for _, g in runs.groupby(["convention", "tau", "alpha"], sort=True)])
    for conv in cells["convention"].unique():
        for col, gcol, jcol in (("separation", "_g_sep", "_judge_sep"), ("spread", "_g_spread", None)):
            rows = cells.index[(cells["convention"] == conv) & (cells[col] != "not counted")]
            judges = [cells.at[i, jcol] if jcol else stats.equivalence_judge(COLLAPSE_TOL) for i in rows]
            keep = stats.holm_fails([cells.at[i, gcol] for i in rows], judges)
            for i, k in zip(rows, keep):
                if cells.at[i, col] == "fails" and not k:
                    cells.at[i, col] = "inconclusive"
                    cells.at[i, f"{col}_reason"] += " (not after Holm's correction)"
    return cells.drop(columns=["_g_sep", "_judge_sep", "_g_spread"])


def boundary_table(k: int, n: int, taus=None) -> pd.DataFrame:
    """alpha*(tau) of both conventions on a fine log-spaced tau grid (for the figure)."""
    taus = np.geomspace(0.02, 5.0, 200) if taus is None else np.asarray(taus, dtype=float)
    return pd.DataFrame({"tau": taus, **{f"alpha_star_{c}": boundary(taus, k, n, c) for c in SSEM_CONVENTIONS}})


def _overall(verdicts: pd.Series) -> str:
    counted = verdicts[verdicts != "not counted"]
    if (counted == "fails").any():
        return "fails"
    if len(counted) and (counted == "holds").all():
        return "holds"
    return "inconclusive"


def _counts(verdicts: pd.Series) -> str:
    counted = verdicts[verdicts != "not counted"]
    return ", ".join(f"{(counted == v).sum()} {v}" for v in ("holds", "fails", "inconclusive") if (counted == v).any())


def grid_claims(cells: pd.DataFrame, settings_text: str) -> list[Claim]:
    """Two claims per convention present in ``cells`` (module docstring)."""
    out = []
    for conv in [c for c in SSEM_CONVENTIONS if c in set(cells["convention"])]:
        c = cells[cells["convention"] == conv]
        sep = _overall(c["separation"])
        wrong = c[(c["separation"] != "not counted") & (c["predicted"] != c["measured"])]
        band = c[c["band"]]
        worst = c.loc[(c["within_mean"] - c["rho_star"]).abs().idxmax()]
        sep_result = (
            f"{_counts(c['separation'])} of {int((c['separation'] != 'not counted').sum())} counted cells; "
            f"{len(wrong)} counted cells on the other side of the boundary than predicted"
            + (f" ({', '.join(f'tau {r.tau:g} alpha {r.alpha:g}: W {r.within_mean:.3g}' for r in wrong.itertuples())})"
               if len(wrong) else "")
            + f"; {len(band)} cells beyond the boundary with rho* < {BAND:g} not counted"
        )
        out.append(Claim(
            id=f"SSEM-sim-boundary-{conv}", where=WHERE, quote=QUOTE_COLLAPSE,
            tested=(f"free embeddings ({settings_text}) trained by the normalised step on the SSEM loss ({conv} "
                    f"convention); per (tau, alpha) cell: collapsed (within-class variance W equivalent to 0 within "
                    f"{COLLAPSE_TOL:g}) exactly where the derived boundary says alpha <= alpha*(tau); clop.stats, W's "
                    f"spread floored at {RESOLUTION:g}, 2 SE margins, Holm over cells"),
            verdict=sep, result=sep_result, evidence="ssem/ssem.md; ssem/ssem_cells.csv; ssem/ssem.png",
            command=COMMAND, paper="2503.08203"))
        stuck = int(c["stuck"].sum())
        spread_result = (
            f"{_counts(c['spread'])} of {len(c)} cells; largest |mean W - rho*| "
            f"{abs(worst.within_mean - worst.rho_star):.3g} "
            f"at tau {worst.tau:g}, alpha {worst.alpha:g} (W {worst.within_mean:.3g}, rho* {worst.rho_star:.3g}); "
            f"{stuck} of {int(c['runs'].sum())} runs ended more than {STUCK_GAP:g} above the family's minimum loss "
            f"(another stationary configuration); lowest loss gap {c['loss_gap_min'].min():.2g}"
        )
        out.append(Claim(
            id=f"SSEM-sim-spread-{conv}", where=WHERE, quote=QUOTE_MODEL,
            tested=(f"the same runs: W equivalent to the derived optimal spread rho*(alpha, tau) = s*^2 within "
                    f"{COLLAPSE_TOL:g} in every cell (the family of the derivation is what free embeddings reach)"),
            verdict=_overall(c["spread"]), result=spread_result,
            evidence="ssem/ssem.md; ssem/ssem_cells.csv", command=COMMAND, paper="2503.08203"))
    return out


def _tau_rows(c: pd.DataFrame) -> list[str]:
    lines = [("| tau | alpha* (derived) | largest alpha measured collapsed | smallest alpha measured spread | "
             f"max abs(W - rho*) | separation verdicts | runs > {STUCK_GAP:g} above the family's minimum loss |"),
             "|---|---|---|---|---|---|---|"]
    for tau, t in c.groupby("tau"):
        col = t[t["measured"] == "collapsed"]["alpha"]
        spr = t[t["measured"] == "spread"]["alpha"]
        lines.append(
            f"| {tau:g} | {t['alpha_star'].iloc[0]:.4g} | {col.max() if len(col) else '-'} | "
            f"{spr.min() if len(spr) else '-'} | {(t['within_mean'] - t['rho_star']).abs().max():.3g} | "
            f"{_counts(t['separation']) or 'none counted'} | {int(t['stuck'].sum())} |")
    return lines


def markdown(runs: pd.DataFrame, cells: pd.DataFrame, claims: list[Claim], settings: dict,
             runtime_s: float | None) -> str:
    """ssem.md."""
    k, n = int(runs["k"].iloc[0]), int(runs["n"].iloc[0])
    lines = [
        "# SSEM's class-collapse boundary on free embeddings",
        "",
        ("Lee, Oh, Lee & Sohn (2025), *A Theoretical Framework for Preventing Class Collapse in Supervised "
        "Contrastive Learning*, AISTATS, arXiv 2503.08203. The boundary alpha*(tau, k, n) below which the "
        "minimiser of L = (1 - alpha) L_sup + alpha L_self is class-collapsed, and the optimal spread rho* = s*^2 "
        "beyond it, are **derived here** on the simplex-to-simplex family (`theory/ssem.py`, docs/ssem_cplearn.md); "
        "the paper's own theorem was not available to compare with. This page asks whether free embeddings "
        "trained on the loss end where the derivation says."),
        "",
        "## Setting",
        "",
        (f"- k = {k} classes x n = {n} samples x 2 views, free unit vectors in d = {int(runs['d'].iloc[0])} "
        "dimensions, every sample labeled; starts uniform on the sphere (the same starts for every cell); "
        "the normalised step of the ladder's rung 1 with a per-run step size (halved when the loss rises over "
        "a window, grown early on; `simulations/ssem/grid.py`)."),
        "- " + ", ".join(f"{key} {value}" for key, value in settings.items()),
        (f"- W = within-class variance of the unit views (s^2 in the family), between = variance of the class "
        f"means; collapsed: W < {COLLAPSE_TOL:g}."),
        "",
        "## Verdicts",
        "",
    ]
    for c in claims:
        lines.append(f"- **{c.id}: {c.verdict}** — {c.result}.")
    lines += ["", "![W over the grid with the derived boundary](ssem.png)", ""]
    for conv in [c for c in SSEM_CONVENTIONS if c in set(cells["convention"])]:
        label = "the authors' CIFAR code" if conv == "pairs" else "their ImageNet code, SupCon-style"
        lines += [f"## Convention `{conv}` ({label})", ""]
        lines += _tau_rows(cells[cells["convention"] == conv])
        lines.append("")
    lines += [
        "## Reading",
        "",
        ("A cell is one (tau, alpha) with its runs from different starts. *Separation* asks for W equivalent to 0 "
        f"(within {COLLAPSE_TOL:g}) where alpha <= alpha* and W clearly above {COLLAPSE_TOL:g} where alpha > alpha*, "
        f"except just beyond the boundary where rho* itself is below {BAND:g}; *spread* asks for W equal to rho* within "
        f"{COLLAPSE_TOL:g} everywhere. Decided with clop.stats (95 % t-intervals over the runs, spread floored at "
        f"{RESOLUTION:g}, 2 SE margins, Holm's correction over the cells). Runs that end above the family's "
        "minimum loss have settled on another stationary configuration; they are kept and counted."),
        "",
    ]
    if runtime_s is not None:
        lines.append(f"Run time: {runtime_s:.0f} s.")
    return "\n".join(lines) + "\n"


def plot(cells: pd.DataFrame, bnd: pd.DataFrame, k: int, n: int, path, taus_shown: int = 3) -> None:
    """ssem.png: per convention (columns), W over (tau, alpha) with the derived boundary (top) and W against
    alpha at a few tau with rho*(alpha) (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    convs = [c for c in SSEM_CONVENTIONS if c in set(cells["convention"])]
    fig, axes = plt.subplots(2, len(convs), figsize=(6.2 * len(convs), 9.5), squeeze=False)
    for j, conv in enumerate(convs):
        c = cells[cells["convention"] == conv]
        taus, alphas = np.sort(c["tau"].unique()), np.sort(c["alpha"].unique())
        grid = c.pivot(index="alpha", columns="tau", values="within_mean").loc[alphas, taus].to_numpy()
        ax = axes[0, j]
        mesh = ax.pcolormesh(_edges(taus, log=True), _edges(alphas), grid, cmap="viridis", vmin=0,
                             vmax=max(float(np.nanmax(grid)), COLLAPSE_TOL), shading="flat")
        fig.colorbar(mesh, ax=ax, label="within-class variance W (mean over runs)")
        ax.plot(bnd["tau"], bnd[f"alpha_star_{conv}"], color="white", lw=2, label="derived boundary alpha*(tau)")
        col = c[c["measured"] == "collapsed"]
        ax.scatter(col["tau"], col["alpha"], marker="x", color="red", s=30,
                   label=f"measured collapsed (W < {COLLAPSE_TOL:g})")
        ax.set_xscale("log")
        ax.set_xlim(_edges(taus, log=True)[[0, -1]])
        ax.set_ylim(_edges(alphas)[[0, -1]])
        ax.set_xlabel("temperature tau (log scale)")
        ax.set_ylabel("alpha (weight of the self-supervised part)")
        ax.set_title(f"SSEM, convention '{conv}': W after training")
        ax.legend(loc="upper left", fontsize=8, framealpha=0.8)
        ax = axes[1, j]
        shown = taus[np.linspace(0, len(taus) - 1, min(taus_shown, len(taus))).round().astype(int)]
        for tau, color in zip(shown, plt.cm.plasma(np.linspace(0.1, 0.8, len(shown)))):
            t = c[c["tau"] == tau].sort_values("alpha")
            ax.errorbar(t["alpha"], t["within_mean"], yerr=[(t["within_mean"] - t["within_min"]).clip(lower=0),
                        (t["within_max"] - t["within_mean"]).clip(lower=0)], fmt="o", color=color, ms=4, capsize=2,
                        label=f"tau {tau:g}: runs (mean, min-max)")
            fine = np.linspace(0.0, 1.0, 201)
            ax.plot(fine, [optimal_rho(a, tau, k, n, conv) for a in fine], "-", color=color, lw=1,
                    label=f"tau {tau:g}: derived rho*(alpha)")
            ax.axvline(t["alpha_star"].iloc[0], color=color, ls=":", lw=1)
        ax.set_xlabel("alpha (dotted: derived boundary alpha*)")
        ax.set_ylabel("within-class variance W = s^2")
        ax.set_title(f"'{conv}': W against the derived optimal spread")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _edges(values: np.ndarray, log: bool = False) -> np.ndarray:
    v = np.log(values) if log else np.asarray(values, dtype=float)
    if len(v) == 1:
        e = np.array([v[0] - 0.5, v[0] + 0.5])
    else:
        mid = (v[1:] + v[:-1]) / 2
        e = np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]])
    return np.exp(e) if log else e


def derived_claims() -> list[Claim]:
    """The derivation's claims (:func:`theory.ssem.claims`) with this study's files as their evidence and command:
    ssem.md lists them beside the grid's."""
    return [dataclasses.replace(c, evidence="ssem/ssem.md", command=COMMAND) for c in ssem_theory_claims()]


def write_report(stage, runs: pd.DataFrame, settings: dict, runtime_s: float | None) -> tuple[str, list[Claim]]:
    """Write :data:`OUTPUTS` through ``stage`` (:func:`clop.util.io.staged_outputs`); returns (markdown, claims),
    the claims those of the derivation (:func:`derived_claims`) and of the grid (:func:`grid_claims`)."""
    cells = cell_table(runs)
    k, n = int(runs["k"].iloc[0]), int(runs["n"].iloc[0])
    bnd = boundary_table(k, n)
    text = f"k = {k}, n = {n}, d = {int(runs['d'].iloc[0])}, {int(runs['trial'].nunique())} starts per cell"
    claims = derived_claims() + grid_claims(cells, text)
    md = markdown(runs, cells, claims, settings, runtime_s)
    runs.to_csv(stage("ssem_runs.csv"), index=False)
    cells.to_csv(stage("ssem_cells.csv"), index=False)
    bnd.to_csv(stage("ssem_boundary.csv"), index=False)
    write_claims(stage("claims.csv"), claims)
    stage("ssem.md").write_text(md)
    plot(cells, bnd, k, n, stage("ssem.png"))
    return md, claims
