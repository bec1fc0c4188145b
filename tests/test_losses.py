"""Tests of clop.losses: every loss against a loop-based reference written here, plus invariants.

The references below are deliberately naive: Python floats, explicit loops over samples and
dimensions, ``math.exp``/``math.log``; they share no code with clop.losses.
"""

from __future__ import annotations

import doctest
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
    u = _views(z1, z2)
    m = len(u)
    total = 0.0
    for i in range(m):
        p = (i + m // 2) % m
        denom = sum(math.exp(_dot(u[i], u[a]) / t) for a in range(m) if a != i)
        total += -math.log(math.exp(_dot(u[i], u[p]) / t) / denom)
    return total / m


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
    c = P.orthonormal(2, 3, seed=0, dtype=torch.float64, device="cpu")
    z = c.clone().requires_grad_(True)
    L.clop_term(z, torch.tensor([0, 1]), c, similarity=similarity).backward()
    assert torch.isfinite(z.grad).all()


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


def test_l_class_of_etf_and_orthonormal():
    for k, m in [(2, 2), (5, 8), (10, 10), (7, 30)]:
        etf = P.simplex_etf(k, m, seed=k, dtype=torch.float64, device="cpu")
        assert float(L.l_class(etf)) == pytest.approx(-k, abs=1e-10)
        ortho = P.orthonormal(k, m, seed=k, dtype=torch.float64, device="cpu")
        assert float(L.l_class(ortho)) == pytest.approx(0.0, abs=1e-10)


# ------------------------------------------------------------------------------------------
# Modules, objective, registry
# ------------------------------------------------------------------------------------------


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
# Optional: agreement with the lightly library (not a dependency of the suite)
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lightly_loss():
    return pytest.importorskip("lightly.loss", reason="lightly is optional; install it to compare against it")


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
