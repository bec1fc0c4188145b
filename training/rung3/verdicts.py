"""Rung 3's verdicts from the per-run table, through :mod:`clop.stats`, and their claim records.

Paper: CLOP, arXiv 2403.18699, Sec. 3.1 ("excessively large learning rates can lead to complete collapse";
Theorem 1) and the hypothesis of docs/ladder.md, rung 3 (BatchNorm's scale invariance keeps the effective step
lr / ||W||^2 small).

Rung 4 (:data:`training.rung3.grid.RUNG4`) has the same claims with the tag ``R4``.

* **Complete collapse at large lr**, one claim per optimiser x normalisation (``LAD-R3-collapse-<opt>-<norm>``):
  at each learning rate, the seeds' ``mu - 1`` (:mod:`training.rung3.measure`; diverged runs left out) against
  the tolerance ``1 - COLLAPSE_MU`` (:func:`clop.stats.equivalence_verdict`, the resolution floored at the
  runs' bootstrap resolution and :data:`RES_FLOOR`). ``holds`` where some lr holds (the lowest such lr is the
  onset), ``fails`` where every lr fails and every ``fails`` survives Holm's correction over the lrs,
  ``inconclusive`` otherwise.
* **Removing BatchNorm (holding the norms) brings collapse to a lower lr**, per optimiser
  (``LAD-R3-earlier-<norm>-<opt>``): per seed, the onset = the lowest lr of the grid at which that seed's run
  collapsed (a seed that never collapses is censored at one grid step, half a decade, past the largest lr);
  the paired difference ``log10(onset with BatchNorm) - log10(onset without)`` in decades,
  :func:`clop.stats.direction_verdict` with the negligible band :data:`NEGLIGIBLE_DECADES` and the grid step
  :data:`ONSET_RESOLUTION` as the resolution. ``not testable`` where neither arm collapses at any lr.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from clop.claims import Claim
from clop.stats import (
    MIN_PAIRS,
    direction_verdict,
    equivalence_judge,
    holm_fails,
    margin_se,
    paired_gain,
    raises_judge,
)
from training.rung3.grid import RUNG3, NetworkRung
from training.rung3.measure import COLLAPSE_MU

__all__ = [
    "COMMAND",
    "NEGLIGIBLE_DECADES",
    "ONSET_RESOLUTION",
    "RES_FLOOR",
    "TOLERANCE",
    "all_claims",
    "collapse_cells",
    "collapse_claim",
    "earlier_claim",
    "onsets",
]

RES_FLOOR = 1e-4
"""Least resolution of mu: the float32 embeddings' rounding leaves a collapsed run's mu about this far from 1."""
TOLERANCE = 1.0 - COLLAPSE_MU
NEGLIGIBLE_DECADES = 0.25
"""A shift of the onset smaller than a quarter decade (half a grid step) is no shift."""
ONSET_RESOLUTION = 0.5
"""The grid's lrs are half a decade apart: the onset moves in steps of 0.5 decades."""
COMMAND = RUNG3.command
_QUOTE_LR = "excessively large learning rates can lead to complete collapse"


def _evidence(rung: NetworkRung) -> str:
    n = rung.number
    return f"ladder/rung{n}/rung{n}_runs.csv; ladder/rung{n}/rung{n}_cells.csv"


def _what(rung: NetworkRung) -> str:
    return f"rung {rung.number}: {rung.model}, InfoNCE (10 % labels)"


def _cell(tab: pd.DataFrame, opt: str, norm: str, lr: float) -> pd.DataFrame:
    return tab[(tab["optimizer"] == opt) & (tab["norm"] == norm) & np.isclose(tab["lr"], lr)]


def collapse_cells(tab: pd.DataFrame, opt: str, norm: str) -> list[dict]:
    """Per lr of ``tab`` for one optimiser x normalisation: n, diverged, collapsed, the gain of ``mu - 1``, the
    verdict, its reason and margin (Holm applied to the fails side over the lrs)."""
    cells, gains, judges = [], [], []
    judge = equivalence_judge(TOLERANCE)
    mine = tab[(tab["optimizer"] == opt) & (tab["norm"] == norm)]
    for lr in sorted(mine["lr"].unique()):  # the lrs this normalisation ran (nobn also the context lrs)
        c = _cell(tab, opt, norm, lr)
        ok = c[~c["diverged"].astype(bool)]
        res = max(float(np.nanmedian(ok["res_mu"])) if len(ok) else 0.0, RES_FLOOR)
        g = paired_gain(ok["mu"].to_numpy(float) - 1.0, resolution=res) if len(ok) else None
        verdict, why = judge(g) if g is not None else ("inconclusive", "every run diverged")
        cells.append({"lr": float(lr), "n": len(c), "diverged": int(c["diverged"].astype(bool).sum()),
                      "collapsed": int(c["collapsed"].astype(bool).sum()), "gain": g, "verdict": verdict, "why": why,
                      "margin_se": margin_se(g, judge) if g is not None else math.nan})
        if g is not None:
            gains.append(g)
            judges.append(judge)
    keep = iter(holm_fails(gains, judges)) if gains else iter(())
    for cell in cells:
        if cell["gain"] is not None and not next(keep) and cell["verdict"] == "fails":
            cell["verdict"], cell["why"] = "inconclusive", "fails alone, not after Holm's correction over the lrs"
    return cells


def _mu_text(g) -> str:
    return "no finite run" if g is None else f"mu {1 + g.mean:.4f} [{1 + g.low:.4f}, {1 + g.high:.4f}] (n = {g.n})"


def collapse_claim(tab: pd.DataFrame, opt: str, norm: str, rung: NetworkRung = RUNG3) -> Claim:
    """The claim ``LAD-R<rung>-collapse-<opt>-<norm>`` (module docstring)."""
    cells = collapse_cells(tab, opt, norm)
    held = [c for c in cells if c["verdict"] == "holds"]
    if held:
        verdict = "holds"
    elif cells and all(c["verdict"] == "fails" for c in cells):
        verdict = "fails"
    else:
        verdict = "inconclusive"
    parts = [f"lr {c['lr']:g}: {_mu_text(c['gain'])}, {c['collapsed']}/{c['n']} collapsed, {c['diverged']} diverged, "
             f"{c['verdict']} (margin {c['margin_se']:.1f} SE)" for c in cells]
    onset = f"onset lr {held[0]['lr']:g}; " if held else ""
    return Claim(f"LAD-{rung.tag}-collapse-{opt}-{norm}", "Sec. 3.1", _QUOTE_LR,
                 f"{_what(rung)}, {opt.upper()}, {rung.norms[norm].label}; held-out mean "
                 f"pairwise cosine mu within {TOLERANCE:g} of 1 (complete collapse) at some lr of the grid "
                 f"(equivalence, Holm over the lrs)", verdict, onset + "; ".join(parts), _evidence(rung),
                 rung.command)


def onsets(tab: pd.DataFrame, opt: str, norm: str) -> pd.Series:
    """Per seed: log10 of the lowest lr at which the run collapsed (censored half a decade past the grid)."""
    lrs = sorted(tab["lr"].unique())
    censor = math.log10(max(lrs)) + ONSET_RESOLUTION
    sub = tab[(tab["optimizer"] == opt) & (tab["norm"] == norm)]
    out = {}
    for seed, g in sub.groupby("seed"):
        hit = g[g["collapsed"].astype(bool)]["lr"]
        out[int(seed)] = math.log10(float(hit.min())) if len(hit) else censor
    return pd.Series(out, dtype=float)


def earlier_claim(tab: pd.DataFrame, opt: str, norm: str, rung: NetworkRung = RUNG3) -> Claim:
    """The claim ``LAD-R<rung>-earlier-<norm>-<opt>``: ``norm`` (nobn or fixed) against bn, paired by seed."""
    base, other = onsets(tab, opt, "bn"), onsets(tab, opt, norm)
    seeds = sorted(set(base.index) & set(other.index))
    what = ("removing BatchNorm" if norm == "nobn" else "holding the scale-invariant weights' norms fixed")
    tested = (f"{_what(rung)}, {opt.upper()}: {what} brings complete collapse to a lower "
              f"lr; per seed log10(onset with BatchNorm) - log10(onset {rung.norms[norm].label}) in decades, onset censored "
              f"half a decade past the grid; direction, negligible {NEGLIGIBLE_DECADES} decade")
    cid, where = f"LAD-{rung.tag}-earlier-{norm}-{opt}", "Sec. 3.1 (rung 3 hypothesis, docs/ladder.md)"
    evidence, command = _evidence(rung), rung.command
    quote = "BatchNorm makes the layers before it scale-invariant, so their effective step is lr/||W||^2"
    if not seeds:
        return Claim(cid, where, quote, tested, "not checked", "no paired seeds", evidence, command)
    censor = math.log10(float(tab["lr"].max())) + ONSET_RESOLUTION
    if (base[seeds] >= censor).all() and (other[seeds] >= censor).all():
        return Claim(cid, where, quote, tested, "not testable",
                     f"no run of either arm collapsed up to lr {tab['lr'].max():g} ({len(seeds)} seeds)", evidence,
                     command)
    d = (base[seeds] - other[seeds]).to_numpy()
    g = paired_gain(d, resolution=ONSET_RESOLUTION)
    verdict, why = direction_verdict(g, NEGLIGIBLE_DECADES, unit=" dec")
    m = margin_se(g, raises_judge(NEGLIGIBLE_DECADES))
    onset_txt = lambda s: ", ".join("none" if v >= censor else f"{10**v:.0f}" for v in s)
    result = (f"{g.interval_text('decades')} (n = {g.n}, {g.up} earlier, {g.down} later; margin {m:.1f} SE; {why}); "
              f"onsets with BatchNorm: {onset_txt(base[seeds])}; {rung.norms[norm].label}: {onset_txt(other[seeds])}")
    if g.n < MIN_PAIRS:
        verdict = "inconclusive"
    return Claim(cid, where, quote, tested, verdict, result, evidence, command)


def all_claims(tab: pd.DataFrame, rung: NetworkRung = RUNG3) -> list[Claim]:
    """Every claim of ``rung`` that ``tab``'s optimisers and normalisations allow."""
    opts = [o for o in ("lars", "sgd") if o in set(tab["optimizer"])]
    norms = [n for n in rung.norms if n in set(tab["norm"])]
    out = [collapse_claim(tab, o, n, rung) for o in opts for n in norms]
    out += [earlier_claim(tab, o, n, rung) for n in norms if n != "bn" and "bn" in norms for o in opts]
    return out
