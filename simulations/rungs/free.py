"""Rung 1: free instance embeddings (the unconstrained-features model), trained by the normalised step.

Every view is a unit vector in R^d and is itself the parameter: the state of R runs is ``z: (R, 2, N, d)``
(view, instance, dimension), float64. One step, as in Appendix D of the CLOP paper (arXiv 2403.18699):

    z_a <- (z_a - lr g_a) / ||z_a - lr g_a||,   g = dL/dz (Euclidean gradient of the problem's loss),

over all N instances (full batch) or over a minibatch of B instances, both views of each; the views outside
the batch do not move. Minibatches: epoch e of trial t visits the instances in the order of a permutation
drawn from a generator seeded by (seed, trial, e), N // B batches per epoch (the last partial batch is
dropped), the same for every learning rate of the trial (common random numbers).

Starts (:func:`initial_views`, :func:`sphere_views`): trial t of (k, n, d) draws a standard Gaussian (2, N, d)
from a generator seeded by (seed, k, n, d, t) and normalises its rows (uniform on the sphere, the start of
Theorem 1); the start does not depend on the loss, so losses are compared on the same starts. The step itself is
:func:`normalised_step`; both are public so that a study with its own loss (the SSEM grid of
:mod:`simulations.ssem`) trains free embeddings the same way. With ``start`` given (e.g. the
optimum of :func:`simulations.rungs.linearise.fixed_point`), trial t starts there instead, every view moved by
a Gaussian of standard deviation ``perturbation`` (generator seeded by (seed, t, 5)) and renormalised: the
local stability of that configuration, which the linearisation predicts.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from simulations.rungs.engine import BatchedLoss
from simulations.rungs.problem import Problem

__all__ = ["FreeEmbeddings", "sphere_views", "initial_views", "normalised_step", "batch_indices"]


def _generator(*key: int) -> torch.Generator:
    state = np.random.SeedSequence([int(v) for v in key]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def sphere_views(seed: int, k: int, n: int, d: int, trial: int) -> torch.Tensor:
    """(2, k n, d) float64 unit views, uniform on the sphere, of ``trial`` of (k, n, d) (module docstring)."""
    g = _generator(seed, k, n, d, trial)
    z = torch.randn(2, k * n, d, generator=g, dtype=torch.float64)
    return torch.nn.functional.normalize(z, dim=-1)


def initial_views(problem: Problem, trial: int) -> torch.Tensor:
    """(2, N, d) float64 unit views of ``trial`` (module docstring): :func:`sphere_views` of the problem."""
    return sphere_views(problem.seed, problem.k, problem.n, problem.d, trial)


def normalised_step(z: torch.Tensor, g: torch.Tensor, lrs: torch.Tensor) -> torch.Tensor:
    """One normalised step of R runs, z_a <- (z_a - lr g_a) / ||z_a - lr g_a||: z, g (R, 2, N, d), lrs (R,)."""
    return torch.nn.functional.normalize(z - lrs[:, None, None, None] * g, dim=-1)


def batch_indices(problem: Problem, trial: int, t: int) -> torch.Tensor:
    """(B,) instances of step ``t`` of ``trial`` (module docstring); all instances for full batch."""
    n_inst = problem.instances
    if problem.batch is None:
        return torch.arange(n_inst)
    per_epoch = n_inst // problem.batch
    epoch, j = divmod(t, per_epoch)
    perm = torch.randperm(n_inst, generator=_generator(problem.seed, trial, epoch, 7))
    return perm[j * problem.batch : (j + 1) * problem.batch]


class FreeEmbeddings:
    """Rung 1 (module docstring): ``init``, ``step`` and ``embeddings`` of :class:`simulations.rungs.engine.Rung`."""

    name = "free"

    def __init__(self, problem: Problem, device: str | torch.device = "cpu", start: torch.Tensor | None = None,
                 perturbation: float = 1e-4):
        if start is not None and tuple(start.shape) != (2, problem.instances, problem.d):
            raise ValueError(f"start must have shape (2, N, d) = {(2, problem.instances, problem.d)}; "
                             f"got {tuple(start.shape)}")
        self.start, self.perturbation = start, perturbation
        self.problem = problem
        self.device = torch.device(device)
        self.loss = BatchedLoss(problem, torch.float64, self.device)
        self.labels = problem.labels().to(self.device)
        self._perm_cache: dict[tuple[int, int], torch.Tensor] = {}

    def _start(self, trial: int) -> torch.Tensor:
        if self.start is None:
            return initial_views(self.problem, trial)
        g = _generator(self.problem.seed, trial, 5)
        noise = torch.randn(self.start.shape, generator=g, dtype=torch.float64)
        return torch.nn.functional.normalize(self.start.to(torch.float64) + self.perturbation * noise, dim=-1)

    def init(self, trials: Sequence[int]) -> dict[str, torch.Tensor]:
        z = torch.stack([self._start(t) for t in trials]).to(self.device)
        return {"z": z, "trial": torch.as_tensor(list(trials), dtype=torch.int64, device=self.device)}

    def embeddings(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        return state["z"]

    def gradient(self, state: dict[str, torch.Tensor], t: int) -> torch.Tensor:
        """(R, 2, N, d) Euclidean gradient of step ``t`` (zero outside the minibatch)."""
        z = state["z"]
        if self.problem.batch is None:
            return self.loss.grad(z, self.labels)
        g = torch.zeros_like(z)
        trials = state["trial"]
        for trial in trials.unique().tolist():
            rows = torch.nonzero(trials == trial).reshape(-1)
            idx = batch_indices(self.problem, trial, t).to(self.device)
            zb = z[rows][:, :, idx]
            gb = self.loss.grad(zb, self.labels[idx])
            g[rows[:, None], :, idx[None, :]] = gb.permute(0, 2, 1, 3)
        return g

    def step(self, state: dict[str, torch.Tensor], lrs: torch.Tensor, t: int) -> dict[str, torch.Tensor]:
        return {"z": normalised_step(state["z"], self.gradient(state, t), lrs), "trial": state["trial"]}
