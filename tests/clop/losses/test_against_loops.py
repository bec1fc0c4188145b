"""Each loss of clop.losses against its loop reference (tests/clop/losses/references.py)."""

from __future__ import annotations

import pytest
import torch

import clop.losses as L
from clop import prototypes as P
from tests.clop.losses.references import (
    SEEDS,
    mixed_labels,
    randn64,
    ref_barlow,
    ref_clop,
    ref_dcl,
    ref_info_nce,
    ref_l_class,
    ref_supcon,
    ref_vicreg,
    two_views,
)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("t", [0.5, 0.1, 1.7])
def test_info_nce_matches_loop(seed, t):
    z1, z2 = two_views(seed)
    assert float(L.info_nce(z1, z2, t)) == pytest.approx(ref_info_nce(z1, z2, t), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("t", [0.1, 0.5])
def test_dcl_matches_loop(seed, t):
    z1, z2 = two_views(seed)
    assert float(L.dcl(z1, z2, t)) == pytest.approx(ref_dcl(z1, z2, t), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("t", [0.1, 0.7])
def test_supcon_matches_loop(seed, t):
    z1, z2 = two_views(seed, n=7)
    y = mixed_labels(seed, 7)
    assert float(L.supcon(z1, z2, y, t)) == pytest.approx(ref_supcon(z1, z2, y, t), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_supcon_all_unlabeled_is_nt_xent(seed):
    z1, z2 = two_views(seed)
    y = torch.full((5,), -1)
    got = float(L.supcon(z1, z2, y, 0.3))
    assert got == pytest.approx(ref_info_nce(z1, z2, 0.3), rel=1e-12)
    assert got == pytest.approx(float(L.info_nce(z1, z2, 0.3)), rel=1e-12)
    # distinct labels also leave each anchor with its own other view as only positive
    assert float(L.supcon(z1, z2, torch.arange(5), 0.3)) == pytest.approx(got, rel=1e-12)


def test_supcon_labels_change_the_loss():
    z1, z2 = two_views(3)
    y = torch.tensor([0, 0, 1, 1, -1])
    assert abs(float(L.supcon(z1, z2, y)) - float(L.supcon(z1, z2, torch.full((5,), -1)))) > 1e-3


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("eps,unbiased", [(1e-5, False), (0.0, True), (0.0, False)])
@pytest.mark.parametrize("lam", [5e-3, 0.7])
def test_barlow_twins_matches_loop(seed, eps, unbiased, lam):
    z1, z2 = two_views(seed)
    got = float(L.barlow_twins(z1, z2, lam, eps=eps, unbiased=unbiased))
    assert got == pytest.approx(ref_barlow(z1, z2, lam, eps, unbiased), rel=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("scale", [1.0, 0.3])  # 0.3: every variance hinge is active
def test_vicreg_matches_loop(seed, scale):
    z1, z2 = two_views(seed)
    z1, z2 = scale * z1, scale * z2
    got = float(L.vicreg(z1, z2))
    assert got == pytest.approx(ref_vicreg(z1, z2, 25.0, 25.0, 1.0, 1e-4), rel=1e-12)
    got = float(L.vicreg(z1, z2, 2.0, 3.0, 0.5, 1e-2, gamma=1.5))
    assert got == pytest.approx(ref_vicreg(z1, z2, 2.0, 3.0, 0.5, 1e-2, gamma=1.5), rel=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("similarity", L.SIMILARITIES)
@pytest.mark.parametrize("reduction", L.REDUCTIONS)
def test_clop_term_matches_loop(seed, similarity, reduction):
    z = randn64(seed, 6, 5, scale=3.0)
    y = mixed_labels(seed, 6)
    c = P.orthonormal(3, 5, seed=seed, dtype=torch.float64, device="cpu")
    got = float(L.clop_term(z, y, c, similarity=similarity, lam=0.7, reduction=reduction))
    assert got == pytest.approx(ref_clop(z, y, c, similarity, 0.7, reduction), rel=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_l_class_matches_double_sum(seed):
    x = randn64(seed, 2, 3, 5, 4)  # batched, rows not unit: the identity holds for any rows
    got = L.l_class(x)
    assert got.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            assert float(got[i, j]) == pytest.approx(ref_l_class(x[i, j]), rel=1e-12, abs=1e-12)
