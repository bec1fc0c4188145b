"""The searches over learning rates of the L_class model: :func:`max_stable_lr` (Figure 3 of arXiv
2403.18699, Sec. 3.1: the largest eta that avoids complete collapse) and :func:`sweep`.

Both decide many (k, trial, eta) runs at once through :func:`simulations.lclass.engine.decide` (the
native kernel on the CPU, batched torch operations on CUDA), from the starts of
:func:`simulations.lclass.simulate.simulate` (:func:`~simulations.lclass.model.initial_embeddings`, reduced
to k dimensions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from clop.util.checks import check_positive, check_size
from clop.util.device import default_device
from clop.util.progress import progress_bar
from simulations.lclass.engine import check_engine, decide, resolve_chunk_bytes
from simulations.lclass.model import (
    COLLAPSE_TOL,
    check_etas,
    check_k,
    check_tol,
    initial_embeddings,
    reduce_coordinates,
)

__all__ = ["SearchResult", "max_stable_lr", "sweep", "sweep_runs"]


@dataclass
class SearchResult:
    """Output of :func:`max_stable_lr`.

    Attributes:
        ks: (n,) int64.  m, trials, steps, resolution, lo, hi, grid, seed, tol: the arguments.
        max_lr: (n, trials) float64 — largest tested eta whose run did NOT collapse within ``steps`` (the
            lower end of the final bracket); NaN where ``lo`` already collapsed.
        min_collapse_lr: (n, trials) — smallest tested eta whose run collapsed (upper end of the bracket);
            inf where even ``hi`` did not collapse (then max_lr = hi is only a lower bound).
        non_monotone: (n, trials) int64 — rounds in which a non-collapsing eta lay above a collapsing one.
        rounds: rounds after the initial (lo, hi) evaluation.  runs: runs simulated.  work: state entries
            updated (sum over steps of B K D, padding included).
    """

    ks: np.ndarray
    m: int
    trials: int
    steps: int
    resolution: float
    lo: float
    hi: float
    grid: int
    seed: int
    tol: float
    max_lr: np.ndarray
    min_collapse_lr: np.ndarray
    non_monotone: np.ndarray
    rounds: int
    runs: int
    work: int

    def min_over_trials(self) -> np.ndarray:
        """(n,) the Figure 3 value: the max lr that avoided collapse in every trial (min over trials)."""
        return self.max_lr.min(axis=1)


_SECANT_MIN_FRACTION = 1 / 8  # use the 1/T interpolation once a collapse took >= steps/8 steps
_FIT_MIN_FRACTION = 1 / 64  # ... fitted through collapses that took >= steps/64 steps (near-threshold regime)


def _predict_threshold(hist: list[tuple[float, int]], steps: int) -> float | None:
    """Eta at which the first collapse step T reaches ``steps``, from the collapsing (eta, T) closest to it.

    Near the threshold T(eta) ~ K / (eta - eta_inf) with K varying slowly, so 1/T is nearly linear in
    eta: a quadratic through the three collapsing points nearest the threshold (a line through two when
    only two exist) is solved for 1/T = 1/steps. None when the nearest collapse took < steps/8 steps or
    the fit gives no root below the nearest collapsing eta.
    """
    near = [p for p in sorted(hist) if p[1] >= steps * _FIT_MIN_FRACTION][:3]
    if len(near) < 2 or near[0][1] < steps * _SECANT_MIN_FRACTION:
        return None
    e = np.array([p[0] for p in near])
    y = 1.0 / np.array([p[1] for p in near], dtype=np.float64)
    if np.any(np.diff(e) <= 0) or np.any(np.diff(y) <= 0):
        return None  # not strictly monotone: no trustworthy model
    if len(near) == 3:
        coef = np.polyfit(e - e[0], y, 2)
        coef[-1] -= 1.0 / steps
        roots = [float(r.real) + e[0] for r in np.roots(coef) if abs(r.imag) < 1e-12 and r.real <= 0]
        if roots:
            return max(roots)
    slope = (y[1] - y[0]) / (e[1] - e[0])
    return float(e[0] - (y[0] - 1.0 / steps) / slope)


def _proposals(lo: float, hi: float, hist: list[tuple[float, int]], steps: int, res: float, grid: int) -> list[float]:
    """Test etas inside the open bracket (lo, hi) for one (k, trial).

    With a prediction ``pred`` of the finite-horizon threshold (:func:`_predict_threshold`) the two etas
    pred -/+ 0.45 res are tested, which closes the bracket in one round when the prediction is within
    0.45 res. Otherwise (no usable history, or a prediction outside the bracket) ``grid`` equally spaced
    etas are tested. Proposals only choose where to look: the bracket is always made of evaluated runs.
    """
    pts: list[float] = []
    pred = _predict_threshold(hist, steps)
    if pred is not None:
        h = 0.45 * res
        pts = [p for p in (pred - h, pred + h) if lo < p < hi]
    if not pts:
        pts = [lo + (hi - lo) * j / (grid + 1) for j in range(1, grid + 1)]
    return pts


def _check_ks(ks: int | Sequence[int]) -> list[int]:
    ks_list = [ks] if isinstance(ks, (int, np.integer)) else list(ks)
    if not ks_list:
        raise ValueError(f"ks must hold at least one k >= 3; got {ks!r}")
    return [check_k("ks", kk) for kk in ks_list]


def _starts(ks: list[int], m: int, trials: int, seed: int) -> list[list[torch.Tensor]]:
    """Per k, per trial: the reduced start C0 (k, d) of :func:`initial_embeddings` (the same as simulate's)."""
    out = []
    for kk in ks:
        c0, _ = reduce_coordinates(initial_embeddings(kk, m, trials, seed=seed))
        out.append([c0[t] for t in range(trials)])
    return out


class _Evaluator:
    """Decides (k index, trial, eta) runs through the engine, counting the runs and the work."""

    def __init__(self, inits: list[list[torch.Tensor]], ks: list[int], *, steps: int, tol: float,
                 dev: torch.device, chunk_bytes: int, engine: str):
        self.inits, self.ks = inits, ks
        self.kw = dict(steps=steps, tol=tol, dev=dev, chunk_bytes=chunk_bytes, engine=engine)
        self.runs = self.work = 0

    def __call__(self, cells: list[tuple[int, int, float]]) -> np.ndarray:
        """First collapse step of each run, -1 = none within the horizon."""
        cs, _, w = decide(
            [self.inits[i][t] for i, t, _ in cells],
            [self.ks[i] for i, _, _ in cells],
            [e for _, _, e in cells],
            **self.kw,
        )
        self.runs += len(cells)
        self.work += w
        return cs


@dataclass
class _Brackets:
    """The search state per (k index, trial): bracket [lo, hi], its answer so far and the collapses seen."""

    lo: np.ndarray  # (n, trials) largest evaluated eta that did not collapse
    hi: np.ndarray  # (n, trials) smallest evaluated eta that collapsed
    max_lr: np.ndarray
    min_collapse_lr: np.ndarray
    non_monotone: np.ndarray
    open: np.ndarray  # (n, trials) bool: lo did not collapse and hi did, so the bracket can shrink
    hist: dict[tuple[int, int], list[tuple[float, int]]]  # collapsing (eta, first collapse step) per open cell

    def active(self, resolution: float) -> np.ndarray:
        """The open brackets still wider than ``resolution``."""
        return self.open & (self.hi - self.lo > resolution * (1 + 1e-9))


def _bracket(evaluate: _Evaluator, n: int, trials: int, lo: float, hi: float) -> _Brackets:
    """Step 1: evaluate ``lo`` and ``hi`` for every (k, trial) and set up the brackets.

    NaN answer where ``lo`` already collapses; ``hi`` (with min_collapse_lr = inf) where ``hi`` does not.
    """
    cells = [(i, t, e) for i in range(n) for t in range(trials) for e in (lo, hi)]
    cs0 = evaluate(cells).reshape(n, trials, 2)
    col = cs0 >= 0
    max_lr = np.full((n, trials), np.nan)
    min_col = np.full((n, trials), np.inf)
    max_lr[~col[:, :, 0]] = lo
    min_col[col[:, :, 1]] = hi
    only_lo = ~col[:, :, 0] & ~col[:, :, 1]
    max_lr[only_lo] = hi  # hi did not collapse: a lower bound only
    min_col[only_lo] = np.inf
    open_ = ~col[:, :, 0] & col[:, :, 1]
    hist = {(int(i), int(t)): [(hi, int(cs0[i, t, 1]))] for i, t in np.argwhere(open_)}
    return _Brackets(lo=np.full((n, trials), lo), hi=np.full((n, trials), hi), max_lr=max_lr,
                     min_collapse_lr=min_col, non_monotone=np.zeros((n, trials), dtype=np.int64), open=open_,
                     hist=hist)


def _propose(br: _Brackets, active: np.ndarray, steps: int, resolution: float, grid: int):
    """Step 2: the etas of one round inside every active bracket (:func:`_proposals`).

    Returns (positions (i, t), cells (i, t, eta) of all of them, (start, count) of each position's cells).
    """
    pos = [(int(i), int(t)) for i, t in np.argwhere(active)]
    cells: list[tuple[int, int, float]] = []
    spans = []
    for i, t in pos:
        pts = _proposals(br.lo[i, t], br.hi[i, t], br.hist[(i, t)], steps, resolution, grid)
        spans.append((len(cells), len(pts)))
        cells += [(i, t, e) for e in pts]
    return pos, cells, spans


def _refine(br: _Brackets, pos, cells, spans, cs: np.ndarray) -> None:
    """Step 3: shrink each bracket to the evaluated etas around its first collapse; count non-monotone rounds."""
    for (i, t), (start, n_p) in zip(pos, spans):
        etas_r = [c[2] for c in cells[start : start + n_p]]
        cr = cs[start : start + n_p] >= 0
        br.hist[(i, t)] += [(e, int(c)) for e, c in zip(etas_r, cs[start : start + n_p]) if c >= 0]
        hit = np.flatnonzero(cr)
        first = int(hit[0]) if hit.size else n_p
        if hit.size and (~cr[first:]).any():
            br.non_monotone[i, t] += 1
        if first < n_p:
            br.hi[i, t] = etas_r[first]
        if first > 0:
            br.lo[i, t] = etas_r[first - 1]


def max_stable_lr(
    ks: int | Sequence[int],
    m: int = 100,
    *,
    trials: int = 5,
    steps: int = 2000,
    resolution: float = 1e-3,
    lo: float = 1.0,
    hi: float = 6.0,
    grid: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    tol: float = COLLAPSE_TOL,
    chunk_bytes: int | None = None,
    progress: bool = False,
    engine: str = "auto",
) -> SearchResult:
    """Largest learning rate that avoids complete collapse within ``steps`` steps, per k and trial.

    Definition. For trial t of k (start :func:`initial_embeddings` (k, m, trials, seed)[t], the same for
    every eta) let T(eta) be the first step with ``||mu|| >= 1 - tol`` (:data:`COLLAPSE_TOL`). The search
    returns ``max_lr``: the largest *evaluated* eta with T(eta) > steps, such that an evaluated eta at most
    ``resolution`` above it collapsed. This assumes collapse is monotone in eta for a fixed start: above
    some threshold every eta collapses, below it none does (checked by the tests on fine grids; the search
    counts violations in ``non_monotone``). The Figure 3 value per k is the min over trials
    (:meth:`SearchResult.min_over_trials`).

    Search, in named steps. Every (k, trial) holds a bracket [L, H] (L evaluated and not collapsing, H
    collapsing), initially [lo, hi], both evaluated first (:func:`_bracket`). Each round proposes a few etas
    inside every open bracket (:func:`_propose`), evaluates all (k, trial, eta) runs of the round in one call
    of the engine, with early exit, and shrinks the brackets to the evaluated points (:func:`_refine`), until
    every width is <= ``resolution``; :func:`_collect` reads the answer off the brackets. Where to evaluate
    (:func:`_proposals`): ``grid`` equally spaced etas (multisection) until a collapse near the threshold has
    been seen, then the two etas +-0.45 resolution around the eta where the first collapse step,
    interpolated in 1/T from the collapses seen so far, equals ``steps`` (near the threshold
    T ~ K/(eta - eta_inf), so 1/T is nearly linear in eta); this usually closes the bracket in one or two
    rounds. The choice of points affects only the cost: the answer is always a bracket of evaluated runs.

    Args:
        ks: k values (>= 3).  m: ambient dimension.  trials: starts per k.  steps: horizon N.
        resolution: final bracket width (> 0).  lo, hi: initial bracket, 0 < lo < hi.
        grid: etas per bracket in multisection rounds (default 1 = bisection on CPU, 7 on CUDA).
        seed, device, tol, chunk_bytes: as in :func:`simulations.lclass.simulate.simulate`.
        progress: tqdm bar over rounds (stderr).
        engine: ``auto`` (default: the native kernel on the CPU where it builds), ``native`` or ``torch``
            (:data:`simulations.lclass.engine.ENGINES`); the answer does not depend on it.

    Returns:
        :class:`SearchResult`: ``max_lr[i, t]`` per k and trial; NaN where ``lo`` collapsed, and ``hi``
        (with ``min_collapse_lr`` = inf) where ``hi`` did not collapse.
    """
    ks_list = _check_ks(ks)
    m = check_size("m", m, 1)
    trials = check_size("trials", trials, 1)
    steps = check_size("steps", steps, 1)
    resolution = check_positive("resolution", resolution)
    lo = check_positive("lo", lo)
    hi = check_positive("hi", hi)
    if not lo < hi:
        raise ValueError(f"lo must be < hi; got lo={lo!r}, hi={hi!r}")
    seed = check_size("seed", seed, 0)
    tol = check_tol(tol)
    dev = default_device(device)
    if grid is None:
        grid = 7 if dev.type == "cuda" else 1
    grid = check_size("grid", grid, 1)
    cb = resolve_chunk_bytes(dev, chunk_bytes)
    engine = check_engine(engine, dev)
    evaluate = _Evaluator(_starts(ks_list, m, trials, seed), ks_list, steps=steps, tol=tol, dev=dev,
                          chunk_bytes=cb, engine=engine)
    br = _bracket(evaluate, len(ks_list), trials, lo, hi)
    rounds = 0
    bar = progress_bar(desc="max_stable_lr rounds", leave=False) if progress else None
    while (active := br.active(resolution)).any():
        rounds += 1
        pos, cells, spans = _propose(br, active, steps, resolution, grid)
        _refine(br, pos, cells, spans, evaluate(cells))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return _collect(br, ks_list, m=m, trials=trials, steps=steps, resolution=resolution, lo=lo, hi=hi, grid=grid,
                    seed=seed, tol=tol, rounds=rounds, evaluate=evaluate)


def _collect(br: _Brackets, ks: list[int], *, rounds: int, evaluate: _Evaluator, **settings) -> SearchResult:
    """Step 4: the answer of every open bracket is its lower end, the smallest collapse its upper end."""
    br.max_lr[br.open] = br.lo[br.open]
    br.min_collapse_lr[br.open] = br.hi[br.open]
    return SearchResult(ks=np.asarray(ks, dtype=np.int64), **settings, max_lr=br.max_lr,
                        min_collapse_lr=br.min_collapse_lr, non_monotone=br.non_monotone, rounds=rounds,
                        runs=evaluate.runs, work=evaluate.work)


def sweep_runs(ks: Sequence[int], m: int, etas: Sequence[float], *, trials: int, seed: int
               ) -> tuple[list[torch.Tensor], list[int], list[float]]:
    """The runs of :func:`sweep`, in its order (k, then trial, then eta): their starts (reduced, as
    :func:`max_stable_lr`'s), k and eta. The arguments are taken as checked."""
    inits, kk_runs, e_runs = [], [], []
    for kk, starts in zip(ks, _starts(list(ks), m, trials, seed)):
        for t in range(trials):
            for eta in etas:
                inits.append(starts[t])
                kk_runs.append(kk)
                e_runs.append(eta)
    return inits, kk_runs, e_runs


def sweep(
    ks: int | Sequence[int],
    m: int,
    etas: float | Sequence[float],
    *,
    trials: int = 1,
    steps: int = 1000,
    seed: int = 0,
    device: str | torch.device | None = None,
    tol: float = COLLAPSE_TOL,
    early_exit: bool = False,
    chunk_bytes: int | None = None,
    engine: str = "auto",
) -> np.ndarray:
    """First complete-collapse step of every (k, trial, eta) run: (len(ks), trials, len(etas)) int64, -1 = none.

    All runs of all k are decided in one call of the engine (on the CPU the native kernel, one run at a
    time with its state in cache; batched torch operations on CUDA, every run in one chunk), from the
    same starts as :func:`simulations.lclass.simulate.simulate` and :func:`max_stable_lr`. ``early_exit``
    drops decided runs (the collapse steps are the same either way; without it every run takes all
    ``steps`` steps). ``engine``: as in :func:`max_stable_lr`.
    """
    ks_list = _check_ks(ks)
    m = check_size("m", m, 1)
    e = check_etas(etas).tolist()
    trials = check_size("trials", trials, 1)
    steps = check_size("steps", steps, 0)
    seed = check_size("seed", seed, 0)
    tol = check_tol(tol)
    dev = default_device(device)
    engine = check_engine(engine, dev)
    inits, kk_runs, e_runs = sweep_runs(ks_list, m, e, trials=trials, seed=seed)
    cs, _, _ = decide(inits, kk_runs, e_runs, steps=steps, tol=tol, dev=dev,
                      chunk_bytes=resolve_chunk_bytes(dev, chunk_bytes), early_exit=early_exit, engine=engine)
    return cs.reshape(len(ks_list), trials, len(e))
