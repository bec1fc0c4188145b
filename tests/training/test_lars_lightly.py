"""training.optim.LARS against lightly.utils.lars.LARS (lightly 1.6.0, from PyTorch Lightning Bolts).

lightly is not a dependency of the package; the test command installs it beside the pinned torch with
    pip install --no-deps lightly==1.6.0
(its lightly.utils.lars needs nothing else). The tests skip only where lightly is not installed at all.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from tests.helpers import import_lightly


@pytest.fixture(scope="module")
def lightly_lars():
    return import_lightly("lightly.utils.lars").LARS


# LARS: training.optim.LARS against lightly.utils.lars.LARS (lightly 1.6.0, from PyTorch Lightning Bolts).
# For a tensor p with gradient g, weight decay wd, trust coefficient eta, both step with the decayed gradient
# d = g + wd p scaled by a trust ratio, PyTorch-SGD momentum (buf = d, then m buf + d) and p -= lr buf; they
# differ in two conventions:
#   trust ratio:   ours   eta ||p|| / (||g + wd p|| + eps)    (SimCLR's LARS)
#                  lightly eta ||p|| / (||g|| + wd ||p|| + eps) (You et al. 2017, Alg. 1)
#   exclusion:     ours: a group's lars_adaptation flag (False: no ratio; weight decay as the group says);
#                  lightly: weight_decay == 0 (no ratio, no decay), and g == 0 or p == 0 (no ratio, no decay).
# They coincide where g is a positive multiple of p (||g + wd p|| = ||g|| + wd ||p||) and for groups without
# weight decay or adaptation; training.optim.param_groups (wd > 0 on adapted tensors, 0 on the others)
# makes the two exclusion rules pick the same tensors.

LARS_LR, LARS_MOMENTUM, LARS_ETA, LARS_EPS = 0.7, 0.9, 0.02, 1e-8


def _norm(x: torch.Tensor) -> float:
    return math.sqrt(float((x * x).sum()))


def _max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|."""
    return float((a - b).abs().max()) / float(b.abs().max())


def test_lars_agrees_with_lightly_where_the_conventions_coincide(lightly_lars):
    from training.optim import LARS, param_groups

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.BatchNorm1d(5), torch.nn.Linear(5, 3)).double()
    twin = copy.deepcopy(model)
    ours = LARS(param_groups(model, 0.1), lr=LARS_LR, momentum=LARS_MOMENTUM, trust_coefficient=LARS_ETA,
                eps=LARS_EPS)
    theirs = lightly_lars(param_groups(twin, 0.1), lr=LARS_LR, momentum=LARS_MOMENTUM,
                          trust_coefficient=LARS_ETA, eps=LARS_EPS)
    assert [g["weight_decay"] > 0 for g in ours.param_groups] == [g["lars_adaptation"] for g in ours.param_groups]
    initial = [p.detach().clone() for p in model.parameters()]
    gen = torch.Generator().manual_seed(1)
    for step in range(6):
        for (name, p), q in zip(model.named_parameters(), twin.parameters()):
            if p.ndim >= 2:  # adapted: a gradient along +p makes the two trust-ratio denominators equal
                scale = 0.05 + float(torch.rand((), generator=gen, dtype=torch.float64))
                p.grad, q.grad = scale * p.detach(), scale * q.detach()
            else:  # excluded by both rules (wd = 0): plain momentum SGD
                p.grad = torch.randn(p.shape, generator=gen, dtype=torch.float64)
                q.grad = p.grad.clone()
        ours.step()
        theirs.step()
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert _max_rel_diff(q.detach(), p.detach()) <= 1e-13, name
    for (name, p), p0 in zip(model.named_parameters(), initial):  # every tensor moved: not two idle optimisers
        assert _max_rel_diff(p0, p.detach()) > 1e-3, name


def _lars_case(case: str):
    """(p, g, group settings of ours, weight decay of lightly, our step, lightly's step), steps by hand."""
    gen = torch.Generator().manual_seed(5)
    p = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    g = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    eta, eps = LARS_ETA, LARS_EPS
    if case == "trust-ratio denominator":  # wd > 0, adapted by both
        wd = 0.3
        d = g + wd * p
        ours = eta * _norm(p) / (_norm(d) + eps) * d
        theirs = eta * _norm(p) / (_norm(g) + wd * _norm(p) + eps) * d
        return p, g, {"weight_decay": wd, "lars_adaptation": True}, wd, ours, theirs
    if case == "adapted without weight decay":  # ours adapts by the flag; lightly excludes wd == 0
        ours = eta * _norm(p) / (_norm(g) + eps) * g
        return p, g, {"weight_decay": 0.0, "lars_adaptation": True}, 0.0, ours, g.clone()
    if case == "excluded with weight decay":  # ours: decay, no ratio; lightly adapts wd > 0
        wd = 0.3
        d = g + wd * p
        theirs = eta * _norm(p) / (_norm(g) + wd * _norm(p) + eps) * d
        return p, g, {"weight_decay": wd, "lars_adaptation": False}, wd, d, theirs
    if case == "zero gradient":  # ours decays p with the ratio of d = wd p; lightly skips ratio and decay
        wd = 0.3
        d = wd * p
        ours = eta * _norm(p) / (_norm(d) + eps) * d
        return p, torch.zeros_like(g), {"weight_decay": wd, "lars_adaptation": True}, wd, ours, torch.zeros_like(g)
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case", ["trust-ratio denominator", "adapted without weight decay", "excluded with weight decay", "zero gradient"]
)
def test_lars_differs_from_lightly_as_documented(lightly_lars, case):
    from training.optim import LARS

    p0, g, group, lightly_wd, our_step, their_step = _lars_case(case)
    a, b = torch.nn.Parameter(p0.clone()), torch.nn.Parameter(p0.clone())
    a.grad, b.grad = g.clone(), g.clone()
    LARS([{"params": [a], **group}], lr=LARS_LR, momentum=LARS_MOMENTUM, trust_coefficient=LARS_ETA,
         eps=LARS_EPS).step()
    lightly_lars([b], lr=LARS_LR, momentum=LARS_MOMENTUM, weight_decay=lightly_wd, trust_coefficient=LARS_ETA,
                 eps=LARS_EPS).step()
    # each follows its own formula (the first step: buf = the scaled direction, p -= lr buf) ...
    assert _max_rel_diff(a.detach(), p0 - LARS_LR * our_step) <= 1e-13
    assert _max_rel_diff(b.detach(), p0 - LARS_LR * their_step) <= 1e-13
    # ... and the two differ by the predicted amount, far above float64 rounding
    predicted = LARS_LR * (their_step - our_step)
    assert _max_rel_diff(a.detach() - b.detach(), predicted) <= 1e-9
    assert float(predicted.abs().max()) > 1e-6 * float(p0.abs().max())
