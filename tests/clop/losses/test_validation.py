"""Bad arguments to the losses: each refused with a ValueError that names the argument."""

from __future__ import annotations

import pytest
import torch

import clop.losses as L
from tests.clop.losses.references import (
    two_views,
)

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
    z1, z2 = two_views(5, n=6)
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
