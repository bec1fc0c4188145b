"""Free embeddings trained on the SSEM loss over an (alpha, tau) grid, and what they end in.

Paper: Lee, Oh, Lee & Sohn (2025), arXiv 2503.08203 (SSEM); the boundary alpha*(tau, k, n) and the optimal spread
rho* = s*^2 it is compared with are derived in :mod:`theory.ssem` (the paper's theorem text was not available).

The model is rung 1 of the ladder (docs/ladder.md): every view of every sample is a free unit vector in R^d,
k classes x n samples x 2 views, trained by the normalised step z <- (z - lr g) / ||z - lr g||
(:func:`simulations.rungs.free.normalised_step`) from starts uniform on the sphere
(:func:`simulations.rungs.free.sphere_views`; trial t of (k, n, d) is the same start for every alpha, tau and
convention). All runs of one convention train together: the loss of the whole grid is
:func:`simulations.ssem.loss.batched_ssem`, one autograd pass a step.

Step size. The right step differs by orders of magnitude across the grid (the optimum is very flat at small
tau, as SupCon's is on the ladder), so each run controls its own: it starts at :attr:`Settings.lr0`; every
:attr:`Settings.window` steps, if its loss rose over the window the step is halved, else (during the first
:attr:`Settings.grow_until` of the steps) multiplied by :attr:`Settings.growth`, up to :attr:`Settings.lr_max`.
Afterwards it can only shrink, so every run ends in a stable descent.

Measured at the end (:func:`class_variances`), on the 2N unit views u with their class labels:

* ``within``: mean over classes of (1/2n) sum ||u - m_c||^2, m_c the class's mean view; in the family of
  :mod:`theory.ssem_family` it is exactly rho = s^2, so it is compared with rho*(alpha, tau);
* ``between``: mean over classes of ||m_c - m||^2, m the mean of all views (1 - rho in the family);
* ``drift``: |within at the end - within :attr:`Settings.drift_steps` steps before|, how far the run still moved;
* ``loss_gap``: the loss at the end minus the family's minimum (negative beyond rounding would mean the free
  embeddings found a configuration better than the family's optimum).

Defaults (:data:`FULL`): k = 4 classes of n = 4 samples in d = k n = 16 dimensions (the family needs k n - 1),
tau in {0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1, 2} (the authors' CIFAR tau 0.1 among them), alpha in 0, 0.1, ..., 1,
6 trials, 4000 steps. :data:`QUICK` (k = n = 3, 3 taus, 6 alphas, 1500 steps) is a small grid for tests and a
look. Everything runs in float64 on the CPU.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch

from clop.losses.ssem_loss import SSEM_CONVENTIONS
from clop.util.checks import check_choice, check_positive, check_size
from simulations.rungs.free import normalised_step, sphere_views
from simulations.ssem.loss import batched_ssem
from theory.ssem import boundary, optimal_rho
from theory.ssem_family import family_loss

__all__ = ["FULL", "QUICK", "RUN_COLUMNS", "Settings", "class_variances", "run_grid", "train_grid"]


@dataclasses.dataclass(frozen=True)
class Settings:
    """The grid and the training of one study (module docstring). Construct and :meth:`check`."""

    k: int = 4
    n: int = 4
    d: int | None = None
    taus: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 2.0)
    alphas: tuple[float, ...] = tuple(round(i / 10, 1) for i in range(11))
    trials: int = 6
    steps: int = 4000
    window: int = 25
    lr0: float = 0.1
    lr_max: float = 100.0
    growth: float = 1.5
    grow_until: float = 0.6
    drift_steps: int = 400
    seed: int = 0

    @property
    def dim(self) -> int:
        """d, default k n (the family spans k n - 1 dimensions)."""
        return self.k * self.n if self.d is None else self.d

    def check(self) -> Settings:
        """This settings object if every field is valid; ValueError naming the field otherwise."""
        check_size("k", self.k, 2)
        check_size("n", self.n, 2)
        if self.dim < self.k * self.n - 1:
            raise ValueError(f"d must be an integer >= k n - 1 = {self.k * self.n - 1}; got {self.d!r}")
        check_size("d", self.dim, 1)
        if not self.taus or any(not check_positive("tau", t) for t in self.taus):
            raise ValueError(f"taus must be a non-empty tuple of numbers > 0; got {self.taus!r}")
        if not self.alphas or any(not (0.0 <= a <= 1.0) for a in self.alphas):
            raise ValueError(f"alphas must be a non-empty tuple of numbers in [0, 1]; got {self.alphas!r}")
        for name, low in (("trials", 1), ("steps", 1), ("window", 1), ("drift_steps", 1), ("seed", 0)):
            check_size(name, getattr(self, name), low)
        for name in ("lr0", "lr_max", "growth"):
            check_positive(name, getattr(self, name))
        if not 0.0 <= self.grow_until <= 1.0:
            raise ValueError(f"grow_until must be in [0, 1]; got {self.grow_until!r}")
        return self


FULL = Settings()
QUICK = Settings(k=3, n=3, taus=(0.1, 0.5, 1.0), alphas=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0), steps=1500,
                 drift_steps=150)

RUN_COLUMNS = ("convention", "k", "n", "d", "tau", "alpha", "trial", "within", "between", "mean_norm", "drift",
               "loss_end", "loss_family_min", "loss_gap", "lr_end", "alpha_star", "rho_star")
"""One row per run (``ssem_runs.csv``)."""


def class_variances(z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(within, between, ||mean||) of R runs' views z: (R, 2, N, d), labels (N,): each (R,) (module docstring)."""
    r, _, n, d = z.shape
    u = torch.nn.functional.normalize(z.reshape(r, 2 * n, d), dim=-1)
    y = torch.cat([labels, labels])
    classes = labels.unique()
    means = torch.stack([u[:, y == c].mean(1) for c in classes], dim=1)  # (R, k, d)
    within = torch.stack([((u[:, y == c] - means[:, i : i + 1]) ** 2).sum(-1).mean(1)
                          for i, c in enumerate(classes)], dim=1).mean(1)
    centre = u.mean(1, keepdim=True)
    between = ((means - centre) ** 2).sum(-1).mean(1)
    return within, between, torch.linalg.vector_norm(centre[:, 0], dim=-1)


def _grid(s: Settings) -> list[tuple[float, float, int]]:
    return [(t, a, trial) for t in s.taus for a in s.alphas for trial in range(s.trials)]


def train_grid(s: Settings, convention: str) -> pd.DataFrame:
    """Train every (tau, alpha, trial) of ``s`` with ``convention``; one row per run (:data:`RUN_COLUMNS`)."""
    s = s.check()
    convention = check_choice("convention", convention, SSEM_CONVENTIONS)
    grid = _grid(s)
    labels = torch.arange(s.k * s.n) % s.k
    starts = {t: sphere_views(s.seed, s.k, s.n, s.dim, t) for t in range(s.trials)}
    z = torch.stack([starts[trial] for _, _, trial in grid])
    tau = torch.tensor([t for t, _, _ in grid], dtype=torch.float64)
    alpha = torch.tensor([a for _, a, _ in grid], dtype=torch.float64)
    lr = torch.full((len(grid),), s.lr0, dtype=torch.float64)
    window_loss = None
    within_before = None
    for step in range(s.steps):
        z = z.detach().requires_grad_(True)
        loss = batched_ssem(z, labels, alpha, tau, convention)
        (grad,) = torch.autograd.grad(loss.sum(), z)
        loss = loss.detach()
        if step % s.window == 0:
            if window_loss is not None:
                grow = s.growth if step < s.grow_until * s.steps else 1.0
                lr = torch.where(loss <= window_loss, (lr * grow).clamp(max=s.lr_max), lr / 2)
            window_loss = loss
        if step == s.steps - s.drift_steps:
            within_before = class_variances(z.detach(), labels)[0]
        z = normalised_step(z.detach(), grad, lr)
    with torch.no_grad():
        loss_end = batched_ssem(z, labels, alpha, tau, convention)
        within, between, mean_norm = class_variances(z, labels)
    if within_before is None:
        within_before = torch.full_like(within, float("nan"))
    return _rows(s, convention, grid, within, between, mean_norm, (within - within_before).abs(), loss_end, lr)


def _rows(s: Settings, convention: str, grid, within, between, mean_norm, drift, loss_end, lr) -> pd.DataFrame:
    theory = {}
    for t in s.taus:
        a_star = boundary(t, s.k, s.n, convention)
        for a in s.alphas:
            rho = optimal_rho(a, t, s.k, s.n, convention)
            theory[(t, a)] = (a_star, rho, float(family_loss(np.sqrt(rho), a, t, s.k, s.n, convention)))
    rows = []
    for i, (t, a, trial) in enumerate(grid):
        a_star, rho, lmin = theory[(t, a)]
        rows.append({
            "convention": convention, "k": s.k, "n": s.n, "d": s.dim, "tau": t, "alpha": a, "trial": trial,
            "within": float(within[i]), "between": float(between[i]), "mean_norm": float(mean_norm[i]),
            "drift": float(drift[i]), "loss_end": float(loss_end[i]), "loss_family_min": lmin,
            "loss_gap": float(loss_end[i]) - lmin, "lr_end": float(lr[i]), "alpha_star": a_star, "rho_star": rho,
        })
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS))


def run_grid(s: Settings, conventions: tuple[str, ...] = SSEM_CONVENTIONS) -> pd.DataFrame:
    """:func:`train_grid` for each convention, the rows together."""
    return pd.concat([train_grid(s, c) for c in conventions], ignore_index=True)
