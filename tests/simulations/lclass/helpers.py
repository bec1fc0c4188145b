"""Shared by the tests of simulations.lclass: an independent reference for the Appendix D step (a per-vector
Python loop), and the cases and skips the engine tests share."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simulations.lclass import native
from simulations.lclass.model import COLLAPSE_TOL, initial_embeddings
from theory.theorem1 import critical_lr


def reference_run(x0: np.ndarray, eta: float, steps: int) -> tuple[np.ndarray, list[float]]:
    """x_i <- normalise(x_i - eta * mean_{j != i} x_j), one vector at a time; returns (final X, ||mu_t|| for t=0..steps)."""
    k = x0.shape[0]
    xs = [row.copy() for row in x0]
    norms = [float(np.linalg.norm(sum(xs) / k))]
    for _ in range(steps):
        new = []
        for i in range(k):
            others = np.zeros_like(xs[i])
            for j in range(k):
                if j != i:
                    others = others + xs[j]
            y = xs[i] - eta * others / (k - 1)
            new.append(y / np.linalg.norm(y))
        xs = new
        norms.append(float(np.linalg.norm(sum(xs) / k)))
    return np.stack(xs), norms


def native_or_skip():
    """The native kernel module, or skip the test where the kernel cannot be built."""
    if not native.available():
        pytest.skip(f"native kernel unavailable here: {native.status()}")
    return native


def threshold_etas(k: int) -> list[float]:
    """Learning rates on both sides of the critical one, with the special eta = 1 and a fast collapse."""
    return [0.5, 1.0, critical_lr(k) - 0.02, critical_lr(k) + 0.003, critical_lr(k) + 0.03, 6.0]


def shrinking_rows_case() -> tuple[list[torch.Tensor], np.ndarray]:
    """k = 3 in the plane (m = 2) at eta = 2.5: two rows shrink by f = ||x_i - c mu||^2 ~ 0.2 a step for many
    steps, so a tracked norm's round-off grows ~5x a step (see simulations.lclass.native.DRIFT_R). The starts and the
    per-vector reference's collapse steps (-1: none)."""
    k, m, trials, steps = 3, 2, 40, 400
    x0 = initial_embeddings(k, m, trials, seed=1)
    expected = []
    for t in range(trials):
        _, norms = reference_run(x0[t].numpy(), 2.5, steps)
        hits = [s for s, v in enumerate(norms) if v >= 1 - COLLAPSE_TOL]
        expected.append(hits[0] if hits else -1)
    return [x0[t] for t in range(trials)], np.array(expected)
