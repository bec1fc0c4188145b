"""Tests of clop.losses: every loss against a loop-based reference written here, plus invariants.

The references below are deliberately naive: Python floats, explicit loops over samples and
dimensions, ``math.exp``/``math.log``; they share no code with clop.losses.
"""

from __future__ import annotations

import copy
import doctest
import importlib
import importlib.util
import math

import pytest
import torch

import clop.losses as L
from clop import prototypes as P

SEEDS = (0, 1, 2)


def _randn(seed: int, *shape: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, generator=g, dtype=torch.float64)


def _pair(seed: int, n: int = 5, d: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Two correlated views, rows of varied norm (the losses must not care about the norm)."""
    z1 = _randn(seed, n, d, scale=2.0)
    z2 = z1 + _randn(seed + 100, n, d, scale=0.7)
    return z1, z2


def _labels(seed: int, n: int, k: int = 3) -> torch.Tensor:
    """Random labels in {-1, ..., k-1}; forced to contain a repeated class and an unlabeled sample."""
    g = torch.Generator().manual_seed(seed + 7)
    y = torch.randint(-1, k, (n,), generator=g)
    y[0], y[1], y[2] = 0, 0, -1
    return y


# ------------------------------------------------------------------------------------------
# Loop references
# ------------------------------------------------------------------------------------------


def _rows(z: torch.Tensor) -> list[list[float]]:
    return [[float(v) for v in row] for row in z]


def _unit(v: list[float]) -> list[float]:
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def _views(z1, z2) -> list[list[float]]:
    return [_unit(r) for r in _rows(z1)] + [_unit(r) for r in _rows(z2)]


def ref_info_nce(z1, z2, t):
    """Mean over the 2N anchors of the loop-computed Eq. (1) terms."""
    return _ref_info_nce_sum(z1, z2, t) / (2 * len(_rows(z1)))


def ref_dcl(z1, z2, t):
    u = _views(z1, z2)
    m = len(u)
    total = 0.0
    for i in range(m):
        p = (i + m // 2) % m
        denom = sum(math.exp(_dot(u[i], u[a]) / t) for a in range(m) if a not in (i, p))
        total += -_dot(u[i], u[p]) / t + math.log(denom)
    return total / m


def ref_supcon(z1, z2, labels, t):
    u = _views(z1, z2)
    y = [int(v) for v in labels] * 2
    m = len(u)
    total = 0.0
    for i in range(m):
        if y[i] >= 0:
            pos = [p for p in range(m) if p != i and y[p] == y[i]]
        else:
            pos = [(i + m // 2) % m]
        denom = sum(math.exp(_dot(u[i], u[a]) / t) for a in range(m) if a != i)
        total += -sum(math.log(math.exp(_dot(u[i], u[p]) / t) / denom) for p in pos) / len(pos)
    return total / m


def _standardised_columns(z, eps, unbiased):
    rows = _rows(z)
    n, d = len(rows), len(rows[0])
    out = [[0.0] * d for _ in range(n)]
    for j in range(d):
        col = [rows[i][j] for i in range(n)]
        mean = sum(col) / n
        var = sum((x - mean) ** 2 for x in col) / (n - 1 if unbiased else n)
        for i in range(n):
            out[i][j] = (col[i] - mean) / math.sqrt(var + eps)
    return out


def ref_barlow(z1, z2, lam, eps, unbiased):
    a = _standardised_columns(z1, eps, unbiased)
    b = _standardised_columns(z2, eps, unbiased)
    n, d = len(a), len(a[0])
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c_ij = sum(a[s][i] * b[s][j] for s in range(n)) / n
            loss += (1.0 - c_ij) ** 2 if i == j else lam * c_ij**2
    return loss


def ref_vicreg(z1, z2, lam, mu, nu, eps, gamma=1.0):
    a, b = _rows(z1), _rows(z2)
    n, d = len(a), len(a[0])
    inv = sum((a[i][j] - b[i][j]) ** 2 for i in range(n) for j in range(d)) / (n * d)

    def var_cov(rows):
        means = [sum(rows[i][j] for i in range(n)) / n for j in range(d)]
        cov = [
            [sum((rows[s][i] - means[i]) * (rows[s][j] - means[j]) for s in range(n)) / (n - 1) for j in range(d)]
            for i in range(d)
        ]
        v = sum(max(0.0, gamma - math.sqrt(cov[j][j] + eps)) for j in range(d)) / d
        c = sum(cov[i][j] ** 2 for i in range(d) for j in range(d) if i != j) / d
        return v, c

    va, ca = var_cov(a)
    vb, cb = var_cov(b)
    return lam * inv + mu * (va + vb) + nu * (ca + cb)


def ref_clop(z, labels, protos, similarity, lam, reduction):
    rows, cs = _rows(z), _rows(protos)
    total, count = 0.0, 0
    for row, y in zip(rows, [int(v) for v in labels]):
        if y < 0:
            continue
        count += 1
        c = cs[y]
        if similarity == "cosine":
            total += 1.0 - _dot(row, c) / math.sqrt(_dot(row, row) * _dot(c, c))
        else:
            zh = _unit(row)
            diffs = [x - w for x, w in zip(zh, c)]
            if similarity == "euclidean":
                total += math.sqrt(sum(x * x for x in diffs))
            else:
                total += sum(abs(x) for x in diffs)
    if reduction == "mean" and count:
        total /= count
    if reduction == "batch":
        total /= len(rows)
    return lam * total


def ref_l_class(x):
    rows = _rows(x)
    return sum(_dot(rows[i], rows[j]) for i in range(len(rows)) for j in range(len(rows)) if i != j)


# ------------------------------------------------------------------------------------------
# Each loss against its loop reference
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("t", [0.5, 0.1, 1.7])
def test_info_nce_matches_loop(seed, t):
    z1, z2 = _pair(seed)
    assert float(L.info_nce(z1, z2, t)) == pytest.approx(ref_info_nce(z1, z2, t), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("t", [0.1, 0.5])
def test_dcl_matches_loop(seed, t):
    z1, z2 = _pair(seed)
    assert float(L.dcl(z1, z2, t)) == pytest.approx(ref_dcl(z1, z2, t), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("t", [0.1, 0.7])
def test_supcon_matches_loop(seed, t):
    z1, z2 = _pair(seed, n=7)
    y = _labels(seed, 7)
    assert float(L.supcon(z1, z2, y, t)) == pytest.approx(ref_supcon(z1, z2, y, t), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_supcon_all_unlabeled_is_nt_xent(seed):
    z1, z2 = _pair(seed)
    y = torch.full((5,), -1)
    got = float(L.supcon(z1, z2, y, 0.3))
    assert got == pytest.approx(ref_info_nce(z1, z2, 0.3), rel=1e-12)
    assert got == pytest.approx(float(L.info_nce(z1, z2, 0.3)), rel=1e-12)
    # distinct labels also leave each anchor with its own other view as only positive
    assert float(L.supcon(z1, z2, torch.arange(5), 0.3)) == pytest.approx(got, rel=1e-12)


def test_supcon_labels_change_the_loss():
    z1, z2 = _pair(3)
    y = torch.tensor([0, 0, 1, 1, -1])
    assert abs(float(L.supcon(z1, z2, y)) - float(L.supcon(z1, z2, torch.full((5,), -1)))) > 1e-3


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("eps,unbiased", [(1e-5, False), (0.0, True), (0.0, False)])
@pytest.mark.parametrize("lam", [5e-3, 0.7])
def test_barlow_twins_matches_loop(seed, eps, unbiased, lam):
    z1, z2 = _pair(seed)
    got = float(L.barlow_twins(z1, z2, lam, eps=eps, unbiased=unbiased))
    assert got == pytest.approx(ref_barlow(z1, z2, lam, eps, unbiased), rel=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("scale", [1.0, 0.3])  # 0.3: every variance hinge is active
def test_vicreg_matches_loop(seed, scale):
    z1, z2 = _pair(seed)
    z1, z2 = scale * z1, scale * z2
    got = float(L.vicreg(z1, z2))
    assert got == pytest.approx(ref_vicreg(z1, z2, 25.0, 25.0, 1.0, 1e-4), rel=1e-12)
    got = float(L.vicreg(z1, z2, 2.0, 3.0, 0.5, 1e-2, gamma=1.5))
    assert got == pytest.approx(ref_vicreg(z1, z2, 2.0, 3.0, 0.5, 1e-2, gamma=1.5), rel=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("similarity", L.SIMILARITIES)
@pytest.mark.parametrize("reduction", L.REDUCTIONS)
def test_clop_term_matches_loop(seed, similarity, reduction):
    z = _randn(seed, 6, 5, scale=3.0)
    y = _labels(seed, 6)
    c = P.orthonormal(3, 5, seed=seed, dtype=torch.float64, device="cpu")
    got = float(L.clop_term(z, y, c, similarity=similarity, lam=0.7, reduction=reduction))
    assert got == pytest.approx(ref_clop(z, y, c, similarity, 0.7, reduction), rel=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_l_class_matches_double_sum(seed):
    x = _randn(seed, 2, 3, 5, 4)  # batched, rows not unit: the identity holds for any rows
    got = L.l_class(x)
    assert got.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            assert float(got[i, j]) == pytest.approx(ref_l_class(x[i, j]), rel=1e-12, abs=1e-12)


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
    v = _randn(seed, 4)
    equal = v.repeat(5, 1)
    assert float(_grads(fn, equal, equal).abs().max()) < 1e-10
    g = torch.Generator().manual_seed(seed)
    s1 = torch.where(torch.rand(5, generator=g) < 0.5, -1.0, 1.0) * (0.5 + torch.rand(5, generator=g))
    s2 = torch.where(torch.rand(5, generator=g) < 0.5, -1.0, 1.0) * (0.5 + torch.rand(5, generator=g))
    colinear1, colinear2 = s1.double()[:, None] * v, s2.double()[:, None] * v
    assert float(_grads(fn, colinear1, colinear2).abs().max()) < 1e-10
    z1, z2 = _pair(seed)
    assert float(_grads(fn, z1, z2).norm()) > 1e-3


@pytest.mark.parametrize("similarity", L.SIMILARITIES)
@pytest.mark.parametrize("kind", ["orthonormal", "simplex_etf"])
def test_clop_term_zero_on_prototypes_positive_elsewhere(similarity, kind):
    make = P.orthonormal if kind == "orthonormal" else P.simplex_etf
    c = make(4, 6, seed=1, dtype=torch.float64, device="cpu")
    y = torch.tensor([0, 1, 2, 3, 1, -1])
    z = c[y.clamp(min=0)] * torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0, 1.0], dtype=torch.float64)[:, None]
    z[5] = _randn(0, 6)  # an unlabeled sample anywhere
    assert abs(float(L.clop_term(z, y, c, similarity=similarity))) < 1e-12
    z_off = z + 0.1 * _randn(1, 6, 6)
    assert float(L.clop_term(z_off, y, c, similarity=similarity)) > 1e-3


@pytest.mark.parametrize("similarity", L.SIMILARITIES)
@pytest.mark.parametrize("reduction", L.REDUCTIONS)
def test_clop_term_no_labeled_sample_is_zero_with_zero_grad(similarity, reduction):
    z = _randn(0, 4, 3).requires_grad_(True)
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
    z1, z2 = _pair(9, n=5, d=4)
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
    u = L._unit_rows(z)
    assert torch.allclose(u[0], torch.tensor([0.6, 0.8], dtype=torch.float64), rtol=1e-15)
    assert torch.allclose(u[1], torch.tensor([0.6, 0.8], dtype=torch.float64), rtol=1e-12)  # norm 5e-6: exact
    assert torch.allclose(u[2], torch.tensor([0.3, 0.4], dtype=torch.float64), rtol=1e-12)  # norm 5e-7: z / 1e-6
    assert torch.equal(u[3], torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize("similarity", L.SIMILARITIES)
def test_clop_term_ignores_unlabeled_samples(similarity):
    c = P.orthonormal(3, 5, seed=2, dtype=torch.float64, device="cpu")
    y = torch.tensor([0, -1, 2, -1, 1, 0])
    z = _randn(4, 6, 5).requires_grad_(True)
    before = L.clop_term(z, y, c, similarity=similarity)
    before.backward()
    assert torch.equal(z.grad[y < 0], torch.zeros(2, 5, dtype=torch.float64))
    z2 = z.detach().clone()
    z2[y < 0] = _randn(5, 2, 5, scale=10.0)
    after = L.clop_term(z2, y, c, similarity=similarity)
    assert float(after) == float(before.detach())


@pytest.mark.parametrize("similarity", L.SIMILARITIES)
def test_clop_term_mean_is_sum_over_count(similarity):
    c = P.orthonormal(3, 5, seed=0, dtype=torch.float64, device="cpu")
    y = torch.tensor([0, -1, 2, 2, -1, 1, 0])
    z = _randn(6, 7, 5)
    s = float(L.clop_term(z, y, c, similarity=similarity, lam=1.3, reduction="sum"))
    m = float(L.clop_term(z, y, c, similarity=similarity, lam=1.3, reduction="mean"))
    assert m == pytest.approx(s / 5, rel=1e-13)


@pytest.mark.parametrize("similarity", L.SIMILARITIES)
def test_clop_term_batch_is_sum_over_batch_size(similarity):
    """ "batch" divides by N = 7 (all samples), not by the 5 labeled ones."""
    c = P.orthonormal(3, 5, seed=0, dtype=torch.float64, device="cpu")
    y = torch.tensor([0, -1, 2, 2, -1, 1, 0])
    z = _randn(7, 7, 5)
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
    z = _randn(11, 5, 5)
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
    z1, z2 = _pair(21, n=4, d=3)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    assert torch.autograd.gradcheck(_GRADCHECK_LOSSES[name], (z1, z2), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("similarity", L.SIMILARITIES)
@pytest.mark.parametrize("reduction", L.REDUCTIONS)
def test_gradcheck_clop_term(similarity, reduction):
    c = P.orthonormal(3, 4, seed=3, dtype=torch.float64, device="cpu")
    y = torch.tensor([0, -1, 2, 1, 0])
    z = _randn(22, 5, 4, scale=2.0).requires_grad_(True)
    fn = lambda x: L.clop_term(x, y, c, similarity=similarity, lam=0.7, reduction=reduction)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (z,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradcheck_l_class():
    x = _randn(23, 2, 3, 4).requires_grad_(True)
    assert torch.autograd.gradcheck(L.l_class, (x,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_l_class_of_etf_and_orthonormal():
    for k, m in [(2, 2), (5, 8), (10, 10), (7, 30)]:
        etf = P.simplex_etf(k, m, seed=k, dtype=torch.float64, device="cpu")
        assert float(L.l_class(etf)) == pytest.approx(-k, abs=1e-10)
        ortho = P.orthonormal(k, m, seed=k, dtype=torch.float64, device="cpu")
        assert float(L.l_class(ortho)) == pytest.approx(0.0, abs=1e-10)


# ------------------------------------------------------------------------------------------
# Modules, objective, registry
# ------------------------------------------------------------------------------------------


def test_clop_loss_custom_prototypes_unit_rows_cast_and_copied():
    c64 = P.orthonormal(3, 5, seed=4, dtype=torch.float64, device="cpu")
    loss = L.CLOPLoss(3, 5, prototypes=c64, similarity="euclidean", device="cpu")
    assert loss.prototype_kind == "custom"
    assert loss.prototypes.dtype == torch.float32 and loss.prototypes.device.type == "cpu"
    assert torch.equal(loss.prototypes, c64.float())
    c64.mul_(2.0)  # the buffer is a copy
    assert torch.equal(loss.prototypes * 2.0, c64.float())
    # same dtype rule as generated prototypes, and the dtype option applies to both
    gen = L.CLOPLoss(3, 5, seed=4, device="cpu")
    assert gen.prototypes.dtype == loss.prototypes.dtype
    keep = L.CLOPLoss(3, 5, prototypes=c64 / 2.0, dtype=torch.float64, device="cpu")
    assert keep.prototypes.dtype == torch.float64 and torch.equal(keep.prototypes, c64 / 2.0)
    assert torch.equal(
        L.CLOPLoss(3, 5, seed=4, dtype=torch.float64, device="cpu").prototypes,
        P.orthonormal(3, 5, seed=4, dtype=torch.float64, device="cpu"),
    )
    # unit rows up to float16 round-off are accepted
    L.CLOPLoss(3, 5, prototypes=(c64 / 2.0).half(), device="cpu")


@pytest.mark.parametrize(
    "bad",
    [
        2.0 * torch.eye(3, 5),  # norm 2
        torch.randn(3, 5, generator=torch.Generator().manual_seed(0)),  # raw Gaussian draw
        torch.eye(3, 5) * (1 + 1e-3),  # off by 1e-3 in float32
        torch.zeros(3, 5),
        torch.full((3, 5), float("nan")),
    ],
)
def test_clop_loss_custom_prototypes_must_be_unit(bad):
    with pytest.raises(ValueError, match=r"^prototypes tensor must have unit rows"):
        L.CLOPLoss(3, 5, prototypes=bad, device="cpu")


def test_clop_loss_buffer_state_dict_and_dtype():
    loss = L.CLOPLoss(4, 6, seed=3, device="cpu")
    assert "prototypes" in dict(loss.named_buffers())
    assert "prototypes" in loss.state_dict()
    assert loss.prototypes.dtype == torch.float32
    assert torch.equal(loss.prototypes, P.orthonormal(4, 6, seed=3, device="cpu"))
    loss64 = loss.to(torch.float64)
    assert loss64.prototypes.dtype == torch.float64
    assert loss64.state_dict()["prototypes"].dtype == torch.float64
    fresh = L.CLOPLoss(4, 6, seed=99, device="cpu").to(torch.float64)
    fresh.load_state_dict(loss64.state_dict())
    assert torch.equal(fresh.prototypes, loss64.prototypes)
    etf = L.CLOPLoss(4, 6, prototypes="simplex_etf", seed=3, device="cpu")
    assert torch.equal(etf.prototypes, P.simplex_etf(4, 6, seed=3, device="cpu"))


@pytest.mark.parametrize("similarity", L.SIMILARITIES)
@pytest.mark.parametrize("reduction", L.REDUCTIONS)
def test_clop_loss_forward_matches_loop(similarity, reduction):
    loss = L.CLOPLoss(3, 5, lam=0.5, similarity=similarity, reduction=reduction, seed=0, device="cpu")
    loss = loss.to(torch.float64)
    z, y = _randn(8, 6, 5), _labels(8, 6)
    assert float(loss(z, y)) == pytest.approx(ref_clop(z, y, loss.prototypes, similarity, 0.5, reduction), rel=1e-12)


@pytest.mark.parametrize("similarity", L.SIMILARITIES)
@pytest.mark.parametrize("reduction", L.REDUCTIONS)
def test_clop_term_maths_has_no_data_dependent_shapes(similarity, reduction):
    """The maths after validation runs under torch.func.vmap, which rejects boolean indexing and .item():
    a CPU-checkable proxy for "no host sync"."""
    c = P.orthonormal(3, 4, seed=0, dtype=torch.float64, device="cpu")
    y = torch.tensor([[0, -1, 2, 1, -1], [-1, -1, -1, -1, -1]])
    z = _randn(30, 2, 5, 4)
    batched = torch.func.vmap(lambda zz, yy: L._clop_term(zz, yy, c, similarity, 0.5, reduction))(z, y)
    for i in range(2):
        one = L.clop_term(z[i], y[i], c, similarity=similarity, lam=0.5, reduction=reduction)
        assert float(batched[i]) == pytest.approx(float(one), rel=1e-14, abs=0.0)
    assert float(batched[1]) == 0.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_host_sync_after_validation_on_cuda():  # pragma: no cover - no GPU on CI
    c = P.orthonormal(3, 4, seed=0, device="cuda")
    z1, z2 = torch.randn(2, 6, 4, device="cuda")
    y = torch.tensor([0, -1, 2, 1, -1, 0], device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for reduction in L.REDUCTIONS:
            L._clop_term(torch.cat([z1, z2]), torch.cat([y, y]), c, "cosine", 1.0, reduction)
        L._supcon(z1, z2, y, 0.1)
        L.info_nce(z1, z2)
        L.dcl(z1, z2)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def _ref_info_nce_sum(z1, z2, t):
    """Eq. (1) as printed: a SUM over the 2N anchors (loop, no division)."""
    u = _views(z1, z2)
    m = len(u)
    total = 0.0
    for i in range(m):
        p = (i + m // 2) % m
        denom = sum(math.exp(_dot(u[i], u[a]) / t) for a in range(m) if a != i)
        total += -math.log(math.exp(_dot(u[i], u[p]) / t) / denom)
    return total


@pytest.mark.parametrize("similarity", L.SIMILARITIES)
def test_objective_batch_is_eq4_as_printed_over_2n(similarity):
    """Eq. (4) with both sums as printed (sum-form InfoNCE + lam * sum over labeled views of both
    views), divided by 2N, equals CLOPObjective with the mean InfoNCE and reduction="batch"."""
    n, lam, t = 6, 0.8, 0.5
    z1, z2 = _pair(12, n=n)
    y = torch.tensor([0, -1, 2, 1, -1, 0])
    clop = L.CLOPLoss(3, 4, lam=lam, similarity=similarity, reduction="batch", seed=2, device="cpu")
    clop = clop.to(torch.float64)
    out = L.CLOPObjective(L.InfoNCELoss(t), clop)(z1, z2, y)
    c = _rows(clop.prototypes)
    clop_sum = 0.0  # loop over both views, labeled samples only
    for view in (z1, z2):
        for row, label in zip(_rows(view), y.tolist()):
            if label < 0:
                continue
            if similarity == "cosine":
                clop_sum += 1.0 - _dot(_unit(row), _unit(c[label]))
            else:
                diffs = [a - b for a, b in zip(_unit(row), c[label])]
                clop_sum += math.sqrt(sum(x * x for x in diffs)) if similarity == "euclidean" else sum(map(abs, diffs))
    expected = (_ref_info_nce_sum(z1, z2, t) + lam * clop_sum) / (2 * n)
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-12)
    assert float(out["clop"]) == pytest.approx(lam * clop_sum / (2 * n), rel=1e-12)


def test_objective_sum_reduction_grows_with_batch_while_batch_does_not():
    """The documented scale issue: with "sum" the CLOP part is ~2N x (1 - cos); "batch" is ~1 for any N."""
    ratios = {}
    for n in (16, 128):
        g = torch.Generator().manual_seed(n)
        z1, z2 = torch.randn(2, n, 32, generator=g, dtype=torch.float64)
        y = torch.randint(0, 10, (n,), generator=g)
        clop = L.CLOPLoss(10, 32, seed=0, device="cpu").to(torch.float64)
        s = L.CLOPObjective(L.SupConLoss(), clop)(z1, z2, y)
        clop.reduction = "batch"
        b = L.CLOPObjective(L.SupConLoss(), clop)(z1, z2, y)
        assert float(s["contrastive"]) == float(b["contrastive"])
        assert float(b["clop"]) == pytest.approx(float(s["clop"]) / (2 * n), rel=1e-12)
        ratios[n] = float(s["clop"]) / float(s["contrastive"])
        assert 0.8 < float(b["clop"]) < 1.2  # 1 - cos of random directions
    assert ratios[128] / ratios[16] > 4  # x8 batch: the "sum" weight grows ~ N (log factor from SupCon)


@pytest.mark.parametrize("base", ["infonce", "supcon", "barlowtwins"])
def test_objective_checks_labels_once(base, monkeypatch):
    """One range check (one host sync) per forward, also with a SupCon base."""
    calls = []
    original = L._check_labels

    def counting(*args, **kwargs):
        calls.append(kwargs.get("num_classes"))
        return original(*args, **kwargs)

    monkeypatch.setattr(L, "_check_labels", counting)
    clop = L.CLOPLoss(3, 4, seed=1, device="cpu").to(torch.float64)
    obj = L.CLOPObjective(L.make_loss(base), clop)
    z1, z2 = _pair(4, n=6)
    out = obj(z1, z2, _labels(4, 6))
    assert calls == [3]  # once, with the prototype count
    with pytest.raises(ValueError, match="labels must be < k=3"):
        obj(z1, z2, torch.tensor([0, 1, 3, -1, 0, 0]))
    with pytest.raises(ValueError, match="labels must be >= -1"):
        obj(z1, z2, torch.tensor([0, 1, -2, -1, 0, 0]))
    # the SupCon fast path gives the same numbers as the two public functions
    if base == "supcon":
        y = _labels(4, 6)
        assert float(out["contrastive"]) == pytest.approx(float(L.supcon(z1, z2, y)), rel=1e-14)
        both = L.clop_term(torch.cat([z1, z2]), torch.cat([y, y]), clop.prototypes)
        assert float(out["clop"]) == pytest.approx(float(both), rel=1e-14)


@pytest.mark.parametrize("name", sorted(L.LOSSES))
def test_objective_sums_parts_and_uses_both_views(name):
    clop = L.CLOPLoss(3, 4, lam=0.8, seed=1, device="cpu").to(torch.float64)
    obj = L.CLOPObjective(L.make_loss(name), clop)
    z1, z2 = _pair(4, n=6)
    y = _labels(4, 6)
    out = obj(z1, z2, y)
    assert set(out) == {"loss", "contrastive", "clop"}
    assert float(out["loss"]) == pytest.approx(float(out["contrastive"]) + float(out["clop"]), rel=1e-14)
    both = ref_clop(torch.cat([z1, z2]), torch.cat([y, y]), clop.prototypes, "cosine", 0.8, "sum")
    assert float(out["clop"]) == pytest.approx(both, rel=1e-12)
    plain = L.CLOPObjective(L.make_loss(name), None)(z1, z2, y)
    assert float(plain["clop"]) == 0.0
    assert float(plain["loss"]) == pytest.approx(float(out["contrastive"]), rel=1e-14)


def test_modules_match_functions_and_registry():
    z1, z2 = _pair(5)
    y = _labels(5, 5)
    assert float(L.make_loss("InfoNCE")(z1, z2)) == float(L.info_nce(z1, z2, 0.5))
    assert float(L.make_loss("dcl", temperature=0.3)(z1, z2)) == float(L.dcl(z1, z2, 0.3))
    assert float(L.make_loss("supcon")(z1, z2, y)) == float(L.supcon(z1, z2, y, 0.1))
    assert float(L.make_loss("barlowtwins")(z1, z2)) == float(L.barlow_twins(z1, z2, 5e-3))
    assert float(L.make_loss("vicreg")(z1, z2)) == float(L.vicreg(z1, z2))
    assert {k: type(L.make_loss(k)) for k in L.LOSSES} == L.LOSSES


def test_make_loss_unknown_name():
    with pytest.raises(ValueError, match="simclr") as info:
        L.make_loss("simclr")
    for name in L.LOSSES:
        assert name in str(info.value)


def test_docstring_examples_run():
    result = doctest.testmod(L, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 10 and result.failed == 0


# ------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------

_PAIR_FUNCS = {
    "info_nce": L.info_nce,
    "dcl": L.dcl,
    "supcon": lambda a, b: L.supcon(a, b, torch.zeros(a.shape[0] if a.dim() else 0, dtype=torch.long)),
    "barlow_twins": L.barlow_twins,
    "vicreg": L.vicreg,
}


@pytest.mark.parametrize("name", sorted(_PAIR_FUNCS))
def test_pair_validation(name):
    fn = _PAIR_FUNCS[name]
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="z1"):
        fn(torch.randn(4), torch.randn(4))
    with pytest.raises(ValueError, match="same shape"):
        fn(z, torch.randn(4, 2))
    with pytest.raises(ValueError, match="N=0"):
        fn(torch.randn(0, 3), torch.randn(0, 3))
    with pytest.raises(ValueError, match="N=1"):
        fn(torch.randn(1, 3), torch.randn(1, 3))


@pytest.mark.parametrize("fn", [L.info_nce, L.dcl, lambda a, b, t: L.supcon(a, b, torch.zeros(4, dtype=torch.long), t)])
@pytest.mark.parametrize("t", [0.0, -0.5, float("nan")])
def test_temperature_must_be_positive(fn, t):
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="temperature"):
        fn(z, z, t)


@pytest.mark.parametrize("cls", [L.InfoNCELoss, L.DCLLoss, L.SupConLoss])
def test_module_temperature_validated(cls):
    with pytest.raises(ValueError, match="temperature"):
        cls(temperature=0.0)


@pytest.mark.parametrize("eps", [0.0, -1e-4, float("nan"), float("inf")])
def test_vicreg_eps_must_be_positive(eps):
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"^eps must be a finite real number > 0; got"):
        L.vicreg(z, z, eps=eps)
    with pytest.raises(ValueError, match=r"^eps must be"):
        L.VICRegLoss(eps=eps)


def test_vicreg_constant_dimension_has_finite_gradient():
    """Why eps > 0: a constant dimension has std 0, and d sqrt(v)/dv is infinite at v = 0."""
    z1, z2 = _pair(5, n=6)
    z1[:, 1] = 0.7
    z1.requires_grad_(True)
    L.vicreg(z1, z2).backward()
    assert torch.isfinite(z1.grad).all()


def test_label_and_choice_validation():
    z = torch.randn(4, 3)
    c = torch.eye(2, 3)
    with pytest.raises(ValueError, match="labels"):
        L.supcon(z, z, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        L.supcon(z, z, torch.zeros(4))  # float labels
    with pytest.raises(ValueError, match="labels"):
        L.clop_term(z, torch.zeros(4, 1, dtype=torch.long), c)
    with pytest.raises(ValueError, match="labels must be < k=2"):
        L.clop_term(z, torch.tensor([0, 1, 2, -1]), c)
    with pytest.raises(ValueError, match="labels must be >= -1"):
        L.clop_term(z, torch.tensor([0, 1, -2, -1]), c)
    with pytest.raises(ValueError, match="similarity"):
        L.clop_term(z, torch.zeros(4, dtype=torch.long), c, similarity="dot")
    with pytest.raises(ValueError, match="reduction"):
        L.clop_term(z, torch.zeros(4, dtype=torch.long), c, reduction="max")
    with pytest.raises(ValueError, match="prototypes"):
        L.clop_term(z, torch.zeros(4, dtype=torch.long), torch.eye(2, 5))
    with pytest.raises(ValueError, match="prototypes"):
        L.CLOPLoss(2, 3, prototypes="random", device="cpu")
    with pytest.raises(ValueError, match="similarity"):
        L.CLOPLoss(2, 3, similarity="dot", device="cpu")
    with pytest.raises(ValueError, match="reduction"):
        L.CLOPLoss(2, 3, reduction="max", device="cpu")
    with pytest.raises(ValueError, match="labels"):
        L.SupConLoss()(z, z)
    with pytest.raises(ValueError, match="labels"):
        L.CLOPObjective(L.InfoNCELoss(), L.CLOPLoss(2, 3, device="cpu"))(z, z)


# ------------------------------------------------------------------------------------------
# Agreement with the lightly library (losses and LARS)
#
# lightly is not a dependency of the package; the test command installs it beside the pinned torch with
#     pip install --no-deps lightly==1.6.0
# (its lightly.loss and lightly.utils.lars need nothing else). The tests skip only where lightly is not
# installed at all; an installed lightly that fails to import is an error, not a skip.
# ------------------------------------------------------------------------------------------


def _import_lightly(module: str):
    if importlib.util.find_spec("lightly") is None:
        pytest.skip("lightly is not installed (pip install --no-deps lightly==1.6.0)")
    return importlib.import_module(module)


@pytest.fixture(scope="module")
def lightly_loss():
    return _import_lightly("lightly.loss")


@pytest.fixture(scope="module")
def lightly_lars():
    return _import_lightly("lightly.utils.lars").LARS


@pytest.mark.parametrize("seed", SEEDS)
def test_agrees_with_lightly(lightly_loss, seed):
    z1, z2 = _pair(seed, n=8, d=5)
    assert float(L.info_nce(z1, z2, 0.5)) == pytest.approx(
        float(lightly_loss.NTXentLoss(temperature=0.5)(z1, z2)), rel=1e-10
    )
    assert float(L.info_nce(z1, z2, 0.2)) == pytest.approx(
        float(lightly_loss.NTXentLoss(temperature=0.2)(z1, z2)), rel=1e-10
    )
    assert float(L.dcl(z1, z2, 0.1)) == pytest.approx(float(lightly_loss.DCLLoss(temperature=0.1)(z1, z2)), rel=1e-10)
    # Barlow Twins: lightly standardises with F.batch_norm (biased variance, eps = 1e-5) = our default
    assert float(L.barlow_twins(z1, z2, 5e-3)) == pytest.approx(
        float(lightly_loss.BarlowTwinsLoss(lambda_param=5e-3)(z1, z2)), rel=1e-10
    )
    # VICReg: lightly's variance term is 0.5 [v(Z) + v(Z')]; the paper's Eq. (6) is v(Z) + v(Z')
    assert float(L.vicreg(0.3 * z1, 0.3 * z2, 25.0, 12.5, 1.0)) == pytest.approx(
        float(lightly_loss.VICRegLoss(25.0, 25.0, 1.0)(0.3 * z1, 0.3 * z2)), rel=1e-10
    )


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

