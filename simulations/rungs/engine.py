"""The run loop every rung shares: R runs of one rung stepped together, their events and end states.

A rung is "a model + an update + a way to read the embeddings" (:class:`Rung`): ``init(trials)`` returns the
batched state of R runs (a dict of tensors whose first axis is the run), ``step(state, lrs, t)`` applies one
training step with the learning rates ``lrs: (R,)``, and ``embeddings(state)`` returns the unit views
``(R, 2, N, D)`` that the rung's :class:`~simulations.rungs.problem.Problem` scores. Rung 1
(:mod:`simulations.rungs.free`) and rung 2 (:mod:`simulations.rungs.encoder`) implement it; a later rung
(a CNN, a ResNet) needs only these three methods to use the searches, the CSVs and the figures.

:func:`run` steps R runs for ``steps`` steps and returns, per run, the first step at which complete collapse
was seen (checked every ``check_every`` steps), the losses at the start and the end, the end-state metrics
of :mod:`simulations.rungs.endstate`, and the embedding-space step (below). Runs that collapsed, whose Gram
matrix stopped moving (two checks ``check_every`` steps apart and one step apart agree within 1e-13), or that
settled on a periodic orbit (the Gram matrix repeats after 2..MAX_PERIOD steps within 1e-13), leave the batch
early; every run keeps its last MAX_PERIOD + 1 embeddings for the end-state metrics.

Embedding-space step. At steps 0, 1, 3, 7, ... (2^j - 1) the engine measures how far the step moved the
views along the negative tangent gradient of the full loss: ``eta_emb = <-P dz, g> / ||g||^2`` with
``g`` the tangent gradient of the loss at the views before the step and ``P dz`` the tangent part of their
change. On rung 1 this is the learning rate itself up to the renormalisation (eta_emb = lr/||z - lr g||);
on rung 2 it is the step the encoder's update makes in embedding space. The record keeps the value at step
0 and the median over the measured steps.
"""

from __future__ import annotations

import math
from typing import Protocol, Sequence

import numpy as np
import torch
from torch.func import grad, vmap

from simulations.rungs.endstate import (
    COLLAPSE_TOL, MAX_PERIOD, classify, failed_to_train, gram_motion, state_metrics,
)
from simulations.rungs.problem import Problem, loss_function

__all__ = ["Rung", "BatchedLoss", "run", "RUN_FIELDS"]

RUN_FIELDS = ("lr", "trial", "collapse_step", "loss0", "loss_end", "share1", "mu", "rank", "class_spread",
              "motion1", "motion2", "end_state", "period", "failed", "collapsed", "eta_emb0", "eta_emb")
"""The per-run record of :func:`run` (arrays of length R)."""


class Rung(Protocol):
    """A model, its update and its embeddings (module docstring). A rung may also define
    ``diagnostics(state) -> dict[str, Tensor (R,)]``: values recorded per run at the start (under the name
    with ``_0`` appended) and when it finishes (e.g. weight norms), returned by :func:`run`."""

    name: str
    problem: Problem

    def init(self, trials: Sequence[int]) -> dict[str, torch.Tensor]: ...

    def step(self, state: dict[str, torch.Tensor], lrs: torch.Tensor, t: int) -> dict[str, torch.Tensor]: ...

    def embeddings(self, state: dict[str, torch.Tensor]) -> torch.Tensor: ...


class BatchedLoss:
    """The problem's loss over R runs: ``value(z)`` (R,) and ``tangent_grad(z)`` (R, 2, B, D) for z: (R, 2, B, D).

    Built on :func:`simulations.rungs.problem.loss_function` with ``torch.func.vmap``; the labels are shared by
    the runs. The loss is called once eagerly first, so that any cache it fills is filled outside the
    transforms.
    """

    def __init__(self, problem: Problem, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"):
        self.problem = problem
        self.f = loss_function(problem, dtype, device)
        self._value = vmap(self.f, in_dims=(0, None))
        self._grad = vmap(grad(self.f), in_dims=(0, None))
        self._warm: set[tuple[int, int]] = set()
        self.dtype, self.device = dtype, torch.device(device)

    def _warmup(self, z: torch.Tensor, labels: torch.Tensor) -> None:
        key = tuple(z.shape[1:])
        if key not in self._warm:
            self.f(torch.nn.functional.normalize(torch.ones(z.shape[1:], dtype=z.dtype, device=z.device)
                                                 + torch.arange(z.shape[-2] * z.shape[-1], dtype=z.dtype,
                                                                device=z.device).reshape(z.shape[-2:]), dim=-1),
                   labels)
            self._warm.add(key)

    def value(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._warmup(z, labels)
        return self._value(z, labels)

    def grad(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Euclidean gradient (R, 2, B, D)."""
        self._warmup(z, labels)
        return self._grad(z, labels)

    def tangent_grad(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        g = self.grad(z, labels)
        return g - (g * z).sum(-1, keepdim=True) * z


def _flat(z: torch.Tensor) -> torch.Tensor:
    """(R, 2, N, D) -> (R, 2N, D)."""
    return z.reshape(z.shape[0], -1, z.shape[-1])


def _share1(z: torch.Tensor) -> torch.Tensor:
    """sigma_1^2 / sum sigma^2 of every run's views (R,), through the D x D second-moment matrix."""
    zf = _flat(z)
    zf = torch.where(torch.isfinite(zf).all(dim=(1, 2))[:, None, None], zf, torch.zeros_like(zf))
    m = zf.transpose(1, 2) @ zf
    top = torch.linalg.eigvalsh(m)[:, -1]
    return top / m.diagonal(dim1=1, dim2=2).sum(-1).clamp_min(1e-300)


def _eta_emb(loss: BatchedLoss, labels: torch.Tensor, z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
    g = loss.tangent_grad(z0, labels)
    dz = z1 - z0
    dz = dz - (dz * z0).sum(-1, keepdim=True) * z0
    num = -(dz * g).sum(dim=(1, 2, 3))
    den = (g * g).sum(dim=(1, 2, 3))
    return torch.where(den > 1e-300, num / den.clamp_min(1e-300), torch.full_like(num, math.nan))


def _select(state: dict[str, torch.Tensor], keep: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: v[keep] for k, v in state.items()}


class _Record:
    """Per-run arrays filled as runs finish."""

    def __init__(self, r: int):
        self.collapse_step = np.full(r, -1, dtype=np.int64)
        self.loss_end = np.full(r, np.nan)
        self.z_end: list[torch.Tensor | None] = [None] * r
        self.motion = np.full((r, MAX_PERIOD), np.nan)
        self.eta: list[list[float]] = [[] for _ in range(r)]
        self.diag: dict[str, np.ndarray] = {}


def run(rung: Rung, trials: Sequence[int], lrs: Sequence[float], steps: int, *, loss_opt: float, rank_opt: int,
        check_every: int = 10, early_exit: bool = True) -> dict[str, np.ndarray]:
    """Train R = len(lrs) runs of ``rung`` (run i: start of trial ``trials[i]``, learning rate ``lrs[i]``).

    ``loss_opt`` and ``rank_opt``: the loss and the rank of the optimum a small step converges to (for the
    failure-to-train event and the end-state classification). Returns the arrays of :data:`RUN_FIELDS`.
    """
    problem = rung.problem
    loss = BatchedLoss(problem, dtype=torch.float64, device=getattr(rung, "device", "cpu"))
    labels = problem.labels().to(loss.device)
    view_labels = torch.cat([labels, labels])
    r = len(lrs)
    lr_all = torch.as_tensor(np.asarray(lrs, dtype=np.float64), device=loss.device)
    state = rung.init(list(trials))
    z = rung.embeddings(state)
    loss0 = loss.value(z, labels).cpu().numpy()
    rec = _Record(r)
    if hasattr(rung, "diagnostics"):
        rec.diag = {f"{k}_0": v.cpu().numpy().astype(float) for k, v in rung.diagnostics(state).items()}
    idx = torch.arange(r)
    history: list[torch.Tensor] = [z]
    g_prev_check = _flat(z) @ _flat(z).transpose(1, 2)
    measure = {2**j - 1 for j in range(int(math.log2(max(steps, 1))) + 2)}
    for t in range(steps):
        new = rung.step(state, lr_all[idx], t)
        z_new = rung.embeddings(new)
        if t in measure:
            for i, e in zip(idx.tolist(), _eta_emb(loss, labels, z, z_new).cpu().tolist()):
                rec.eta[i].append(e)
        state, z = new, z_new
        history.append(z)
        del history[: max(0, len(history) - (MAX_PERIOD + 1))]
        if (t + 1) % check_every and t + 1 < steps:
            continue
        done, still, finish, g_prev_check = _check(z, history, g_prev_check, early_exit, last=t + 1 == steps)
        for i in idx[done].tolist():
            rec.collapse_step[i] = t + 1
        if finish.any():
            _store(rec, rung, loss, labels, state, z, history, idx, finish, still)
            keep = ~finish
            if not keep.any():
                break
            state = _select(state, keep)
            z = z[keep]
            history = [h[keep] for h in history]
            g_prev_check = g_prev_check[keep]
            idx = idx[keep]
    return _summarise(rec, np.asarray(lrs, dtype=np.float64), np.asarray(trials), loss0, view_labels,
                      loss_opt, rank_opt)


def _check(z: torch.Tensor, history: list[torch.Tensor], g_prev_check: torch.Tensor, early_exit: bool,
           last: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(collapsed, still, finish, Gram now) of the active runs at a check (module docstring)."""
    bad = ~torch.isfinite(z).all(dim=(1, 2, 3))
    done = (_share1(z) >= 1.0 - COLLAPSE_TOL) & ~bad
    g_now = _flat(z) @ _flat(z).transpose(1, 2)
    back = [(g_now - _flat(h) @ _flat(h).transpose(1, 2)).abs().amax((1, 2)) for h in history[-2::-1]]
    still = ((g_now - g_prev_check).abs().amax((1, 2)) < 1e-13) & (back[0] < 1e-13)
    cycling = torch.zeros_like(still)
    for b in back[1:]:
        cycling |= b < 1e-13
    cycling &= ~still
    finish = done | still | cycling | bad if early_exit else bad
    if last:
        finish = torch.ones_like(done)
    return done, still, finish, g_now


def _store(rec: _Record, rung: Rung, loss: BatchedLoss, labels: torch.Tensor, state: dict[str, torch.Tensor],
           z: torch.Tensor, history: list[torch.Tensor], idx: torch.Tensor, finish: torch.Tensor,
           still: torch.Tensor) -> None:
    """Record the final loss, embeddings, motion and diagnostics of the runs that finish."""
    lv = loss.value(z[finish], labels).cpu().numpy()
    if hasattr(rung, "diagnostics"):
        for name, val in rung.diagnostics(_select(state, finish)).items():
            rec.diag.setdefault(name, np.full(len(rec.loss_end), np.nan))[idx[finish].cpu().numpy()] = \
                val.cpu().numpy()
    mot = np.zeros((int(finish.sum()), MAX_PERIOD))
    if len(history) > MAX_PERIOD:
        mot = gram_motion([_flat(h[finish]) for h in history])
    mot = np.where(still[finish].cpu().numpy()[:, None], 0.0, mot)
    for j, i in enumerate(idx[finish].tolist()):
        rec.loss_end[i] = lv[j]
        rec.z_end[i] = _flat(z[finish][j : j + 1])[0]
        rec.motion[i] = mot[j]


def _summarise(rec: _Record, lrs: np.ndarray, trials: np.ndarray, loss0: np.ndarray, view_labels: torch.Tensor,
               loss_opt: float, rank_opt: int) -> dict[str, np.ndarray]:
    zs = torch.stack([z for z in rec.z_end])
    met = state_metrics(zs, view_labels)
    met["motion"] = rec.motion
    states, period = classify(met, rec.loss_end, loss0, loss_opt, rank_opt)
    eta = [np.asarray(e, dtype=float) for e in rec.eta]
    return rec.diag | {
        "lr": lrs,
        "trial": trials.astype(np.int64),
        "collapse_step": rec.collapse_step,
        "loss0": loss0,
        "loss_end": rec.loss_end,
        "share1": met["share1"],
        "mu": met["mu"],
        "rank": met["rank"],
        "class_spread": met["class_spread"],
        "motion1": rec.motion[:, 0],
        "motion2": rec.motion[:, 1],
        "end_state": states.astype(str),
        "period": period,
        "failed": failed_to_train(rec.loss_end, loss0, loss_opt),
        "collapsed": states.astype(str) == "complete_collapse",
        "eta_emb0": np.array([e[0] if e.size else np.nan for e in eta]),
        "eta_emb": np.array([float(np.nanmedian(e)) if np.isfinite(e).any() else np.nan for e in eta]),
    }
