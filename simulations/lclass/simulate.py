"""Gradient descent on L_class for one k, trials x learning rates, with records along the way
(arXiv 2403.18699, Sec. 3: Figure 3's spectra, Figure 4).

:func:`simulate` steps with the torch engine (:class:`simulations.lclass.engine.Batch`, chunks of at most
``chunk_bytes`` of state), which gives it every quantity it records (mean norms, singular values,
L_class) on the CPU and on CUDA alike; deciding many runs without records is the job of
:func:`simulations.lclass.search.sweep` and :func:`~simulations.lclass.search.max_stable_lr`.
With ``reduced=True`` (the default) it simulates the exact k-dimensional coordinates of the rows
(:func:`simulations.lclass.model.reduce_coordinates`); ``reduced=False`` runs the same code on the full
``(k, m)`` rows (the tests check that both agree).

Example
-------
>>> res = simulate(30, 100, [2.0, 2.1], trials=1, steps=600, seed=0, device="cpu")
>>> collapsed(res).tolist()
[[False, True]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from clop.losses.clop_objective import l_class
from clop.util.checks import check_size
from clop.util.device import default_device
from simulations.lclass.engine import (
    CHECK_EVERY,
    RENORM_EVERY,
    Batch,
    resolve_chunk_bytes,
    split_chunks,
    stable_now,
)
from simulations.lclass.model import (
    COLLAPSE_TOL,
    check_etas,
    check_k,
    check_tol,
    initial_embeddings,
    reduce_coordinates,
)

__all__ = ["RECORDABLE", "SimulationResult", "simulate", "collapsed"]

RECORDABLE = ("mean_norm", "singular_values", "l_class")
"""Quantities :func:`simulate` can record every ``record_every`` steps."""


@dataclass
class SimulationResult:
    """Output of :func:`simulate` for one k: T trials x E learning rates.

    Attributes:
        k, m: number of embeddings and ambient dimension.
        etas: (E,) learning rates (Appendix D eta).
        trials, steps, seed, tol, reduced: the arguments.
        steps_run: steps actually taken (< steps only with early_exit).
        record_steps: (R,) int64 steps at which records were taken (0 = the initial state).
        mean_norm: (R, T, E) ||mu_t|| or None.  singular_values: (R, T, E, d) descending, d = min(k, m), or None.
        l_class: (R, T, E) L_class(X_t) (clop.losses.l_class) or None.
        final_mean_norm: (T, E).  collapse_step: (T, E) int64 first step with ||mu|| >= 1 - tol, -1 = never.
        final_x: (T, E, k, d) the final unit rows in the coordinates of ``basis``.
        basis: (T, m, d) with X = final_x @ basis^T (reduced=True), or None (final_x is already (k, m)).
    All tensors are float64/int64 on the simulation device.
    """

    k: int
    m: int
    etas: torch.Tensor
    trials: int
    steps: int
    seed: int
    tol: float
    reduced: bool
    steps_run: int
    record_steps: torch.Tensor
    final_mean_norm: torch.Tensor
    collapse_step: torch.Tensor
    final_x: torch.Tensor
    basis: torch.Tensor | None
    mean_norm: torch.Tensor | None = None
    singular_values: torch.Tensor | None = None
    l_class: torch.Tensor | None = None

    def embeddings(self) -> torch.Tensor:
        """Final embeddings in R^m: (T, E, k, m)."""
        if self.basis is None:
            return self.final_x
        return self.final_x @ self.basis.transpose(-1, -2).unsqueeze(1)


def _record_steps(steps: int, every: int) -> list[int]:
    rs = list(range(0, steps + 1, every))
    if rs[-1] != steps:
        rs.append(steps)
    return rs


def _check_record(record: Iterable[str]) -> tuple[str, ...]:
    rec = tuple(record)
    bad = [r for r in rec if r not in RECORDABLE]
    if bad:
        raise ValueError(f"record must hold only {RECORDABLE}; got {rec!r}")
    return rec


def _start(x0: torch.Tensor | None, k: int, m: int, trials: int, seed: int) -> torch.Tensor:
    """The starts: :func:`initial_embeddings`, or ``x0`` checked for shape (trials, k, m) and unit rows."""
    if x0 is None:
        return initial_embeddings(k, m, trials, seed=seed)
    x0 = torch.as_tensor(x0, dtype=torch.float64).cpu()
    if tuple(x0.shape) != (trials, k, m):
        raise ValueError(f"x0 must have shape (trials, k, m) = {(trials, k, m)}; got {tuple(x0.shape)}")
    if not torch.allclose(torch.linalg.vector_norm(x0, dim=-1), torch.ones(trials, k, dtype=torch.float64)):
        raise ValueError("x0 must have unit rows")
    return x0


class _Records:
    """What :func:`simulate` keeps, flat over the runs (trial-major): records (R, runs[, d]) and finals."""

    def __init__(self, rec: tuple[str, ...], n_r: int, runs: int, k: int, d: int, dev: torch.device):
        f64 = dict(dtype=torch.float64, device=dev)
        self.mean_norm = torch.zeros(n_r, runs, **f64) if "mean_norm" in rec else None
        self.singular_values = torch.zeros(n_r, runs, min(k, d), **f64) if "singular_values" in rec else None
        self.l_class = torch.zeros(n_r, runs, **f64) if "l_class" in rec else None
        self.final_mean_norm = torch.zeros(runs, **f64)
        self.collapse_step = torch.full((runs,), -1, dtype=torch.int64, device=dev)
        self.final_x = torch.zeros(runs, k, d, **f64)

    def recorded(self) -> tuple[torch.Tensor | None, ...]:
        return self.mean_norm, self.singular_values, self.l_class

    def store(self, batch: Batch, mu: torch.Tensor, mm: torch.Tensor, ri: int, idx: torch.Tensor) -> None:
        """Record slot ``ri`` of the runs ``idx`` from the chunk's current state."""
        if self.mean_norm is not None:
            self.mean_norm[ri, idx] = torch.sqrt(mm[:, 0])
        if self.singular_values is not None or self.l_class is not None:
            x = batch.x()
            if self.singular_values is not None:
                self.singular_values[ri, idx] = torch.linalg.svdvals(x)[:, : self.singular_values.shape[-1]]
            if self.l_class is not None:
                self.l_class[ri, idx] = l_class(x)

    def finish(self, batch: Batch, mu: torch.Tensor, first: torch.Tensor, ri: int, idx: torch.Tensor) -> None:
        """After a chunk stopped with ``ri`` slots filled: later slots hold the stop state; the finals."""
        for o in self.recorded():
            if o is not None and ri < o.shape[0]:
                o[ri:, idx] = o[ri - 1, idx].unsqueeze(0)
        self.final_x[idx] = batch.x()
        self.final_mean_norm[idx] = torch.sqrt((mu * mu).sum(-1))[:, 0]
        self.collapse_step[idx] = first


def _run_chunk(batch: Batch, idx: torch.Tensor, *, steps: int, thr: float, early_exit: bool,
               rsteps: list[int], records: _Records) -> int:
    """Advance one chunk (all runs at once) to ``steps`` or until every run is decided; returns the stop step."""
    first = torch.full((len(idx),), -1, dtype=torch.int64, device=idx.device)
    ri = 0  # next record slot
    for t in range(steps + 1):
        mu = batch.mean()
        mm = (mu * mu).sum(-1)
        first.masked_fill_((mm[:, 0] >= thr) & (first < 0), t)
        stop = t == steps
        if early_exit and not stop and t % CHECK_EVERY == 0:
            done = (first >= 0) | stable_now(torch.sqrt(mm[:, 0]), batch.log_growth, steps - t)
            stop = bool(done.all())
        if rsteps[ri] == t or stop:
            records.store(batch, mu, mm, ri, idx)
            ri += 1
        if stop:
            break
        batch.step(mu, mm)
        if (t + 1) % RENORM_EVERY == 0:
            batch.renormalise()
    records.finish(batch, mu, first, ri, idx)
    return t


def simulate(
    k: int,
    m: int,
    etas: float | Sequence[float] | torch.Tensor,
    *,
    trials: int = 1,
    steps: int = 1000,
    seed: int = 0,
    device: str | torch.device | None = None,
    record: Iterable[str] = ("mean_norm",),
    record_every: int = 1,
    reduced: bool = True,
    early_exit: bool = False,
    tol: float = COLLAPSE_TOL,
    x0: torch.Tensor | None = None,
    chunk_bytes: int | None = None,
) -> SimulationResult:
    """Gradient descent on L_class (Appendix D step) for ``trials`` x ``len(etas)`` runs of k embeddings in R^m.

    Every trial starts from :func:`~simulations.lclass.model.initial_embeddings` (k, m, trials, seed=seed)
    (or from ``x0: (trials, k, m)`` with unit rows), the same start for every eta. All runs advance
    together: one batched tensor program per step (split into chunks of at most ``chunk_bytes`` of state).

    Args:
        k: number of class embeddings, k >= 3.  m: ambient dimension, m >= 1.
        etas: learning rate(s) eta > 0 (Appendix D units; eta = 2 (k-1) x an autograd learning rate).
        trials: number of independent starts.  steps: number of update steps.  seed: int >= 0.
        device: torch device (default CUDA when present, else CPU).
        record: any of :data:`RECORDABLE`; records are kept every ``record_every`` steps (and at ``steps``).
        reduced: simulate in the k-dimensional span of X0 (exact, see the module docstring).
        early_exit: stop when every run is decided (collapsed, or provably unable to collapse by ``steps``);
            records and final state are then those of the stop step, ``steps_run`` says which.
        tol: collapse tolerance (``||mu|| >= 1 - tol``).  x0: optional start (trials, k, m).
        chunk_bytes: cap on one chunk's state in bytes (default 1 MiB on CPU, 1 GiB on CUDA).

    Returns:
        :class:`SimulationResult`.
    """
    k = check_k("k", k)
    m = check_size("m", m, 1)
    e = check_etas(etas)
    trials = check_size("trials", trials, 1)
    steps = check_size("steps", steps, 0)
    seed = check_size("seed", seed, 0)
    record_every = check_size("record_every", record_every, 1)
    tol = check_tol(tol)
    rec = _check_record(record)
    dev = default_device(device)
    cb = resolve_chunk_bytes(dev, chunk_bytes)
    x0 = _start(x0, k, m, trials, seed)
    c0, basis = reduce_coordinates(x0) if reduced else (x0, None)
    n_e = e.numel()
    d = c0.shape[-1]
    runs = [(t, j) for t in range(trials) for j in range(n_e)]
    rsteps = _record_steps(steps, record_every)
    records = _Records(rec, len(rsteps), len(runs), k, d, dev)
    stops: list[int] = []
    for group in split_chunks([(k, d)] * len(runs), cb):
        idx = torch.tensor(group, dtype=torch.int64, device=dev)
        batch = Batch(
            c0[[runs[i][0] for i in group]].to(dev),
            torch.full((len(group),), float(k), dtype=torch.float64, device=dev),
            e[[runs[i][1] for i in group]].to(dev),
            idx,
        )
        stops.append(_run_chunk(batch, idx, steps=steps, thr=(1.0 - tol) ** 2, early_exit=early_exit,
                                rsteps=rsteps, records=records))
    steps_run = max(stops)
    rs_out = [s_ for s_ in rsteps if s_ < steps_run] + [steps_run]

    def shape(o: torch.Tensor | None) -> torch.Tensor | None:
        if o is None:
            return None
        o = o[: len(rs_out)]
        return o.reshape(o.shape[0], trials, n_e, *o.shape[2:])

    return SimulationResult(
        k=k, m=m, etas=e.to(dev), trials=trials, steps=steps, seed=seed, tol=tol, reduced=reduced,
        steps_run=steps_run, record_steps=torch.tensor(rs_out, dtype=torch.int64),
        final_mean_norm=records.final_mean_norm.reshape(trials, n_e),
        collapse_step=records.collapse_step.reshape(trials, n_e),
        final_x=records.final_x.reshape(trials, n_e, k, d),
        basis=None if basis is None else basis.to(dev),
        mean_norm=shape(records.mean_norm), singular_values=shape(records.singular_values),
        l_class=shape(records.l_class),
    )


def collapsed(result: SimulationResult, tol: float | None = None) -> torch.Tensor:
    """(T, E) bool: the run reached complete collapse (``||mu|| >= 1 - tol``) at some step within the horizon.

    With ``tol`` None the simulation's own tolerance and its recorded first-collapse step are used; a
    different ``tol`` is applied to the final state only.
    """
    if tol is None or float(tol) == result.tol:
        return result.collapse_step >= 0
    tol = check_tol(tol)
    return result.final_mean_norm >= 1.0 - tol
