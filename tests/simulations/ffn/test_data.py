"""Tests of simulations.ffn.data: the synthetic data of Sec. 4 of arXiv 2403.18699 (shapes, seeds, the
documented choices, the two regimes) and the reference classifiers (KNN, the Bayes-optimal rule)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simulations.ffn import data as fd

pytestmark = pytest.mark.usefixtures("one_thread")


def test_make_data_shapes_sizes_and_determinism():
    d = fd.make_data(7)
    assert d.x.shape == (500, 3) and d.y.shape == (500,) and d.labeled.shape == (500,)
    assert d.directions.shape == (3, 3) and d.x.dtype == torch.float32
    assert torch.bincount(d.y, minlength=3).tolist() == [167, 167, 166]
    assert torch.bincount(d.y[d.labeled], minlength=3).tolist() == [17, 17, 16]  # stratified 10% = 50 points
    assert d.train_labels[~d.labeled].eq(-1).all() and d.train_labels[d.labeled].equal(d.y[d.labeled])
    again = fd.make_data(7)
    for name in ("x", "y", "labeled", "directions", "t", "clean"):
        assert torch.equal(getattr(d, name), getattr(again, name)), name
    assert not torch.equal(d.x, fd.make_data(8).x)


def test_classes_lie_along_their_directions_with_noise_variance_005():
    """Per class: the noiseless points are exactly t u_c; the top principal direction of the NOISY points is u_c;
    the noise left after projecting out u_c has variance 0.05 per coordinate (pooled over 10 seeds)."""
    residual_sq, residual_dof = 0.0, 0
    for seed in range(10):
        d = fd.make_data(seed)
        u = d.directions.double()
        for c in range(3):
            m = d.y == c
            clean, x, t = d.clean[m].double(), d.x[m].double(), d.t[m].double()
            # noiseless points: rank 1, spanned by u_c
            sv = torch.linalg.svdvals(clean)
            assert float(sv[1] / sv[0]) < 1e-6
            torch.testing.assert_close(clean, t[:, None] * u[c], rtol=1e-6, atol=1e-6)
            # noisy points: top eigenvector of the (uncentred) second moment matrix is +-u_c
            evals, evecs = torch.linalg.eigh(x.T @ x / x.shape[0])
            assert abs(float(evecs[:, -1] @ u[c])) > 0.999
            # residual orthogonal to the line: 2 dimensions of pure noise
            r = x - (x @ u[c])[:, None] * u[c]
            residual_sq += float((r * r).sum())
            residual_dof += 2 * x.shape[0]
    var = residual_sq / residual_dof
    # estimate of a variance from residual_dof (= 10000) Gaussian squares: relative std sqrt(2 / dof) = 1.4%
    assert abs(var - 0.05) < 5 * 0.05 * math.sqrt(2 / residual_dof), var


def test_directions_and_magnitudes_follow_the_documented_choices():
    for seed in range(20):
        d = fd.make_data(seed)
        gram = (d.directions @ d.directions.T).double()
        torch.testing.assert_close(torch.diagonal(gram), torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-6)
        off = gram.abs()[~torch.eye(3, dtype=torch.bool)]
        assert float(off.max()) <= math.cos(math.radians(45.0)) + 1e-6
        assert float(d.t.abs().min()) >= 1.0 and float(d.t.abs().max()) <= 2.0
    signs = torch.cat([torch.sign(fd.make_data(s).t) for s in range(5)])
    assert abs(float(signs.mean())) < 0.1  # both halves of each line are used
    o = fd.make_data(3, directions="orthogonal")
    torch.testing.assert_close(o.directions @ o.directions.T, torch.eye(3), rtol=0, atol=1e-5)
    nrm = fd.make_data(3, magnitudes="normal", min_angle_deg=0.0)
    assert float(nrm.t.abs().min()) < 0.1  # N(0, 1) positions reach the origin


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"seed": -1}, "seed"),
        ({"seed": 0, "directions": "fixed"}, "directions"),
        ({"seed": 0, "magnitudes": "laplace"}, "magnitudes"),
        ({"seed": 0, "min_angle_deg": 90}, "min_angle_deg"),
        ({"seed": 0, "noise_var": -0.1}, "noise_var"),
        ({"seed": 0, "label_fraction": 0.0}, "label_fraction"),
        ({"seed": 0, "n": 2}, "n"),
    ],
)
def test_make_data_rejects_bad_input(kwargs, word):
    with pytest.raises(ValueError, match=word):
        fd.make_data(**kwargs)


def test_regime_of_names_the_two_reported_regimes():
    assert fd.regime_of("random", 45.0, "uniform") == "separable"
    assert fd.regime_of("random", 0, "normal") == "overlapping"
    assert fd.regime_of("random", 30.0, "normal") == "custom"
    assert fd.regime_of("orthogonal", 45.0, "uniform") == "custom"
    # make_data's defaults are the separable regime
    torch.testing.assert_close(fd.make_data(2).x, fd.make_data(2, **fd.REGIMES["separable"]).x, rtol=0, atol=0)


def test_overlapping_classes_are_gaussian_with_the_covariance_the_bayes_rule_uses():
    """t ~ N(0, 1): x given class c is N(0, u u^T + 0.05 I), so x^T Sigma^-1 x is chi-square with 3 degrees of
    freedom (mean 3, variance 6). Sigma^-1 by Sherman-Morrison, pooled over 10 seeds (5000 points)."""
    m2 = []
    for seed in range(10):
        d = fd.make_data(seed, **fd.REGIMES["overlapping"])
        for c in range(3):
            x, u = d.x[d.y == c].double(), d.directions[c].double()
            inv = (torch.eye(3, dtype=torch.float64) - torch.outer(u, u) / (0.05 + 1.0)) / 0.05
            m2.append(((x @ inv) * x).sum(1))
    m2 = torch.cat(m2)
    assert abs(float(m2.mean()) - 3.0) < 5 * math.sqrt(6.0 / m2.numel()), float(m2.mean())


def test_bayes_accuracy_matches_a_pointwise_closed_form_and_beats_raw_knn():
    data = fd.stack_data([fd.make_data(s, **fd.REGIMES["overlapping"]) for s in range(5)])
    got = fd.bayes_accuracy(data)
    for i in range(2):  # loop over points with the closed-form Gaussian log-density
        x, u = data.x[i].double().numpy(), data.directions[i].double().numpy()
        y, lab = data.y[i].numpy(), data.labeled[i].numpy()
        sizes = np.bincount(y, minlength=3)
        correct = total = 0
        for j in np.flatnonzero(~lab):
            best, arg = -np.inf, -1
            for c in range(3):
                proj = float(x[j] @ u[c])
                quad = (float(x[j] @ x[j]) - proj**2 / 1.05) / 0.05  # x^T Sigma_c^-1 x, Sherman-Morrison
                logdet = 3 * math.log(0.05) + math.log(1.0 + 1.0 / 0.05)
                score = -0.5 * quad - 0.5 * logdet + math.log(sizes[c] / y.size)
                if score > best:
                    best, arg = score, c
            correct += int(arg == y[j])
            total += 1
        assert got[i] == pytest.approx(correct / total)
    # the optimal rule beats KNN on the raw inputs on average (it knows the directions)
    assert np.mean(got) > np.mean(fd.input_knn_accuracy(data))
    with pytest.raises(ValueError, match="stacked"):
        fd.bayes_accuracy(fd.make_data(0))
    with pytest.raises(ValueError, match="noise_var"):
        fd.bayes_accuracy(data, noise_var=0.0)


def test_knn_accuracy_matches_a_brute_force_vote():
    g = np.random.default_rng(0)
    emb = g.normal(size=(120, 3))
    y = g.integers(0, 3, size=120)
    labeled = np.zeros(120, bool)
    labeled[g.choice(120, 30, replace=False)] = True
    tr, te = np.flatnonzero(labeled), np.flatnonzero(~labeled)
    correct = 0
    for j in te:
        dist = ((emb[tr] - emb[j]) ** 2).sum(1)
        votes = np.bincount(y[tr[np.argsort(dist)[:5]]], minlength=3)
        correct += int(np.argmax(votes) == y[j])
    assert fd.knn_accuracy(emb, y, labeled) == pytest.approx(correct / te.size)
