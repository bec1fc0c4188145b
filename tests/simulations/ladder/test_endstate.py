"""End-state classification (simulations.rungs.endstate) on constructed configurations."""

from __future__ import annotations

import numpy as np
import torch

from simulations.rungs.endstate import classify, failed_to_train, state_metrics

LABELS = torch.cat([torch.arange(6) % 3, torch.arange(6) % 3])  # 12 views, 3 classes


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def _simplex(points: int, dim: int) -> torch.Tensor:
    c = torch.eye(points, dtype=torch.float64) - 1.0 / points
    return _unit(torch.cat([c, torch.zeros(points, dim - points, dtype=torch.float64)], 1))


def _classify(z: torch.Tensor, history=None, loss_end=1.0, loss0=10.0, loss_opt=1.0, rank_opt=5):
    met = state_metrics(z[None], LABELS, [h[None] for h in history] if history else None)
    if history is None:
        met["motion"] = np.zeros((1, 4))
    states, period = classify(met, np.array([loss_end]), np.array([loss0]), loss_opt, rank_opt)
    return states[0], period[0], met


def test_complete_collapse_equal_and_colinear():
    u = _unit(torch.randn(8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    assert _classify(u.expand(12, 8).clone())[0] == "complete_collapse"
    signs = torch.tensor([1.0, -1.0] * 6, dtype=torch.float64)[:, None]
    state, _, met = _classify(signs * u)
    assert state == "complete_collapse" and met["mu"][0] < 1e-12  # co-linear: mean 0, still rank one


def test_converged_class_collapse_dimensional_collapse_and_stalled():
    inst = _simplex(6, 8)  # 6 instances on a simplex, both views together: rank 5
    z = torch.cat([inst, inst])
    assert _classify(z)[0] == "converged"
    cls = _simplex(3, 8)[torch.arange(6) % 3]  # every class on one point: not optimal for an instance loss
    assert _classify(torch.cat([cls, cls]), loss_end=5.0)[0] == "class_collapse"
    flat = _unit(torch.cat([inst[:, :3], torch.zeros(6, 5, dtype=torch.float64)], 1) + 1e-3)  # rank 3 < 5
    flat = torch.cat([flat, flat])
    assert _classify(flat, loss_end=5.0)[0] == "dimensional_collapse"
    assert _classify(z, loss_end=5.0)[0] == "stalled"


def test_periodic_and_wandering_from_history():
    a = torch.cat([_simplex(6, 8)] * 2)
    b = _unit(a + 0.3 * torch.eye(12, 8, dtype=torch.float64))
    state, period, _ = _classify(a, history=[a, b, a, b, a], loss_end=5.0)
    assert (state, period) == ("periodic", 2)
    g = torch.Generator().manual_seed(0)
    hist = [_unit(torch.randn(12, 8, generator=g, dtype=torch.float64)) for _ in range(5)]
    assert _classify(hist[-1], history=hist, loss_end=5.0)[0] == "wandering"


def test_diverged_and_failure_to_train():
    z = torch.full((12, 8), float("nan"), dtype=torch.float64)
    assert _classify(z, loss_end=float("nan"))[0] == "diverged"
    fails = failed_to_train(np.array([1.0, 1.4, 1.6, np.nan]), np.array([11.0] * 4), 1.0)
    assert fails.tolist() == [False, False, True, True]  # 96 %, 94 % of the decrease; NaN fails
