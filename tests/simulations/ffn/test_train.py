"""Tests of simulations.ffn.train: the stacked network, the CLOP term of all seeds in one call, batched
training equal to separate runs, determinism, and the effect of the CLOP term (Sec. 4, Eq. (4))."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from clop import losses as clop_losses
from clop import prototypes as clop_prototypes
from simulations.ffn import autograd as fa
from simulations.ffn import data as fd
from simulations.ffn import native as ffn_native
from simulations.ffn import train as ft

pytestmark = pytest.mark.usefixtures("one_thread")


def test_train_runs_rejects_bad_input():
    data = fd.stack_data([fd.make_data(0)])
    with pytest.raises(ValueError, match="loss"):
        ft.train_runs("simclr", False, data, epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        ft.train_runs("dcl", False, data, epochs=-1)
    with pytest.raises(ValueError, match="data must be stacked"):
        ft.train_runs("dcl", False, fd.make_data(0), epochs=1)


def test_batched_ffn_equals_torch_sequential():
    """The stacked bmm network equals nn.Sequential(Linear, ReLU, Linear, ReLU, Linear) per seed."""
    params = ft.init_params((0, 1), hidden=8)
    x = torch.randn(2, 11, 3, generator=torch.Generator().manual_seed(0))
    out = fa.ffn(params, x)
    for s in range(2):
        net = torch.nn.Sequential(
            torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
        )
        with torch.no_grad():
            for layer, (w, b) in zip([net[0], net[2], net[4]], zip(params[0::2], params[1::2])):
                layer.weight.copy_(w[s].T)
                layer.bias.copy_(b[s, 0])
            torch.testing.assert_close(out[s], net(x[s]))
    # nn.Linear's default initialisation range: |w| <= 1/sqrt(fan_in)
    assert float(params[2].abs().max()) <= 1 / math.sqrt(8)


def test_clop_term_all_seeds_equals_clop_objective_per_seed():
    """One clop_term call on the stacked seeds == sum over seeds of CLOPObjective's CLOP part (both views)."""
    g = torch.Generator().manual_seed(3)
    s_, b, k = 3, 9, 3
    z1, z2 = torch.randn(s_, b, 3, generator=g), torch.randn(s_, b, 3, generator=g)
    labels = torch.randint(-1, k, (s_, b), generator=g)
    protos = torch.stack([torch.linalg.qr(torch.randn(3, 3, generator=g))[0].T for _ in range(s_)])
    got = fa.clop_term_all_seeds(z1, z2, labels, protos)
    want = 0.0
    for i in range(s_):
        obj = clop_losses.CLOPObjective(
            clop_losses.InfoNCELoss(), clop_losses.CLOPLoss(k, 3, prototypes=protos[i], device="cpu")
        )
        want = want + obj(z1[i], z2[i], labels[i])["clop"]
    torch.testing.assert_close(got, want)
    # and the formula itself, written out: sum over labeled rows of both views of 1 - cos(z, c_y)
    loop = 0.0
    for i in range(s_):
        for z in (z1[i], z2[i]):
            for row, y in zip(z, labels[i].tolist()):
                if y >= 0:
                    loop += 1.0 - float(row @ protos[i, y]) / float(row.norm())
    assert abs(float(got) - loop) < 1e-4


@pytest.mark.parametrize("engine", ["autograd", "fused", "native"])
def test_batched_training_equals_separate_runs(engine):
    """Training seeds together gives each seed's own result (no cross-talk), in every engine. Equal in exact
    arithmetic, so compared in float64, where rounding cannot decide it (float32 training amplifies last-bit
    differences of another summation order)."""
    if engine == "native" and not ffn_native.available():
        pytest.skip(ffn_native.status())
    seeds, f64 = [3, 4, 5], torch.float64
    data = fd.stack_data([fd.make_data(s) for s in seeds])
    kw = dict(epochs=3, dtype=f64, device="cpu", engine=engine)
    together = ft.train_runs("dcl", True, data, chunk=3, **kw)
    assert together.dtype == f64
    for i, s in enumerate(seeds):
        alone = ft.train_runs("dcl", True, fd.stack_data([fd.make_data(s)]), **kw)
        torch.testing.assert_close(together[i], alone[0], rtol=0, atol=1e-10)
    chunked = ft.train_runs("dcl", True, data, chunk=2, **kw)
    torch.testing.assert_close(chunked, together, rtol=0, atol=1e-10)
    # and the check can fail: another seed's network is far away
    assert float((together[0] - together[1]).abs().max()) > 1e-2


def test_autograd_engine_vmap_equals_loop():
    data = fd.stack_data([fd.make_data(s) for s in (3, 4, 5)])
    kw = dict(epochs=3, dtype=torch.float64, device="cpu", engine="autograd")
    vm = ft.train_runs("barlowtwins", True, data, loss_mode="vmap", **kw)
    lp = ft.train_runs("barlowtwins", True, data, loss_mode="loop", **kw)
    torch.testing.assert_close(vm, lp, rtol=0, atol=1e-10)


@pytest.mark.parametrize("engine", ["auto", "autograd"])
def test_run_is_deterministic_for_a_seed(engine):
    kwargs = dict(losses=("infonce", "vicreg"), epochs=3, show_progress=False, device="cpu",  # bit-exact: CPU
                  engine=engine)
    r1, e1, _ = ft.run_experiment([0, 1], **kwargs)
    r2, e2, _ = ft.run_experiment([0, 1], **kwargs)
    pd.testing.assert_frame_equal(r1, r2, check_exact=True)
    for key in e1:
        assert torch.equal(e1[key], e2[key])
    assert list(r1.columns) == ["loss", "clop", "seed", "knn_accuracy", "stable_rank", "entropy_rank"]
    assert len(r1) == 2 * 2 * 2


def test_clop_term_changes_the_result_and_pulls_labeled_points_to_their_prototypes():
    data = fd.stack_data([fd.make_data(s) for s in (0, 1)])
    without = ft.train_runs("infonce", False, data, epochs=30)
    with_clop = ft.train_runs("infonce", True, data, epochs=30)
    assert float((without - with_clop).abs().max()) > 0.1
    for i, seed in enumerate(data.seeds):
        protos = clop_prototypes.orthonormal(3, 3, seed=seed, dtype=torch.float32, device="cpu")
        lab = data.labeled[i]
        cos = lambda z: torch.nn.functional.cosine_similarity(z[lab], protos[data.y[i][lab]], dim=1).mean()  # noqa: E731
        assert float(cos(with_clop[i])) > 0.9
        assert float(cos(with_clop[i])) > float(cos(without[i])) + 0.2
