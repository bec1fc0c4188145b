"""Rung 2 (simulations.rungs.encoder, encoder_theory, data): the mapping from rung 1's critical step to a
critical lr on a Gaussian mixture with a known Gram spectrum, and the optimisers."""

from __future__ import annotations

import math

import pytest
import torch

from simulations.rungs.data import digits_views, gram_eigenvalues, mixture_views
from simulations.rungs.encoder import LARS_ETA, MOMENTUM, Encoder
from simulations.rungs.encoder_theory import encoder_optimum, optimum_from_views, predictions
from simulations.rungs.engine import run
from simulations.rungs.linearise import critical_step, fixed_point, tangent_model
from simulations.rungs.problem import Problem
from simulations.rungs.study_encoder import PerturbedStart, grew

pytestmark = pytest.mark.usefixtures("one_thread")


def test_mixture_has_the_chosen_gram_spectrum():
    s = torch.linspace(3.0, 0.5, 12, dtype=torch.float64)
    x = mixture_views(3, 2, p=20, spectrum=s.numpy())
    assert torch.allclose(gram_eigenvalues(x).flip(0), s**2, rtol=1e-10)
    assert torch.allclose(gram_eigenvalues(mixture_views(3, 2, p=20)), torch.ones(12, dtype=torch.float64))
    with pytest.raises(ValueError, match="p >= 2N"):
        mixture_views(3, 4, p=20)


@pytest.mark.parametrize("loss", ["infonce", "lclass"])
@pytest.mark.parametrize("s,r", [(1.0, 1.0), (2.0, 1.5)])
def test_mapping_is_exact_for_a_flat_gram_spectrum(loss, s, r):
    """K = s^2 I and equal output norms r: 2/lambda_max(H_W) = r^2 lr_1 / s^2, lr_1 the rung-1 step of the
    normalised-forward loss (textbook = critical for InfoNCE; L_class: the Riemannian one, 1/K)."""
    p = Problem.make(loss, 3, 1, d=7)
    x = mixture_views(3, 1, p=16, spectrum=torch.full((6,), s, dtype=torch.float64).numpy())
    enc = Encoder(p, x, "linear", "gd")
    fp = fixed_point(p)
    opt = optimum_from_views(enc, fp.z, r=r)
    pred = predictions(enc, opt)
    lr1 = critical_step(tangent_model(p, fp.z))["textbook"]
    assert pred["gd"] == pytest.approx(r**2 * lr1 / s**2, rel=1e-6)
    assert pred["mapped"] == pytest.approx(pred["gd"], rel=1e-6)
    assert pred["momentum"] == pytest.approx((1 + MOMENTUM) * pred["gd"], rel=1e-12)


def test_mapping_bounds_hold_for_a_decaying_spectrum():
    p = Problem.make("infonce", 3, 1, d=7)
    x = mixture_views(3, 1, p=16, spectrum="decay")
    enc = Encoder(p, x, "linear", "gd")
    pred = predictions(enc, encoder_optimum(enc))
    assert pred["mapped_lo"] * (1 - 1e-6) <= pred["gd"] <= pred["mapped_hi"] * (1 + 1e-6)


@pytest.mark.slow
def test_measured_local_critical_lr_matches_the_prediction():
    """From the optimum plus a small perturbation, GD at 0.9 x the predicted lr returns without growing the
    weights; at 1.1 x the perturbation grows (and the weights with it), although the run then settles again."""
    p = Problem.make("infonce", 3, 1, d=7)
    x = mixture_views(3, 1, p=16, spectrum="flat")
    enc = Encoder(p, x, "linear", "gd")
    opt = optimum_from_views(enc, fixed_point(p).z)
    pred = predictions(enc, opt)["gd"]
    rec = run(PerturbedStart(enc, opt.params), [0, 0], [0.9 * pred, 1.1 * pred], 200, loss_opt=opt.loss,
              rank_opt=opt.rank)
    assert grew(rec).tolist() == [False, True]
    assert not rec["failed"][1]  # the self-stabilisation of a scale-invariant loss


def test_lars_moves_each_weight_by_lr_eta_its_norm():
    p = Problem.make("infonce", 3, 1, d=7)
    enc = Encoder(p, digits_views(3, 1), "mlp", "lars", hidden=8)
    state = enc.init([0])
    lr = torch.tensor([2.0], dtype=torch.float64)
    new = enc.step(state, lr, 0)
    for k in ("W1", "W2"):
        rel = float((new[k] - state[k]).norm() / state[k].norm())
        assert rel == pytest.approx(2.0 * LARS_ETA, rel=1e-9)
    grads = enc.gradients(enc.params(state))
    assert torch.allclose(new["b2"], state["b2"] - 2.0 * grads["b2"])  # biases: no trust ratio


def test_scale_invariance_lets_gd_grow_the_weights_instead_of_collapsing():
    p = Problem.make("lclass", 3, 1, d=7)
    enc = Encoder(p, digits_views(3, 1), "linear", "gd")
    rec = run(enc, [0], [1e3], 100, loss_opt=-6.0, rank_opt=5)
    assert not rec["collapsed"][0] and rec["log10_weight_norm"][0] > 1.0


def test_encoder_refuses_bad_settings():
    p = Problem.make("infonce", 3, 1, d=7)
    x = digits_views(3, 1)
    with pytest.raises(ValueError, match="model"):
        Encoder(p, x, "cnn")
    with pytest.raises(ValueError, match="optimiser"):
        Encoder(p, x, "linear", "adam")
    with pytest.raises(ValueError, match="2N"):
        Encoder(p, x[:4])
    with pytest.raises(ValueError, match="batch"):
        Encoder(Problem.make("infonce", 3, 2, d=7, batch=2), digits_views(3, 2))
    assert math.isfinite(float(x.sum()))
