"""Measured critical steps: a log-spaced grid around a scale, then bisection, for two events per trial.

Events of a run (:mod:`simulations.rungs.endstate`): ``collapse`` (it ended in complete collapse) and
``failure`` (it ended short of 95 % of the loss decrease the optimum allows; a collapsed run has failed
too). For every trial the search finds, per event, the bracket [lo, hi] of evaluated learning rates with
no event at lo and the event at hi, as Figure 3 of the CLOP paper (arXiv 2403.18699, Sec. 3.1) does for
collapse:

1. grid: ``scale * GRID`` (about 1/4 ... 256 times the scale: factors of 2 up to 4, then of 4, all
   shifted by 2^(1/16) so that no run sits exactly on a predicted value), every trial; if the event already
   happens at the lowest grid point, the grid is extended downwards by factors of 4 (down to 1e-6 scale);
2. multisection in log space on every open bracket (``points`` geometric interior points per round), all
   trials and both events in one engine call per round, until hi/lo <= 1 + ``resolution``.

The bracket assumes the event is monotone in lr for a given start; evaluated lrs above ``hi`` without the
event are counted (``non_monotone``). Where no grid lr shows the event, the row says so (``status`` =
``none``, ``hi`` = inf, ``lo`` = the largest lr tested): "no collapse up to X". Every run is returned too
(the phase diagrams are drawn from them).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from simulations.rungs.engine import Rung, run

__all__ = ["GRID", "EVENTS", "critical_steps", "standard_event"]

GRID = 2.0 ** (np.array([-2.0, -1.0, 0.0, 1.0, 2.0, 4.0, 6.0, 8.0]) + 1.0 / 16)
EVENTS = ("collapse", "failure")
_FLOOR = 1e-6


def standard_event(rec: dict[str, np.ndarray], event: str) -> np.ndarray:
    """The runs of ``rec`` in which ``event`` ('collapse' or 'failure') happened."""
    return rec["collapsed"] if event == "collapse" else rec["failed"] | rec["collapsed"]


_STANDARD = {name: (lambda rec, name=name: standard_event(rec, name)) for name in EVENTS}


def _merge(runs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([r[k] for r in runs]) for k in runs[0]}


def critical_steps(rung: Rung, trials: Sequence[int], scale: float, *, steps: int, loss_opt: float, rank_opt: int,
                   resolution: float = 0.02, grid: Sequence[float] = tuple(GRID), check_every: int = 10,
                   events: dict | None = None, points: int = 3) -> tuple[dict[str, np.ndarray], list[dict]]:
    """(runs, events): every run of the search, and one row per (trial, event) (module docstring).

    ``points``: learning rates per open bracket and round (3: the bracket shrinks 4-fold per round; one engine
    call costs about the same for 1 or 3 points when runs are few). ``events``: name -> function(run record) -> bool array, replacing the two standard events (the first one
    also drives the downward extension of the grid).

    Event rows: trial, event, status ('bracketed', 'none', 'below'), lo, hi, non_monotone, state_lo, state_hi
    (end states of the runs at lo and hi), eta_emb_lo, eta_emb_hi (their median embedding-space steps).
    """
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0; got {scale!r}")
    trials = [int(t) for t in trials]
    events = _STANDARD if events is None else events
    first = "failure" if "failure" in events else next(iter(events))

    def evaluate(pairs: list[tuple[int, float]]) -> dict[str, np.ndarray]:
        return run(rung, [p[0] for p in pairs], [p[1] for p in pairs], steps, loss_opt=loss_opt,
                   rank_opt=rank_opt, check_every=check_every)

    runs = [evaluate([(t, scale * g) for t in trials for g in grid])]
    low = scale * min(grid)
    while True:
        allrec = _merge(runs)
        need = []
        for t in trials:
            sel = (allrec["trial"] == t) & (allrec["lr"] == allrec["lr"][allrec["trial"] == t].min())
            if (events[first](allrec)[sel]).any() and low / 4 >= scale * _FLOOR:
                need.append(t)
        if not need:
            break
        low /= 4
        runs.append(evaluate([(t, low) for t in need]))
    while True:
        allrec = _merge(runs)
        mids = set()
        for t in trials:
            for ev in events.values():
                lo, hi = _bracket(allrec, t, ev)
                if lo is not None and math.isfinite(hi) and hi / lo > 1.0 + resolution:
                    ratio = hi / lo
                    mids.update((t, lo * ratio ** (j / (points + 1))) for j in range(1, points + 1))
        if not mids:
            break
        runs.append(evaluate(sorted(mids)))
    allrec = _merge(runs)
    return allrec, [_row(allrec, t, name, fn) for t in trials for name, fn in events.items()]


def _bracket(rec: dict[str, np.ndarray], trial: int, event) -> tuple[float | None, float]:
    sel = rec["trial"] == trial
    lrs = rec["lr"][sel]
    hit = event(rec)[sel]
    if not hit.any():
        return float(lrs.max()), math.inf
    hi = float(lrs[hit].min())
    below = lrs[lrs < hi]
    return (float(below.max()) if below.size else None), hi


def _row(rec: dict[str, np.ndarray], trial: int, name: str, event) -> dict:
    lo, hi = _bracket(rec, trial, event)
    sel = rec["trial"] == trial
    hit = event(rec)[sel]
    lrs = rec["lr"][sel]
    status = "none" if not math.isfinite(hi) else "below" if lo is None else "bracketed"

    def at(lr_value, field):
        if lr_value is None or not math.isfinite(lr_value):
            return "" if field == "end_state" else math.nan
        j = np.flatnonzero(sel & (rec["lr"] == lr_value))[0]
        return rec[field][j]

    return {
        "trial": trial, "event": name, "status": status,
        "lo": math.nan if lo is None else lo, "hi": hi,
        "non_monotone": int(((lrs > hi) & ~hit).sum()) if math.isfinite(hi) else 0,
        "state_lo": at(lo, "end_state"), "state_hi": at(hi, "end_state"),
        "eta_emb_lo": at(lo, "eta_emb"), "eta_emb_hi": at(hi, "eta_emb"),
    }
