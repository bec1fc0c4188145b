"""The losses of the ladder's rungs 1 and 2 and the settings they are trained with.

A :class:`Problem` is one loss on k classes x n instances x 2 views (N = k n instances, 2N unit embeddings
in R^d), with a temperature where the loss has one and a minibatch of B instances (None = full batch).
Instance i has class ``i % k``; every sample is labelled (SupCon and the CLOP term use the labels).

Losses (:data:`LOSSES`), all from :mod:`clop.losses` (CLOP paper: arXiv 2403.18699, Eqs. (1), (3), (4)):

* ``lclass``: L_class (Eq. (3)) over all 2N views (sum over ordered pairs): Theorem 1's loss with K = 2N
  points; not scale-invariant (it does not normalise inside), so the renormalisation step matters;
* ``infonce`` (tau 0.5), ``supcon`` (tau 0.1), ``dcl`` (tau 0.1): the defaults of :mod:`clop.losses`;
* ``<base>+clop``: the base loss plus the CLOP term on both views (orthonormal prototypes drawn with the
  problem's seed, lambda = 1, ``reduction="batch"``, the scale-consistent reading of Eq. (4));
* ``barlowtwins``, ``vicreg``: defined on any (N, D) inputs; here on the unit views.

Minimum dimension (:meth:`Problem.min_dim`): Theorem 1 needs m >= k, i.e. a direction outside the span of
the points an optimum uses. The optimum of InfoNCE and DCL is a simplex of the N instances, of SupCon a
simplex of the k classes, of L_class a zero-mean configuration of the 2N views; d must be at least that
number of vertices (and >= k for the prototypes of the CLOP term). Barlow Twins and VICReg need d >= 2.

:func:`loss_function` returns ``f(z, labels) -> 0-dim tensor`` on one run's views ``z: (2, B, d)``, to be
vmapped over runs by :mod:`simulations.rungs.engine`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch

from clop.losses.clop_objective import clop_term, l_class
from clop.losses.contrastive import dcl, info_nce, supcon
from clop.losses.redundancy import barlow_twins, vicreg
from clop.prototypes import orthonormal

__all__ = ["LOSSES", "DEFAULT_TAU", "Problem", "loss_function", "base_loss", "has_clop"]

LOSSES = (
    "lclass", "infonce", "supcon", "dcl",
    "lclass+clop", "infonce+clop", "supcon+clop", "dcl+clop",
    "barlowtwins", "vicreg",
)
"""Every loss a rung can train."""

DEFAULT_TAU = {"infonce": 0.5, "supcon": 0.1, "dcl": 0.1}
"""Temperatures of :mod:`clop.losses` (the losses' own defaults)."""


def base_loss(loss: str) -> str:
    """``'supcon+clop'`` -> ``'supcon'``."""
    return loss.removesuffix("+clop")


def has_clop(loss: str) -> bool:
    """Whether the loss carries the CLOP term."""
    return loss.endswith("+clop")


@dataclasses.dataclass(frozen=True)
class Problem:
    """One loss on k classes x n instances x 2 views in R^d; ``batch`` instances per step (None = all).

    Construct with :meth:`make` (checks every field, raising ValueError naming it).
    """

    loss: str
    k: int
    n: int
    d: int
    tau: float | None = None
    batch: int | None = None
    seed: int = 0

    @staticmethod
    def make(loss: str, k: int, n: int, d: int | None = None, tau: float | None = None,
             batch: int | None = None, seed: int = 0) -> "Problem":
        """A checked problem; ``d=None`` takes the smallest allowed dimension + 1, ``tau=None`` the loss's default."""
        if loss not in LOSSES:
            raise ValueError(f"loss={loss!r} is not supported; expected one of {list(LOSSES)}")
        for name, value, low in (("k", k, 3), ("n", n, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
        base = base_loss(loss)
        if base in DEFAULT_TAU:
            tau = DEFAULT_TAU[base] if tau is None else tau
            if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau <= 0:
                raise ValueError(f"tau must be a finite number > 0; got {tau!r}")
            tau = float(tau)
        else:
            tau = None
        need = Problem._min_dim(loss, k, n)
        d = need + 1 if d is None else d
        if isinstance(d, bool) or not isinstance(d, int) or d < need:
            raise ValueError(f"d must be an integer >= {need} for loss {loss} with k={k}, n={n} "
                             f"(the vertices of its optimum; Theorem 1 needs m >= k); got {d!r}")
        if batch is not None:
            if isinstance(batch, bool) or not isinstance(batch, int) or not 2 <= batch <= k * n:
                raise ValueError(f"batch must be an integer in [2, N={k * n}] (instances per step; N = k n); "
                                 f"got {batch!r}")
            if batch == k * n:
                batch = None
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
        return Problem(loss, k, n, d, tau, batch, seed)

    @staticmethod
    def _min_dim(loss: str, k: int, n: int) -> int:
        base = base_loss(loss)
        need = {"lclass": 2 * k * n, "infonce": k * n, "dcl": k * n, "supcon": k}.get(base, 2)
        return max(need, k) if has_clop(loss) else need

    @property
    def instances(self) -> int:
        """N = k n."""
        return self.k * self.n

    @property
    def batch_size(self) -> int:
        """Instances per step (N for full batch)."""
        return self.instances if self.batch is None else self.batch

    def min_dim(self) -> int:
        """The smallest d this loss is studied in (module docstring)."""
        return self._min_dim(self.loss, self.k, self.n)

    def labels(self) -> torch.Tensor:
        """(N,) int64 class of every instance: i % k."""
        return torch.arange(self.instances) % self.k

    def vertices(self) -> int | None:
        """Vertices of the simplex the loss converges to (None when its optimum is no such simplex)."""
        if has_clop(self.loss):
            return None
        return {"infonce": self.instances, "dcl": self.instances, "supcon": self.k}.get(self.loss)

    def per_vertex(self) -> int | None:
        """Coincident points per vertex of that simplex: 2 views (InfoNCE, DCL) or 2n (SupCon)."""
        return {"infonce": 2, "dcl": 2, "supcon": 2 * self.n}.get(self.loss)

    def label(self) -> str:
        """A short text naming the setting, e.g. ``supcon k=4 n=2 d=5 tau=0.1 B=N``."""
        tau = f" tau={self.tau:g}" if self.tau is not None else ""
        b = "N" if self.batch is None else str(self.batch)
        return f"{self.loss} k={self.k} n={self.n} d={self.d}{tau} B={b}"


def loss_function(problem: Problem, dtype: torch.dtype = torch.float64,
                  device: str | torch.device = "cpu") -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``f(z, labels)``: the problem's loss of one run, z: (2, B, d) (view, instance, dim), labels: (B,).

    The CLOP prototypes are drawn once here (seed = ``problem.seed``) in ``dtype`` on ``device``.
    """
    base = base_loss(problem.loss)
    tau = problem.tau

    def contrastive(z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if base == "lclass":
            return l_class(z.reshape(-1, z.shape[-1]))
        if base == "infonce":
            return info_nce(z[0], z[1], tau)
        if base == "supcon":
            return supcon(z[0], z[1], labels, tau)
        if base == "dcl":
            return dcl(z[0], z[1], tau)
        if base == "barlowtwins":
            return barlow_twins(z[0], z[1])
        return vicreg(z[0], z[1])

    if not has_clop(problem.loss):
        return contrastive
    protos = orthonormal(problem.k, problem.d, seed=problem.seed, dtype=dtype, device=device)

    def with_clop(z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        both = torch.cat([labels, labels])
        return contrastive(z, labels) + clop_term(z.reshape(-1, z.shape[-1]), both, protos, reduction="batch")

    return with_clop
