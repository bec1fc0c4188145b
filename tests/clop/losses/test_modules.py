"""The loss modules, CLOPObjective (Eq. (4) of arXiv 2403.18699 as a whole), the registry and the docstring
examples."""

from __future__ import annotations

import doctest
import importlib
import math
import pkgutil

import pytest
import torch

import clop.losses as L
from clop import prototypes as P
from clop.losses import clop_objective, contrastive
from tests.clop.losses.references import (
    as_rows,
    dot,
    mixed_labels,
    randn64,
    ref_clop,
    ref_info_nce_sum,
    two_views,
    unit,
)

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
    z, y = randn64(8, 6, 5), mixed_labels(8, 6)
    assert float(loss(z, y)) == pytest.approx(ref_clop(z, y, loss.prototypes, similarity, 0.5, reduction), rel=1e-12)


@pytest.mark.parametrize("similarity", L.SIMILARITIES)
@pytest.mark.parametrize("reduction", L.REDUCTIONS)
def test_clop_term_maths_has_no_data_dependent_shapes(similarity, reduction):
    """The maths after validation runs under torch.func.vmap, which rejects boolean indexing and .item():
    a CPU-checkable proxy for "no host sync"."""
    c = P.orthonormal(3, 4, seed=0, dtype=torch.float64, device="cpu")
    y = torch.tensor([[0, -1, 2, 1, -1], [-1, -1, -1, -1, -1]])
    z = randn64(30, 2, 5, 4)
    batched = torch.func.vmap(lambda zz, yy: clop_objective._clop_term(zz, yy, c, similarity, 0.5, reduction))(z, y)
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
            clop_objective._clop_term(torch.cat([z1, z2]), torch.cat([y, y]), c, "cosine", 1.0, reduction)
        contrastive.supcon_unchecked(z1, z2, y, 0.1)
        L.info_nce(z1, z2)
        L.dcl(z1, z2)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("similarity", L.SIMILARITIES)
def test_objective_batch_is_eq4_as_printed_over_2n(similarity):
    """Eq. (4) with both sums as printed (sum-form InfoNCE + lam * sum over labeled views of both
    views), divided by 2N, equals CLOPObjective with the mean InfoNCE and reduction="batch"."""
    n, lam, t = 6, 0.8, 0.5
    z1, z2 = two_views(12, n=n)
    y = torch.tensor([0, -1, 2, 1, -1, 0])
    clop = L.CLOPLoss(3, 4, lam=lam, similarity=similarity, reduction="batch", seed=2, device="cpu")
    clop = clop.to(torch.float64)
    out = L.CLOPObjective(L.InfoNCELoss(t), clop)(z1, z2, y)
    c = as_rows(clop.prototypes)
    clop_sum = 0.0  # loop over both views, labeled samples only
    for view in (z1, z2):
        for row, label in zip(as_rows(view), y.tolist()):
            if label < 0:
                continue
            if similarity == "cosine":
                clop_sum += 1.0 - dot(unit(row), unit(c[label]))
            else:
                diffs = [a - b for a, b in zip(unit(row), c[label])]
                clop_sum += math.sqrt(sum(x * x for x in diffs)) if similarity == "euclidean" else sum(map(abs, diffs))
    expected = (ref_info_nce_sum(z1, z2, t) + lam * clop_sum) / (2 * n)
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
    original = clop_objective.check_labels

    def counting(*args, **kwargs):
        calls.append(kwargs.get("num_classes"))
        return original(*args, **kwargs)

    monkeypatch.setattr(clop_objective, "check_labels", counting)
    clop = L.CLOPLoss(3, 4, seed=1, device="cpu").to(torch.float64)
    obj = L.CLOPObjective(L.make_loss(base), clop)
    z1, z2 = two_views(4, n=6)
    out = obj(z1, z2, mixed_labels(4, 6))
    assert calls == [3]  # once, with the prototype count
    with pytest.raises(ValueError, match="labels must be < k=3"):
        obj(z1, z2, torch.tensor([0, 1, 3, -1, 0, 0]))
    with pytest.raises(ValueError, match="labels must be >= -1"):
        obj(z1, z2, torch.tensor([0, 1, -2, -1, 0, 0]))
    # the SupCon fast path gives the same numbers as the two public functions
    if base == "supcon":
        y = mixed_labels(4, 6)
        assert float(out["contrastive"]) == pytest.approx(float(L.supcon(z1, z2, y)), rel=1e-14)
        both = L.clop_term(torch.cat([z1, z2]), torch.cat([y, y]), clop.prototypes)
        assert float(out["clop"]) == pytest.approx(float(both), rel=1e-14)


@pytest.mark.parametrize("name", sorted(L.LOSSES))
def test_objective_sums_parts_and_uses_both_views(name):
    clop = L.CLOPLoss(3, 4, lam=0.8, seed=1, device="cpu").to(torch.float64)
    obj = L.CLOPObjective(L.make_loss(name), clop)
    z1, z2 = two_views(4, n=6)
    y = mixed_labels(4, 6)
    out = obj(z1, z2, y)
    assert set(out) == {"loss", "contrastive", "clop"}
    assert float(out["loss"]) == pytest.approx(float(out["contrastive"]) + float(out["clop"]), rel=1e-14)
    both = ref_clop(torch.cat([z1, z2]), torch.cat([y, y]), clop.prototypes, "cosine", 0.8, "sum")
    assert float(out["clop"]) == pytest.approx(both, rel=1e-12)
    plain = L.CLOPObjective(L.make_loss(name), None)(z1, z2, y)
    assert float(plain["clop"]) == 0.0
    assert float(plain["loss"]) == pytest.approx(float(out["contrastive"]), rel=1e-14)


def test_modules_match_functions_and_registry():
    z1, z2 = two_views(5)
    y = mixed_labels(5, 5)
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


LOSS_MODULES = ["clop.losses"] + [f"clop.losses.{m.name}" for m in pkgutil.iter_modules(L.__path__)]
"""The package and each of its modules, found on disk (a new module is tested without being listed here)."""


@pytest.mark.parametrize("name", LOSS_MODULES)
def test_docstring_examples_run(name):
    """Every example in the docstrings runs and prints what it shows, with the public names of clop.losses in
    scope (the examples use the package's API, wherever the function lives)."""
    public = {key: getattr(L, key) for key in L.__all__}
    result = doctest.testmod(importlib.import_module(name), extraglobs=public, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0, result  # every module shows how it is used


def test_every_module_of_the_package_is_doctested():
    assert len(LOSS_MODULES) == 8 and sum(1 for name in LOSS_MODULES if name.endswith("registry")) == 1
