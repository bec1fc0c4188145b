"""Our losses against the lightly library's (lightly 1.6.0), where the conventions agree.

lightly is not a dependency of the package; the test command installs it beside the pinned torch with
    pip install --no-deps lightly==1.6.0
(its lightly.loss needs nothing else). The tests skip only where lightly is not installed at all; an
installed lightly that fails to import is an error, not a skip.
"""

from __future__ import annotations

import pytest

import clop.losses as L
from tests.clop.losses.references import (
    SEEDS,
    two_views,
)
from tests.helpers import import_lightly


@pytest.fixture(scope="module")
def lightly_loss():
    return import_lightly("lightly.loss")


@pytest.mark.parametrize("seed", SEEDS)
def test_agrees_with_lightly(lightly_loss, seed):
    z1, z2 = two_views(seed, n=8, d=5)
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
