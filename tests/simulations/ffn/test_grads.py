"""Tests of the closed-form gradients of the fused FFN training (simulations.ffn.grads, the torch Network of
simulations.ffn.fused, and the native kernel's float64 build) against autograd through clop.losses, in
float64: every base loss of Table 5, with and without the CLOP term of Eq. (4), and Adam against
torch.optim.Adam."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clop import losses as clop_losses
from simulations.ffn import autograd, fused, grads, native
from simulations.ffn import train as ft

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64
REL = 1e-12
LOSSES = ("infonce", "dcl", "vicreg", "barlowtwins")
FUNCTIONS = {"infonce": clop_losses.info_nce, "dcl": clop_losses.dcl, "vicreg": clop_losses.vicreg,
             "barlowtwins": clop_losses.barlow_twins}


def _case(seed: int, s_: int = 3, n: int = 10, d: int = 3, scale: float = 1.0):
    """z: (S, 2N, D), labels: (S, N) with -1 = unlabeled, prototypes: (S, 3, D) orthonormal, all float64."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(s_, 2 * n, d, generator=g, dtype=F64) * scale
    labels = torch.randint(-1, 3, (s_, n), generator=g)
    labels[:, 0] = 1  # at least one labeled point per run
    protos = torch.stack([torch.linalg.qr(torch.randn(d, 3, generator=g, dtype=F64))[0].T for _ in range(s_)])
    return z, labels, protos


def _row_protos(labels: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """(S, 2N, D): each view's rows get the prototype of their point's label (zero rows for unlabeled points)."""
    rows = fused.row_prototypes(labels, protos)
    return torch.cat([rows, rows], dim=1)


def _autograd(name: str, z: torch.Tensor, labels: torch.Tensor | None, protos: torch.Tensor | None):
    """(d total / dz, per-run base losses) by autograd through clop.losses; total = sum over runs of the base
    loss, plus the CLOP term of both views (clop_term, cosine, lambda = 1, sum) when labels are given."""
    z = z.clone().requires_grad_(True)
    n = z.shape[1] // 2
    values = torch.stack([FUNCTIONS[name](z[s, :n], z[s, n:], **grads.LOSS_PARAMS[name]) for s in range(z.shape[0])])
    total = values.sum()
    if labels is not None:
        for s in range(z.shape[0]):
            both = torch.cat([labels[s], labels[s]])
            total = total + clop_losses.clop_term(z[s], both, protos[s], similarity="cosine", lam=grads.CLOP_LAMBDA,
                                                  reduction="sum")
    (g,) = torch.autograd.grad(total, z)
    return g, values.detach()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("with_clop", [False, True])
@pytest.mark.parametrize("scale", [1.0, 0.3])  # 0.3: VICReg's variance hinge is active in every dimension
def test_closed_form_loss_gradients_equal_autograd(name, with_clop, scale):
    z, labels, protos = _case(1, scale=scale)
    want_g, want_v = _autograd(name, z, labels if with_clop else None, protos)
    got_g, got_v = grads.loss_grad(name, z, _row_protos(labels, protos) if with_clop else None, with_value=True)
    assert _rel(got_g, want_g) < REL, (name, with_clop, _rel(got_g, want_g))
    torch.testing.assert_close(got_v, want_v, rtol=REL, atol=0)
    if name == "vicreg" and scale == 0.3:  # the hinge's branch is exercised
        assert bool((torch.sqrt(z[:, :10].var(dim=1) + 1e-4) < 1).all())


def test_clop_term_gradient_and_value_equal_autograd():
    z, labels, protos = _case(2)
    zz = z.clone().requires_grad_(True)
    total = sum(clop_losses.clop_term(zz[s], torch.cat([labels[s], labels[s]]), protos[s], similarity="cosine",
                                      lam=grads.CLOP_LAMBDA, reduction="sum") for s in range(3))
    (want,) = torch.autograd.grad(total, zz)
    u, n, nc = grads.unit_rows(z)
    gu, value = grads.clop_grad(u, _row_protos(labels, protos), with_value=True)
    assert _rel(grads.project(gu, u, n, nc), want) < REL
    assert abs(float(value.sum()) - float(total.detach())) < REL * abs(float(total.detach()))


def test_projection_below_the_norm_floor_matches_the_clamp():
    """Rows with ||z|| < 1e-6 are divided by the floor, as clop.losses' normalisation does: their gradient is the
    upstream one divided by the floor, with no projection."""
    z, labels, protos = _case(3)
    z[0, 2] = 1e-9
    z[1, 5] = 0.0
    want, _ = _autograd("infonce", z, labels, protos)
    got, _ = grads.loss_grad("infonce", z, _row_protos(labels, protos))
    assert _rel(got, want) < REL


@pytest.mark.parametrize("name", LOSSES)
def test_fused_network_backward_equals_autograd_through_the_network(name):
    """The parameter gradient of the torch Network (six batched products) == autograd through train.ffn."""
    seeds = (0, 1)
    params = [p.double() for p in ft.init_params(seeds)]
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 20, 3, generator=g, dtype=F64)
    labels = torch.randint(-1, 3, (2, 10), generator=g)
    protos = _case(4, s_=2)[2]
    leaves = [p.clone().requires_grad_(True) for p in params]
    z = autograd.ffn(leaves, x)
    gz, _ = _autograd(name, z.detach(), labels, protos)
    want = torch.autograd.grad(z, leaves, gz)
    net = fused.Network(params, lr=1e-2)
    h1, h2, zz = net.forward(x)
    torch.testing.assert_close(zz, z.detach(), rtol=1e-14, atol=1e-14)
    got_g, _ = grads.loss_grad(name, zz, _row_protos(labels, protos))
    flat = net.backward(x, h1, h2, got_g)
    got = torch.split(flat, [int(np.prod(p.shape[1:])) for p in params], dim=1)
    for a, b in zip(got, want):
        assert _rel(a.reshape(b.shape), b) < REL


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_adam_by_hand_is_torch_adam_bit_for_bit(dtype):
    params = [p.to(dtype) for p in ft.init_params((0, 1))]
    net = fused.Network(params, lr=1e-2)
    leaves = [p.clone().requires_grad_(True) for p in params]
    opt = torch.optim.Adam(leaves, lr=1e-2, foreach=False)
    g = torch.Generator().manual_seed(5)
    for _ in range(7):
        grad = [torch.randn(p.shape, generator=g, dtype=dtype) for p in params]
        net.adam_step(torch.cat([q.reshape(2, -1) for q in grad], dim=1))
        for leaf, q in zip(leaves, grad):
            leaf.grad = q
        opt.step()
    for view, leaf in zip(net.views, leaves):
        assert torch.equal(view, leaf.detach())


# ----------------------------------------------------------------------------------------- the native kernel


@pytest.fixture(scope="module")
def kernel64():
    """The float64 build of the native kernel (skips where it cannot be built)."""
    try:
        return native.loaded(F64)
    except RuntimeError as exc:
        pytest.skip(f"native FFN kernel unavailable here: {exc}")


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("with_clop", [False, True])
@pytest.mark.parametrize("scale", [1.0, 0.3])
def test_native_loss_gradients_equal_autograd(kernel64, name, with_clop, scale):
    z, labels, protos = _case(6, s_=1, n=50, scale=scale)
    want_g, want_v = _autograd(name, z, labels if with_clop else None, protos)
    rows = np.ascontiguousarray(_row_protos(labels, protos)[0].numpy()) if with_clop else None
    zz = np.ascontiguousarray(z[0].numpy())
    g = np.zeros_like(zz)
    scratch = np.zeros(int(kernel64.ffn_scratch_size(50, 3, 16)))
    settings = native.loss_settings(name, grads.LOSS_PARAMS[name])
    value = kernel64.ffn_loss_grad(100, 3, zz.ctypes.data, None if rows is None else rows.ctypes.data,
                                   native.LOSS_IDS[name], settings.ctypes.data, grads.CLOP_LAMBDA, g.ctypes.data,
                                   scratch.ctypes.data)
    assert _rel(torch.from_numpy(g), want_g[0]) < REL
    assert abs(value - float(want_v[0])) < REL * abs(float(want_v[0]))


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("hidden", [32, 5])  # 5: padded to the kernel's lanes with zero weights
def test_native_parameter_gradient_equals_autograd_through_the_network(kernel64, name, hidden):
    params = [p.double() for p in ft.init_params((7,), hidden=hidden)]
    g = torch.Generator().manual_seed(7)
    x = torch.randn(1, 40, 3, generator=g, dtype=F64)
    labels = torch.randint(-1, 3, (1, 20), generator=g)
    protos = _case(7, s_=1)[2]
    leaves = [p.clone().requires_grad_(True) for p in params]
    z = autograd.ffn(leaves, x)
    gz, _ = _autograd(name, z.detach(), labels, protos)
    want = torch.autograd.grad(z, leaves, gz)
    flat = native.pack(kernel64, params)
    grad = np.zeros_like(flat)
    hp = -(-hidden // kernel64.ffn_lanes()) * kernel64.ffn_lanes()
    scratch = np.zeros(int(kernel64.ffn_scratch_size(20, 3, hp)))
    rows = np.ascontiguousarray(_row_protos(labels, protos)[0].numpy())
    xs = np.ascontiguousarray(x[0].numpy())
    kernel64.ffn_param_grad(40, 3, hp, flat.ctypes.data, xs.ctypes.data, rows.ctypes.data, native.LOSS_IDS[name],
                            native.loss_settings(name, grads.LOSS_PARAMS[name]).ctypes.data, grads.CLOP_LAMBDA,
                            grad.ctypes.data, scratch.ctypes.data)
    got = native.unpack(kernel64, grad, 3, hidden)
    for a, b in zip(got, want):
        assert _rel(a, b) < REL
    padded = torch.from_numpy(grad)
    assert float(padded.abs().sum()) == pytest.approx(sum(float(b.abs().sum()) for b in want), rel=1e-12)
