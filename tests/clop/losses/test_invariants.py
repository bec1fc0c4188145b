"""Invariants of the losses: gradients at collapse and at zero rows, the CLOP term's reductions and its
unlabeled rows, and every gradient against finite differences (float64 gradcheck)."""

from __future__ import annotations

import math

import pytest
import torch

import clop.losses as L
from clop import prototypes as P
from clop.losses import common
from tests.clop.losses.references import (
    SEEDS,
    randn64,
    two_views,
)

# ------------------------------------------------------------------------------------------
# Invariants
# ------------------------------------------------------------------------------------------


def _grads(fn, z1, z2):
    z1 = z1.clone().requires_grad_(True)
    z2 = z2.clone().requires_grad_(True)
    fn(z1, z2).backward()
    return torch.cat([z1.grad, z2.grad])


_COSINE_LOSSES = {
    "infonce": lambda a, b: L.info_nce(a, b),
    "dcl": lambda a, b: L.dcl(a, b),
    "supcon": lambda a, b: L.supcon(a, b, torch.tensor([0, 1, 0, -1, 2])),
}


@pytest.mark.parametrize("name", sorted(_COSINE_LOSSES))
@pytest.mark.parametrize("seed", SEEDS)
def test_gradient_vanishes_at_collapse(name, seed):
    """Lemma 1: equal or co-linear (+-z) embeddings are stationary points of cosine losses."""
    fn = _COSINE_LOSSES[name]
    v = randn64(seed, 4)
    equal = v.repeat(5, 1)
    assert float(_grads(fn, equal, equal).abs().max()) < 1e-10
    g = torch.Generator().manual_seed(seed)
    s1 = torch.where(torch.rand(5, generator=g) < 0.5, -1.0, 1.0) * (0.5 + torch.rand(5, generator=g))
    s2 = torch.where(torch.rand(5, generator=g) < 0.5, -1.0, 1.0) * (0.5 + torch.rand(5, generator=g))
    colinear1, colinear2 = s1.double()[:, None] * v, s2.double()[:, None] * v
    assert float(_grads(fn, colinear1, colinear2).abs().max()) < 1e-10
    z1, z2 = two_views(seed)
    assert float(_grads(fn, z1, z2).norm()) > 1e-3


@pytest.mark.parametrize("similarity", L.SIMILARITIES)
@pytest.mark.parametrize("kind", ["orthonormal", "simplex_etf"])
def test_clop_term_zero_on_prototypes_positive_elsewhere(similarity, kind):
    make = P.orthonormal if kind == "orthonormal" else P.simplex_etf
    c = make(4, 6, seed=1, dtype=torch.float64, device="cpu")
    y = torch.tensor([0, 1, 2, 3, 1, -1])
    z = c[y.clamp(min=0)] * torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0, 1.0], dtype=torch.float64)[:, None]
    z[5] = randn64(0, 6)  # an unlabeled sample anywhere
    assert abs(float(L.clop_term(z, y, c, similarity=similarity))) < 1e-12
    z_off = z + 0.1 * randn64(1, 6, 6)
    assert float(L.clop_term(z_off, y, c, similarity=similarity)) > 1e-3


@pytest.mark.parametrize("similarity", L.SIMILARITIES)
@pytest.mark.parametrize("reduction", L.REDUCTIONS)
def test_clop_term_no_labeled_sample_is_zero_with_zero_grad(similarity, reduction):
    z = randn64(0, 4, 3).requires_grad_(True)
    c = P.orthonormal(2, 3, seed=0, dtype=torch.float64, device="cpu")
    out = L.clop_term(z, torch.full((4,), -1), c, similarity=similarity, reduction=reduction)
    assert out.dim() == 0 and float(out.detach()) == 0.0 and out.requires_grad
    out.backward()
    assert z.grad is not None and torch.equal(z.grad, torch.zeros_like(z))


@pytest.mark.parametrize("similarity", L.SIMILARITIES)
def test_clop_term_gradient_finite_at_prototype(similarity):
    """z / ||z|| == c bit for bit (2 e_i / 2 = e_i exactly): the norm of z/||z|| - c is at its kink."""
    c = torch.eye(3, 4, dtype=torch.float64)
    z = (2 * c).requires_grad_(True)
    y = torch.tensor([0, 1, 2])
    assert torch.equal(z.detach() / torch.linalg.vector_norm(z.detach(), dim=1, keepdim=True), c)
    out = L.clop_term(z, y, c, similarity=similarity)
    assert float(out.detach()) == 0.0
    out.backward()
    assert torch.isfinite(z.grad).all()


_ZERO_ROW_LOSSES = {
    "infonce": lambda a, b: L.info_nce(a, b),
    "dcl": lambda a, b: L.dcl(a, b),
    "supcon": lambda a, b: L.supcon(a, b, torch.tensor([0, 1, 0, -1, 2])),
    "clop_cosine": lambda a, b: L.clop_term(a, torch.tensor([0, 1, 0, -1, 2]), torch.eye(3, 4, dtype=a.dtype)),
    "clop_euclidean": lambda a, b: L.clop_term(
        a, torch.tensor([0, 1, 0, -1, 2]), torch.eye(3, 4, dtype=a.dtype), similarity="euclidean"
    ),
    "clop_manhattan": lambda a, b: L.clop_term(
        a, torch.tensor([0, 1, 0, -1, 2]), torch.eye(3, 4, dtype=a.dtype), similarity="manhattan"
    ),
}


@pytest.mark.parametrize("name", sorted(_ZERO_ROW_LOSSES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradient_bounded_at_zero_row(name, dtype):
    """A zero embedding row: normalisation by max(||z||, 1e-6) keeps the gradient finite and < 1e7
    (F.normalize's 1e-12 floor gave ~1e12 there)."""
    z1, z2 = two_views(9, n=5, d=4)
    z1, z2 = z1.to(dtype), z2.to(dtype)
    z1[0] = 0.0
    z2[2] = 0.0
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    out = _ZERO_ROW_LOSSES[name](z1, z2)
    assert math.isfinite(float(out.detach()))
    out.backward()
    grads = [g for g in (z1.grad, z2.grad) if g is not None]
    for g in grads:
        assert torch.isfinite(g).all()
        assert float(g.abs().max()) < 1e7
    assert float(z1.grad[0].abs().max()) > 0  # the zero row does get a (bounded) gradient


def test_unit_rows_floor_only_below_1e_6():
    z = torch.tensor([[3.0, 4.0], [3e-6, 4e-6], [3e-7, 4e-7], [0.0, 0.0]], dtype=torch.float64)
    u = common.unit_rows(z)
    assert torch.allclose(u[0], torch.tensor([0.6, 0.8], dtype=torch.float64), rtol=1e-15)
    assert torch.allclose(u[1], torch.tensor([0.6, 0.8], dtype=torch.float64), rtol=1e-12)  # norm 5e-6: exact
    assert torch.allclose(u[2], torch.tensor([0.3, 0.4], dtype=torch.float64), rtol=1e-12)  # norm 5e-7: z / 1e-6
    assert torch.equal(u[3], torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize("similarity", L.SIMILARITIES)
def test_clop_term_ignores_unlabeled_samples(similarity):
    c = P.orthonormal(3, 5, seed=2, dtype=torch.float64, device="cpu")
    y = torch.tensor([0, -1, 2, -1, 1, 0])
    z = randn64(4, 6, 5).requires_grad_(True)
    before = L.clop_term(z, y, c, similarity=similarity)
    before.backward()
    assert torch.equal(z.grad[y < 0], torch.zeros(2, 5, dtype=torch.float64))
    z2 = z.detach().clone()
    z2[y < 0] = randn64(5, 2, 5, scale=10.0)
    after = L.clop_term(z2, y, c, similarity=similarity)
    assert float(after) == float(before.detach())


@pytest.mark.parametrize("similarity", L.SIMILARITIES)
def test_clop_term_mean_is_sum_over_count(similarity):
    c = P.orthonormal(3, 5, seed=0, dtype=torch.float64, device="cpu")
    y = torch.tensor([0, -1, 2, 2, -1, 1, 0])
    z = randn64(6, 7, 5)
    s = float(L.clop_term(z, y, c, similarity=similarity, lam=1.3, reduction="sum"))
    m = float(L.clop_term(z, y, c, similarity=similarity, lam=1.3, reduction="mean"))
    assert m == pytest.approx(s / 5, rel=1e-13)


@pytest.mark.parametrize("similarity", L.SIMILARITIES)
def test_clop_term_batch_is_sum_over_batch_size(similarity):
    """ "batch" divides by N = 7 (all samples), not by the 5 labeled ones."""
    c = P.orthonormal(3, 5, seed=0, dtype=torch.float64, device="cpu")
    y = torch.tensor([0, -1, 2, 2, -1, 1, 0])
    z = randn64(7, 7, 5)
    s = float(L.clop_term(z, y, c, similarity=similarity, lam=0.9, reduction="sum"))
    b = float(L.clop_term(z, y, c, similarity=similarity, lam=0.9, reduction="batch"))
    assert s > 0.1
    assert b == pytest.approx(s / 7, rel=1e-13)


@pytest.mark.parametrize("similarity", L.SIMILARITIES)
@pytest.mark.parametrize("reduction", L.REDUCTIONS)
def test_clop_term_unlabeled_rows_cannot_poison(similarity, reduction):
    """Unlabeled rows are zeroed with torch.where: even inf/NaN there changes neither value nor gradient."""
    c = P.orthonormal(3, 5, seed=2, dtype=torch.float64, device="cpu")
    y = torch.tensor([0, -1, 2, -1, 1])
    z = randn64(11, 5, 5)
    bad = z.clone()
    bad[1] = float("nan")
    bad[3] = float("inf")
    outs = []
    for x in (z, bad):
        x = x.clone().requires_grad_(True)
        out = L.clop_term(x, y, c, similarity=similarity, reduction=reduction)
        out.backward()
        outs.append((float(out.detach()), x.grad))
    assert outs[0][0] == outs[1][0] and math.isfinite(outs[1][0])
    assert torch.equal(outs[0][1], outs[1][1])
    assert torch.equal(outs[1][1][y < 0], torch.zeros(2, 5, dtype=torch.float64))


# ------------------------------------------------------------------------------------------
# Gradients against finite differences (torch.autograd.gradcheck, float64)
# ------------------------------------------------------------------------------------------

_GRADCHECK_LOSSES = {
    "info_nce": lambda a, b: L.info_nce(a, b, 0.5),
    "dcl": lambda a, b: L.dcl(a, b, 0.3),
    "supcon": lambda a, b: L.supcon(a, b, torch.tensor([0, 1, 0, -1]), 0.4),
    "barlow_twins": lambda a, b: L.barlow_twins(a, b, 0.05),
    "barlow_twins_paper": lambda a, b: L.barlow_twins(a, b, 0.05, eps=0.0, unbiased=True),
    "vicreg": lambda a, b: L.vicreg(0.3 * a, 0.3 * b),  # scale 0.3: every hinge active, away from its kink
}


@pytest.mark.parametrize("name", sorted(_GRADCHECK_LOSSES))
def test_gradcheck_losses(name):
    z1, z2 = two_views(21, n=4, d=3)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    assert torch.autograd.gradcheck(_GRADCHECK_LOSSES[name], (z1, z2), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("similarity", L.SIMILARITIES)
@pytest.mark.parametrize("reduction", L.REDUCTIONS)
def test_gradcheck_clop_term(similarity, reduction):
    c = P.orthonormal(3, 4, seed=3, dtype=torch.float64, device="cpu")
    y = torch.tensor([0, -1, 2, 1, 0])
    z = randn64(22, 5, 4, scale=2.0).requires_grad_(True)
    fn = lambda x: L.clop_term(x, y, c, similarity=similarity, lam=0.7, reduction=reduction)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (z,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradcheck_l_class():
    x = randn64(23, 2, 3, 4).requires_grad_(True)
    assert torch.autograd.gradcheck(L.l_class, (x,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_l_class_of_etf_and_orthonormal():
    for k, m in [(2, 2), (5, 8), (10, 10), (7, 30)]:
        etf = P.simplex_etf(k, m, seed=k, dtype=torch.float64, device="cpu")
        assert float(L.l_class(etf)) == pytest.approx(-k, abs=1e-10)
        ortho = P.orthonormal(k, m, seed=k, dtype=torch.float64, device="cpu")
        assert float(L.l_class(ortho)) == pytest.approx(0.0, abs=1e-10)
