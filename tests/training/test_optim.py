"""Tests of training.optim: LARS against steps computed by hand in plain Python, the parameter groups,
and the warm-up + cosine schedule against a loop-free re-derivation.

The references are Python floats and ``math``; they share no code with training.optim.
"""

from __future__ import annotations

import copy
import doctest
import io
import math

import pytest
import torch
from torch import nn

from training import optim as O
from training.optim import LARS, make_scheduler, param_groups, warmup_cosine

# ------------------------------------------------------------------------------------------
# Plain-Python reference for one LARS step
# ------------------------------------------------------------------------------------------


def _norm(v: list[float]) -> float:
    return math.sqrt(sum(a * a for a in v))


def _ref_step(p, g, buf, *, lr, momentum, wd, eta, eps, adapt):
    """One step of the documented formula with Python floats; returns (new p, new buf)."""
    d = [gi + wd * pi for gi, pi in zip(g, p)]
    pn, dn = _norm(p), _norm(d)
    if adapt and pn > 0 and dn > 0:
        ratio = eta * pn / (dn + eps)
        d = [ratio * di for di in d]
    buf = list(d) if buf is None else [momentum * bi + di for bi, di in zip(buf, d)]
    return [pi - lr * bi for pi, bi in zip(p, buf)], buf


def _param(values) -> nn.Parameter:
    return nn.Parameter(torch.tensor(values, dtype=torch.float64))


P0 = [3.0, -4.0, 1.0]
G1 = [0.5, 0.25, -2.0]
G2 = [-1.0, 0.75, 0.5]


def test_lars_two_steps_adapted_group_hand_computed():
    # Hand arithmetic, step 1 (wd = 0.1, eta = 0.5, eps = 0.25 -- large so that its place matters):
    #   d1 = G1 + 0.1 * P0 = (0.8, -0.15, -1.9); ||P0|| = sqrt(26); ||d1|| = sqrt(0.64 + 0.0225 + 3.61)
    #   ratio1 = 0.5 * sqrt(26) / (||d1|| + 0.25); buf1 = ratio1 * d1; p1 = P0 - 0.2 * buf1
    # Step 2 with lr changed to 0.05: buf2 = 0.9 * buf1 + ratio2 * d2; p2 = p1 - 0.05 * buf2.
    d1 = [0.8, -0.15, -1.9]
    ratio1 = 0.5 * math.sqrt(26.0) / (math.sqrt(0.64 + 0.0225 + 3.61) + 0.25)
    buf1 = [ratio1 * v for v in d1]
    p1 = [a - 0.2 * b for a, b in zip(P0, buf1)]
    d2 = [g + 0.1 * a for g, a in zip(G2, p1)]
    ratio2 = 0.5 * _norm(p1) / (_norm(d2) + 0.25)
    buf2 = [0.9 * b + ratio2 * v for b, v in zip(buf1, d2)]
    p2 = [a - 0.05 * b for a, b in zip(p1, buf2)]

    w = _param(P0)
    opt = LARS([w], lr=0.2, momentum=0.9, weight_decay=0.1, trust_coefficient=0.5, eps=0.25)
    w.grad = torch.tensor(G1, dtype=torch.float64)
    opt.step()
    assert w.detach().tolist() == pytest.approx(p1, rel=1e-12, abs=1e-12)
    assert opt.state[w]["momentum_buffer"].tolist() == pytest.approx(buf1, rel=1e-12, abs=1e-12)
    opt.param_groups[0]["lr"] = 0.05  # lr multiplies the buffer (PyTorch SGD convention), not inside it
    w.grad = torch.tensor(G2, dtype=torch.float64)
    opt.step()
    assert w.detach().tolist() == pytest.approx(p2, rel=1e-12, abs=1e-12)
    # the gradient itself is left untouched
    assert w.grad.tolist() == G2


def test_lars_eps_sits_in_the_denominator_only():
    # eps = 0.25 against eps = 0 must change the step exactly as ||d|| + eps predicts.
    out = {}
    for eps in (0.0, 0.25):
        w = _param(P0)
        opt = LARS([w], lr=1.0, momentum=0.9, weight_decay=0.0, trust_coefficient=1.0, eps=eps)
        w.grad = torch.tensor(G1, dtype=torch.float64)
        opt.step()
        out[eps] = [a - b for a, b in zip(P0, w.detach().tolist())]  # = ratio * G1
    gn = _norm(G1)
    assert out[0.0] == pytest.approx([math.sqrt(26.0) / gn * g for g in G1], rel=1e-12)
    assert out[0.25] == pytest.approx([math.sqrt(26.0) / (gn + 0.25) * g for g in G1], rel=1e-12)


def test_lars_excluded_group_is_plain_momentum_sgd():
    # lars_adaptation False, weight_decay 0: buf1 = G1, p1 = P0 - lr*G1; buf2 = m*G1 + G2, p2 = p1 - lr2*buf2
    w = _param(P0)
    opt = LARS([{"params": [w], "weight_decay": 0.0, "lars_adaptation": False}], lr=0.3, momentum=0.8,
               weight_decay=0.5, trust_coefficient=1e-3)
    w.grad = torch.tensor(G1, dtype=torch.float64)
    opt.step()
    p1 = [3.0 - 0.3 * 0.5, -4.0 - 0.3 * 0.25, 1.0 + 0.3 * 2.0]
    assert w.detach().tolist() == pytest.approx(p1, rel=1e-12)
    opt.param_groups[0]["lr"] = 0.1
    w.grad = torch.tensor(G2, dtype=torch.float64)
    opt.step()
    buf2 = [0.8 * 0.5 - 1.0, 0.8 * 0.25 + 0.75, 0.8 * -2.0 + 0.5]
    p2 = [a - 0.1 * b for a, b in zip(p1, buf2)]
    assert w.detach().tolist() == pytest.approx(p2, rel=1e-12)


def test_lars_mixed_groups_match_reference_over_several_steps():
    g = torch.Generator().manual_seed(0)
    a = nn.Parameter(torch.randn(4, 3, generator=g, dtype=torch.float64))
    b = nn.Parameter(torch.randn(3, generator=g, dtype=torch.float64))
    opt = LARS([{"params": [a]}, {"params": [b], "weight_decay": 0.0, "lars_adaptation": False}],
               lr=0.7, momentum=0.9, weight_decay=1e-2, trust_coefficient=1e-2, eps=1e-3)
    ref_a, ref_b = a.detach().flatten().tolist(), b.detach().tolist()
    buf_a = buf_b = None
    for step in range(4):
        ga = torch.randn(4, 3, generator=g, dtype=torch.float64)
        gb = torch.randn(3, generator=g, dtype=torch.float64)
        a.grad, b.grad = ga.clone(), gb.clone()
        lr = 0.7 / (step + 1)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        ref_a, buf_a = _ref_step(ref_a, ga.flatten().tolist(), buf_a, lr=lr, momentum=0.9, wd=1e-2,
                                 eta=1e-2, eps=1e-3, adapt=True)
        ref_b, buf_b = _ref_step(ref_b, gb.tolist(), buf_b, lr=lr, momentum=0.9, wd=0.0, eta=1e-2,
                                 eps=1e-3, adapt=False)
    assert a.detach().flatten().tolist() == pytest.approx(ref_a, rel=1e-10, abs=1e-12)
    assert b.detach().tolist() == pytest.approx(ref_b, rel=1e-10, abs=1e-12)


def test_lars_without_adaptation_equals_torch_sgd():
    """An independent implementation: torch.optim.SGD with the same momentum and a changing lr."""
    g = torch.Generator().manual_seed(1)
    init = torch.randn(5, 2, generator=g, dtype=torch.float64)
    w1, w2 = nn.Parameter(init.clone()), nn.Parameter(init.clone())
    lars = LARS([{"params": [w1], "lars_adaptation": False}], lr=0.1, momentum=0.9, weight_decay=1e-3)
    sgd = torch.optim.SGD([w2], lr=0.1, momentum=0.9, weight_decay=1e-3)
    for step in range(5):
        grad = torch.randn(5, 2, generator=g, dtype=torch.float64)
        w1.grad, w2.grad = grad.clone(), grad.clone()
        for opt in (lars, sgd):
            opt.param_groups[0]["lr"] = 0.1 * (1 + step)
            opt.step()
    torch.testing.assert_close(w1, w2, rtol=1e-13, atol=1e-13)


def test_lars_zero_parameter_takes_trust_ratio_one():
    # ||p|| = 0: ratio 1, so the step is -lr * (g + wd * 0) = -lr * g (a ratio of 0 would freeze p for ever)
    w = _param([0.0, 0.0])
    opt = LARS([w], lr=0.5, weight_decay=0.3, trust_coefficient=1e-3)
    w.grad = torch.tensor([2.0, -1.0], dtype=torch.float64)
    opt.step()
    assert w.detach().tolist() == [-1.0, 0.5]


def test_lars_zero_gradient_takes_trust_ratio_one():
    # g = 0 and wd = 0: d = 0, ratio 1 (no 0/0), p unchanged and finite, the buffer is zero
    w = _param([1.0, 2.0])
    opt = LARS([w], lr=0.5, weight_decay=0.0)
    w.grad = torch.zeros(2, dtype=torch.float64)
    opt.step()
    assert w.detach().tolist() == [1.0, 2.0]
    assert opt.state[w]["momentum_buffer"].tolist() == [0.0, 0.0]
    # g = 0 but wd > 0: d = wd * p is adapted: step = lr * eta * ||p|| / (wd ||p|| + eps) * wd * p
    w = _param([3.0, 4.0])
    opt = LARS([w], lr=2.0, weight_decay=0.1, trust_coefficient=0.01, eps=0.5)
    w.grad = torch.zeros(2, dtype=torch.float64)
    opt.step()
    ratio = 0.01 * 5.0 / (0.1 * 5.0 + 0.5)
    assert w.detach().tolist() == pytest.approx([3.0 - 2.0 * ratio * 0.3, 4.0 - 2.0 * ratio * 0.4], rel=1e-12)


def test_lars_skips_parameters_without_grad_and_returns_closure_loss():
    w, v = _param([1.0]), _param([2.0])
    opt = LARS([w, v], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (w * 3.0).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert float(loss.detach()) == 3.0
    assert v.detach().tolist() == [2.0] and v not in opt.state
    assert w in opt.state and w.detach().tolist() != [1.0]


def test_lars_state_dict_round_trip_gives_the_same_next_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2)).double()
    opt = LARS(param_groups(model, 1e-4), lr=0.2)
    x = torch.randn(8, 4, dtype=torch.float64)

    def step(m, o):
        o.zero_grad()
        m(x).square().mean().backward()
        o.step()

    for _ in range(3):
        step(model, opt)
    clone = copy.deepcopy(model)
    opt2 = LARS(param_groups(clone, 0.5), lr=9.0, momentum=0.1)  # different settings, overwritten by load
    saved = io.BytesIO()  # through torch.save / torch.load, as a checkpoint does (no shared buffers)
    torch.save(opt.state_dict(), saved)
    saved.seek(0)
    opt2.load_state_dict(torch.load(saved))
    assert [g["lars_adaptation"] for g in opt2.param_groups] == [True, False]
    step(model, opt)
    step(clone, opt2)
    for p, q in zip(model.parameters(), clone.parameters()):
        assert torch.equal(p, q)
    # a freshly built optimiser (no momentum) would have taken a different step
    clone2 = copy.deepcopy(model)
    step(clone2, LARS(param_groups(clone2, 1e-4), lr=0.2))
    step(model, opt)
    assert not all(torch.equal(p, q) for p, q in zip(model.parameters(), clone2.parameters()))


def test_lars_reduces_a_least_squares_loss():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(32, 6, generator=g)
    target = a @ torch.randn(6, 1, generator=g)
    w = nn.Parameter(torch.randn(6, 1, generator=g))
    opt = LARS([w], lr=5.0, trust_coefficient=0.02, weight_decay=0.0)
    loss0 = float((a @ w.detach() - target).square().mean())
    for _ in range(200):
        opt.zero_grad()
        (a @ w - target).square().mean().backward()
        opt.step()
    assert float((a @ w.detach() - target).square().mean()) < 0.01 * loss0


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"lr": -0.1}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"lr": 0.1, "momentum": 1.0}, "momentum"),
        ({"lr": 0.1, "momentum": -0.5}, "momentum"),
        ({"lr": 0.1, "weight_decay": -1e-6}, "weight_decay"),
        ({"lr": 0.1, "trust_coefficient": 0.0}, "trust_coefficient"),
        ({"lr": 0.1, "eps": -1e-8}, "eps"),
        ({"lr": True}, "lr"),
    ],
)
def test_lars_bad_hyper_parameters_raise(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} "):
        LARS([_param([1.0])], **kwargs)


def test_lars_bad_group_values_raise():
    with pytest.raises(ValueError, match=r"^lars_adaptation \(param group 0\)"):
        LARS([{"params": [_param([1.0])], "lars_adaptation": "yes"}], lr=0.1)
    with pytest.raises(ValueError, match=r"^momentum \(param group 1\)"):
        LARS([{"params": [_param([1.0])]}, {"params": [_param([2.0])], "momentum": 2.0}], lr=0.1)


# ------------------------------------------------------------------------------------------
# param_groups
# ------------------------------------------------------------------------------------------


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=True)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 5)
        self.frozen = nn.Linear(5, 5)
        self.head = nn.Linear(5, 4)
        self.tied = self.fc  # the same module (and parameters) reachable twice
        for p in self.frozen.parameters():
            p.requires_grad_(False)

    def forward(self, x):
        h = self.bn2(self.conv2(torch.relu(self.bn(self.conv(x))))).mean((2, 3))
        return self.head(self.frozen(self.fc(h)))


def test_param_groups_split_and_cover_each_trainable_parameter_once():
    net = _Net()
    groups = param_groups(net, weight_decay=1e-6)
    assert [(g["weight_decay"], g["lars_adaptation"]) for g in groups] == [(1e-6, True), (0.0, False)]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert set(ids) == trainable
    frozen = {id(p) for p in net.frozen.parameters()}
    assert not frozen & set(ids)
    excluded = {id(p) for p in groups[1]["params"]}
    expected_excluded = {id(p) for p in (net.conv.bias, net.bn.weight, net.bn.bias, net.bn2.weight,
                                         net.bn2.bias, net.fc.bias, net.head.bias)}
    assert excluded == expected_excluded
    adapted = {id(p) for p in groups[0]["params"]}
    assert adapted == {id(net.conv.weight), id(net.conv2.weight), id(net.fc.weight), id(net.head.weight)}
    # the groups drive a real step of the conv + BN + linear model
    opt = LARS(groups, lr=0.1)
    net(torch.randn(2, 3, 6, 6)).sum().backward()
    opt.step()
    assert set(map(id, opt.state)) == trainable


def test_param_groups_drop_empty_groups_and_validate():
    only_bn = nn.BatchNorm1d(3)
    groups = param_groups(only_bn, 0.1)
    assert len(groups) == 1 and groups[0]["lars_adaptation"] is False and groups[0]["weight_decay"] == 0.0
    frozen = nn.Linear(2, 2).requires_grad_(False)
    assert param_groups(frozen, 0.1) == []
    with pytest.raises(ValueError, match="^weight_decay"):
        param_groups(nn.Linear(2, 2), -1.0)
    with pytest.raises(ValueError, match="^model"):
        param_groups([nn.Parameter(torch.ones(2))], 0.0)


# ------------------------------------------------------------------------------------------
# warmup_cosine and make_scheduler
# ------------------------------------------------------------------------------------------


def _ref_multiplier(step: int, total: int, warm: int) -> float:
    """Independent re-statement: linear ramp 1/warm, 2/warm, ..., 1; then a half cosine period to 0."""
    if step < warm:
        return (step + 1) / warm
    span = total - warm
    angle = math.pi * (step - warm) / span if span > 0 else 0.0
    return (1.0 + math.cos(angle)) / 2.0


def test_warmup_cosine_landmarks():
    total, warm = 110, 10
    assert warmup_cosine(0, total, warm) == pytest.approx(0.1)
    assert warmup_cosine(warm - 1, total, warm) == pytest.approx(1.0)
    assert warmup_cosine(warm, total, warm) == pytest.approx(1.0)
    assert warmup_cosine(warm + 50, total, warm) == pytest.approx(0.5)
    assert warmup_cosine(total, total, warm) == pytest.approx(0.0, abs=1e-15)
    assert 0 < warmup_cosine(total - 1, total, warm) < 1e-3
    assert warmup_cosine(total + 7, total, warm) == pytest.approx(0.0, abs=1e-15)  # clamped
    # no warm-up: starts at 1; warm-up only: ends at 1 and stays
    assert warmup_cosine(0, 20, 0) == 1.0
    assert warmup_cosine(19, 20, 20) == 1.0 and warmup_cosine(25, 20, 20) == 1.0


def test_warmup_cosine_is_monotone_and_matches_reference():
    total, warm = 57, 13
    values = [warmup_cosine(s, total, warm) for s in range(total + 1)]
    for s, v in enumerate(values):
        assert v == pytest.approx(_ref_multiplier(s, total, warm), rel=1e-14, abs=1e-15)
    ramp, decay = values[:warm], values[warm:]
    assert all(a < b for a, b in zip(ramp, ramp[1:]))
    assert all(a > b for a, b in zip(decay, decay[1:]))
    assert all(0 < v <= 1 for v in values[:total])


def test_make_scheduler_drives_lars_learning_rates():
    total, warm, batch = 40, 8, 512
    base = 0.3 * batch / 256  # CLOP Sec. 5 / SimCLR: 0.3 x batch size / 256
    net = _Net()
    opt = LARS(param_groups(net, 1e-6), lr=base)
    sched = make_scheduler(opt, total_steps=total, warmup_steps=warm)
    seen = []
    for _ in range(total):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()  # no grads: a no-op step, keeps LambdaLR's order check quiet
        sched.step()
    for s, lrs in enumerate(seen):
        assert lrs == pytest.approx([base * _ref_multiplier(s, total, warm)] * 2, rel=1e-12)
    assert seen[0][0] == pytest.approx(base / warm)
    assert seen[warm - 1][0] == pytest.approx(base)
    assert seen[warm + (total - warm) // 2][0] == pytest.approx(base / 2)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-15)  # after the last step
    # the scheduler state round-trips
    sched2 = make_scheduler(LARS(param_groups(_Net(), 1e-6), lr=base), total, warm)
    sched2.load_state_dict(sched.state_dict())
    assert sched2.last_epoch == total


@pytest.mark.parametrize(
    "args, name",
    [
        ((0, 0, 0), "total_steps"),
        ((0, 10.0, 1), "total_steps"),
        ((0, 10, -1), "warmup_steps"),
        ((0, 10, 11), "warmup_steps"),
        ((-1, 10, 2), "step"),
        ((1.5, 10, 2), "step"),
    ],
)
def test_warmup_cosine_bad_arguments_raise(args, name):
    with pytest.raises(ValueError, match=rf"^{name} "):
        warmup_cosine(*args)


def test_make_scheduler_bad_arguments_raise():
    opt = LARS([_param([1.0])], lr=0.1)
    with pytest.raises(ValueError, match="^total_steps"):
        make_scheduler(opt, 0, 0)
    with pytest.raises(ValueError, match="^warmup_steps"):
        make_scheduler(opt, 5, 6)
    with pytest.raises(ValueError, match="^optimizer"):
        make_scheduler("sgd", 5, 1)


def test_doctests():
    result = doctest.testmod(O, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0
