"""The rung-1 parts of the ladder study: predictions, Lemma 1, and the measured critical steps.

Each part returns ``{file name: DataFrame}``; :mod:`simulations.rungs.study` writes them to the output folder.
Files (columns are documented in ``docs/ladder.md``):

* ``rung1_linearisation.csv``: per problem (base losses, then the temperature grid) the optimum a small step
  converges to and the predicted steps: ``critical`` (numerical 2/lambda_max(H_T - C)), ``textbook``
  (2/lambda_max(H_T + C)), ``closed_form`` and ``closed_mode`` (:mod:`theory.linearisation`, where the
  optimum is a simplex or L_class's zero-mean configuration), ``translation`` (where Theorem 1's mean mode
  flips), ``path_min`` (smallest local critical step on the small-step path);
* ``rung1_lemma1.csv``: per loss, complete collapse: stationary? minimum or saddle? attracts from which lr?;
* ``rung1_fixed_points.csv``: the same for the failure modes complete collapse and class collapse (every class on
  one vertex of a simplex; the optimum of SupCon, a failure mode of the instance-level losses);
* ``rung1_closed_forms.csv``: the closed-form critical steps against k = 3..100 (for figure (a));
* ``rung1_minibatch.csv``: per (loss, B) the minibatch predictions of :func:`linearise.minibatch_prediction`;
* ``rung1_events_<part>.csv`` and ``rung1_runs_<part>.csv`` for the parts base, horizon, local, k, tau, batch:
  the brackets of :func:`simulations.rungs.search.critical_steps` and every run (``local``: the base searches
  started at the optimum plus a perturbation of 1e-4, where the linearisation applies; the others start
  uniformly on the sphere).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pandas as pd

from simulations.rungs.free import FreeEmbeddings
from simulations.rungs.linearise import (
    MAX_PARAMETERS, class_collapse, critical_step, fixed_point, fixed_point_kind, lemma1, minibatch_prediction,
    path_critical_step, tangent_model,
)
from simulations.rungs.problem import Problem
from simulations.rungs.search import GRID, critical_steps
from simulations.rungs.settings import Settings
from theory.linearisation import lclass_critical_step, lclass_textbook_step, simplex_critical_step, simplex_translation_step

__all__ = ["BASE_GRID", "prediction", "theory_part", "events_part", "problems_of", "K_SWEEP_N", "closed_form"]

BASE_GRID = tuple(GRID) + tuple(2.0 ** (np.array([10.0, 12.0]) + 1.0 / 16))
"""The base part's grid reaches 4096 x the scale, so that "no collapse up to X" covers a wide range."""

K_SWEEP_N = {"supcon": 2}
"""Instances per class in the k sweep (1 unless listed: InfoNCE and L_class then see k instances)."""


def closed_form(problem: Problem) -> tuple[float, str, float]:
    """(critical step, mode, translation step) from :mod:`theory.linearisation`; NaN where none applies."""
    if problem.loss == "lclass":
        pts = 2 * problem.instances
        return lclass_critical_step(pts), "translation_out", lclass_critical_step(pts)
    v, m = problem.vertices(), problem.per_vertex()
    if v is None or problem.batch is not None:
        return math.nan, "", math.nan
    dcl = problem.loss == "dcl"
    crit, mode = simplex_critical_step(v, m, problem.tau, dcl=dcl)
    return crit, mode, simplex_translation_step(v, m, problem.tau, dcl=dcl)


@functools.lru_cache(maxsize=None)
def prediction(problem: Problem, path_checkpoints: int = 20) -> dict:
    """Optimum and predicted steps of a full-batch ``problem`` (cached per process)."""
    fp = fixed_point(problem)
    cf, mode, trans = closed_form(problem)
    row = {"source": fp.source, "loss_opt": fp.loss, "rank_opt": fp.rank, "grad_tangent": fp.grad_tangent,
           "closed_form": cf, "closed_mode": mode, "translation": trans}
    if 2 * problem.instances * problem.d <= MAX_PARAMETERS:
        cs = critical_step(tangent_model(problem, fp.z))
        row.update(critical=cs["critical"], textbook=cs["textbook"], hess_min=cs["hess_min"])
        path = path_critical_step(problem, checkpoints=path_checkpoints)["path_min"]
    else:
        row.update(critical=cf, textbook=lclass_textbook_step(2 * problem.instances) if problem.loss == "lclass"
                   else cf, hess_min=math.nan)
        path = math.nan
    row["path_min"] = path
    if not math.isfinite(row["translation"]) and problem.loss not in ("lclass",):
        row["translation"] = math.nan
    return row


def _problem_cols(p: Problem) -> dict:
    return {"loss": p.loss, "k": p.k, "n": p.n, "d": p.d, "tau": p.tau if p.tau is not None else math.nan,
            "batch": p.batch_size}


def problems_of(s: Settings, part: str) -> list[Problem]:
    """The problems of a part: 'base', 'horizon', 'local', 'k', 'tau' or 'batch'."""
    mk = functools.partial(Problem.make, seed=s.seed)
    if part == "base":
        return [mk(loss, s.k, s.n, s.d) for loss in s.losses]
    if part == "horizon":
        return [mk(loss, s.k, s.n, s.d) for loss in s.horizon_losses]
    if part == "local":
        return [mk(loss, s.k, s.n, s.d) for loss in s.local_losses]
    if part == "k":
        return [mk(loss, k, K_SWEEP_N.get(loss, 1)) for loss in s.k_losses for k in s.ks]
    if part == "tau":
        return [mk(loss, s.k, s.n, s.d, tau=t) for loss in s.tau_losses for t in s.taus]
    if part == "batch":
        return [mk(loss, s.k, s.n, s.d, batch=b) for loss in s.batch_losses for b in s.batches]
    raise ValueError(f"part={part!r} is not a rung-1 part")


def theory_part(s: Settings, progress=print) -> dict[str, pd.DataFrame]:
    """rung1_linearisation, rung1_lemma1, rung1_closed_forms and rung1_minibatch (module docstring)."""
    rows = []
    for p in problems_of(s, "base") + [q for q in problems_of(s, "tau") if q.tau != Problem.make(q.loss, 3, 1).tau]:
        progress(f"  linearise {p.label()}")
        rows.append(_problem_cols(p) | prediction(p, s.path_checkpoints))
    lem, fixed = [], []
    for p in problems_of(s, "base"):
        lem.append(_problem_cols(p) | lemma1(p))
        fixed.append(_problem_cols(p) | {"fixed_point": "complete_collapse"} | lem[-1])
        if p.d >= p.k:
            fixed.append(_problem_cols(p) | {"fixed_point": "class_collapse"} | fixed_point_kind(p, class_collapse(p)))
    closed = []
    for loss, n in (("lclass", 1), ("infonce", 1), ("dcl", 1), ("supcon", 2)):
        for k in range(3, 101):
            p = Problem.make(loss, k, n, seed=s.seed)
            cf, mode, trans = closed_form(p)
            closed.append(_problem_cols(p) | {"closed_form": cf, "closed_mode": mode, "translation": trans,
                                              "textbook": lclass_textbook_step(2 * k * n) if loss == "lclass" else cf})
    mb = []
    for p in problems_of(s, "batch"):
        full = dataclasses.replace(p, batch=None)
        pred = prediction(full, s.path_checkpoints)
        sub = Problem.make(p.loss, p.k, max(1, p.batch // p.k), seed=s.seed) if p.batch % p.k == 0 else None
        sub_step = closed_form(sub)[0] if sub is not None else math.nan
        if p.loss == "infonce":  # the batch as InfoNCE's own problem: B instances, labels do not matter
            sub_step = simplex_critical_step(p.batch, 2, p.tau)[0] if p.batch >= 3 else math.nan
        if p.loss == "lclass":  # 2B views of the batch
            sub_step = lclass_critical_step(2 * p.batch)
        progress(f"  minibatch {p.label()}")
        mb.append(_problem_cols(p) | {"full_batch": pred["critical"], "subproblem": sub_step}
                  | minibatch_prediction(p, fixed_point(full), samples=s.minibatch_samples))
    return {"rung1_linearisation.csv": pd.DataFrame(rows), "rung1_lemma1.csv": pd.DataFrame(lem),
            "rung1_fixed_points.csv": pd.DataFrame(fixed),
            "rung1_closed_forms.csv": pd.DataFrame(closed), "rung1_minibatch.csv": pd.DataFrame(mb)}


def events_part(s: Settings, part: str, progress=print) -> dict[str, pd.DataFrame]:
    """rung1_events_<part> and rung1_runs_<part>: the searches of every problem of ``part``."""
    steps = s.horizon_steps if part == "horizon" else s.steps
    trials = s.trials if part in ("base", "horizon") else s.sweep_trials
    opt_points = {}
    ev_rows, run_frames = [], []
    for p in problems_of(s, part):
        full = dataclasses.replace(p, batch=None)
        pred = prediction(full, s.path_checkpoints if part != "k" else 1)
        scale = min(v for v in (pred["critical"], pred["path_min"], pred["closed_form"]) if math.isfinite(v)) \
            if any(math.isfinite(v) for v in (pred["critical"], pred["path_min"], pred["closed_form"])) else 1.0
        progress(f"  search {part}: {p.label()} (scale {scale:.4g})")
        if part == "local":
            scale = pred["critical"] if math.isfinite(pred["critical"]) else scale
            opt_points[p] = fixed_point(full).z
        rung = FreeEmbeddings(p, start=opt_points.get(p))
        runs, events = critical_steps(rung, range(trials), scale, steps=steps,
                                      loss_opt=pred["loss_opt"], rank_opt=pred["rank_opt"],
                                      resolution=s.resolution, grid=BASE_GRID if part == "base" else GRID)
        cols = _problem_cols(p) | {"steps": steps}
        extra = {key: pred[key] for key in ("critical", "textbook", "closed_form", "translation", "path_min")}
        ev_rows += [{"part": part} | cols | e | extra | {"scale": scale} for e in events]
        frame = pd.DataFrame(runs)
        for key, value in reversed(list(({"part": part} | cols).items())):
            frame.insert(0, key, value)
        run_frames.append(frame)
    return {f"rung1_events_{part}.csv": pd.DataFrame(ev_rows),
            f"rung1_runs_{part}.csv": pd.concat(run_frames, ignore_index=True)}
