"""Tests of training.eval.probe: the linear probe against scikit-learn's logistic regression and numpy
statistics, and top-k accuracy against sklearn.metrics.top_k_accuracy_score and a loop over samples.
"""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import top_k_accuracy_score

from training.eval import probe as PR
from training.eval.probe import LinearProbe, fit_linear_probe, topk_accuracy


def _blobs(seed: int, n_per_class: int = 50, dim: int = 16, classes: int = 4, spread: float = 0.5):
    """Gaussian blobs at 4 * e_c + offset, features on very different scales (the probe standardises)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    centres = 4.0 * torch.eye(classes, dim)
    x = centres[y] + spread * torch.randn(len(y), dim, generator=g)
    scale = torch.logspace(-2, 2, dim)
    return (x + 10.0) * scale, y


# ------------------------------------------------------------------------------------------
# fit_linear_probe
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_probe_separates_linearly_separable_blobs():
    x, y = _blobs(0)
    probe = fit_linear_probe(x, y, 4, epochs=30, batch_size=32, device="cpu")
    assert isinstance(probe, LinearProbe) and not probe.training
    pred = probe(x).argmax(1)
    assert torch.equal(pred, y)  # 100 % train accuracy
    assert topk_accuracy(probe(x), y, ks=(1,)) == {1: 1.0}
    # and it generalises to fresh samples of the same blobs
    x_test, y_test = _blobs(1)
    assert topk_accuracy(probe(x_test), y_test, ks=(1,))[1] > 0.98


def test_probe_is_deterministic_for_a_seed():
    x, y = _blobs(2, spread=2.0)  # overlapping: the weights depend on the shuffling order
    a = fit_linear_probe(x, y, 4, epochs=5, batch_size=16, seed=7, device="cpu")
    b = fit_linear_probe(x, y, 4, epochs=5, batch_size=16, seed=7, device="cpu")
    c = fit_linear_probe(x, y, 4, epochs=5, batch_size=16, seed=8, device="cpu")
    for name, t in a.state_dict().items():
        assert torch.equal(t, b.state_dict()[name]), name
    assert not torch.equal(a.linear.weight, c.linear.weight)


def test_probe_standardisation_buffers_equal_numpy_mean_std(monkeypatch):
    monkeypatch.setattr(PR, "_STATS_CHUNK", 7)  # exercise the chunked accumulation (200 rows, 29 chunks)
    x, y = _blobs(3)
    x[:, 5] = 3.25  # a constant (dead) feature: only centred, std 1
    probe = fit_linear_probe(x, y, 4, epochs=1, batch_size=64, device="cpu")
    xn = x.double().numpy()
    np.testing.assert_allclose(probe.mean.numpy(), xn.mean(0), rtol=1e-6)
    std = xn.std(0)  # population std (ddof = 0)
    std[5] = 1.0
    np.testing.assert_allclose(probe.std.numpy(), std, rtol=1e-6)
    assert probe.mean.dtype == probe.std.dtype == torch.float32
    # forward really standardises: compare with the explicit formula
    z = (x - probe.mean) / probe.std
    torch.testing.assert_close(probe(x), z @ probe.linear.weight.T + probe.linear.bias)


@pytest.mark.slow
def test_probe_reaches_the_regularised_logistic_regression_optimum():
    """SGD's final objective is within 0.1 % of scikit-learn's exact optimum (lbfgs, multinomial).

    Ours: mean CE + (wd / 2) ||W||^2 (bias not decayed); sklearn: C * sum CE + ||W||^2 / 2 (intercept not
    penalised), the same minimiser for C = 1 / (wd * N). Both on the same standardised features.
    """
    g = torch.Generator().manual_seed(0)
    n, dim, classes, wd = 300, 8, 3, 1e-2
    y = torch.arange(n) % classes
    x = (torch.randn(classes, dim, generator=g)[y] + 1.5 * torch.randn(n, dim, generator=g) + 3.0)
    x = x * torch.linspace(0.5, 4.0, dim)
    probe = fit_linear_probe(x, y, classes, epochs=40, batch_size=32, weight_decay=wd, device="cpu")

    xd = x.double().numpy()
    xs = (xd - xd.mean(0)) / xd.std(0)
    yn = y.numpy()

    def objective(w, b):
        z = xs @ w.T + b
        z = z - z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        return -logp[np.arange(n), yn].mean() + 0.5 * wd * (w**2).sum()

    sk = LogisticRegression(C=1.0 / (wd * n), tol=1e-12, max_iter=10_000).fit(xs, yn)
    best = objective(sk.coef_, sk.intercept_)
    ours = objective(probe.linear.weight.detach().double().numpy(), probe.linear.bias.detach().double().numpy())
    assert best * (1 - 1e-6) <= ours <= best * (1 + 1e-3)


def test_probe_progress_bar_only_on_a_terminal_and_float64_input(capsys, monkeypatch):
    """A bar for people (stderr is a terminal), nothing for log files (no carriage-return updates)."""
    import clop.util.progress

    x, y = _blobs(4, n_per_class=10)
    monkeypatch.setattr(clop.util.progress, "interactive", lambda: True)
    probe = fit_linear_probe(x.double(), y, 4, epochs=2, batch_size=8, device="cpu", progress=True)
    assert "linear probe" in capsys.readouterr().err
    assert probe(x.double()).shape == (40, 4)
    monkeypatch.setattr(clop.util.progress, "interactive", lambda: False)
    fit_linear_probe(x.double(), y, 4, epochs=2, batch_size=8, device="cpu", progress=True)
    assert "linear probe" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "change, name",
    [
        ({"x": torch.ones(4)}, "x"),
        ({"x": torch.ones(4, 2, dtype=torch.long)}, "x"),
        ({"y": torch.zeros(4)}, "y"),
        ({"y": torch.zeros(3, dtype=torch.long)}, "y"),
        ({"y": torch.tensor([0, 1, 2, 3])}, "y"),
        ({"num_classes": 1}, "num_classes"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"momentum": 1.0}, "momentum"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"seed": 0.5}, "seed"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_probe_bad_arguments_raise(change, name):
    args = {"x": torch.randn(4, 2), "y": torch.tensor([0, 1, 2, 0]), "num_classes": 3}
    args.update(change)
    with pytest.raises(ValueError, match=rf"^{name}"):
        fit_linear_probe(args.pop("x"), args.pop("y"), args.pop("num_classes"), **args)


def test_linear_probe_module_validation_and_state_dict():
    with pytest.raises(ValueError, match="^std"):
        LinearProbe(3, 2, std=torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="^mean"):
        LinearProbe(3, 2, mean=torch.zeros(4))
    probe = LinearProbe(3, 2, mean=torch.tensor([1.0, 2.0, 3.0]), std=torch.tensor([2.0, 2.0, 2.0]))
    assert set(probe.state_dict()) == {"mean", "std", "linear.weight", "linear.bias"}
    with pytest.raises(ValueError, match="^x"):
        probe(torch.ones(2, 4))


# ------------------------------------------------------------------------------------------
# topk_accuracy
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_topk_accuracy_matches_sklearn_on_random_logits(seed):
    g = torch.Generator().manual_seed(seed)
    n, c = 200, 10
    logits = torch.randn(n, c, generator=g)  # continuous: no ties
    labels = torch.randint(0, c, (n,), generator=g)
    got = topk_accuracy(logits, labels, ks=(1, 5))
    assert set(got) == {1, 5}
    for k in (1, 5):
        expected = top_k_accuracy_score(labels.numpy(), logits.numpy(), k=k, labels=np.arange(c))
        assert got[k] == pytest.approx(expected, abs=1e-12)
    assert 0.0 < got[1] < got[5] < 1.0


def _loop_topk(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Pessimistic ties by a loop: correct when fewer than k other classes score >= the true class."""
    rows, hits = logits.tolist(), 0
    for row, t in zip(rows, labels.tolist()):
        others = sum(1 for j, v in enumerate(row) if j != t and v >= row[t])
        hits += others < k
    return hits / len(rows)


def test_topk_accuracy_ties_count_against_the_prediction():
    # row 0: true class tied for the top with one other -> wrong at k=1, right at k=2
    # row 1: all equal (collapsed output) -> wrong for every k < C, right at k = C
    # row 2: true class alone on top -> right; row 3: true class tied for 2nd with two others -> k >= 4
    logits = torch.tensor([[2.0, 2.0, 0.0, 1.0],
                           [1.0, 1.0, 1.0, 1.0],
                           [0.0, 3.0, 1.0, 1.0],
                           [5.0, 1.0, 1.0, 1.0]])
    labels = torch.tensor([1, 2, 1, 3])
    got = topk_accuracy(logits, labels, ks=(1, 2, 3, 4))
    assert got == {1: 0.25, 2: 0.5, 3: 0.5, 4: 1.0}
    for k in (1, 2, 3, 4):
        assert got[k] == _loop_topk(logits, labels, k)


def test_topk_accuracy_with_ties_is_invariant_to_class_order():
    g = torch.Generator().manual_seed(5)
    logits = torch.randint(0, 3, (100, 6), generator=g).float()  # many ties
    labels = torch.randint(0, 6, (100,), generator=g)
    base = topk_accuracy(logits, labels, ks=(1, 2, 5))
    for k in (1, 2, 5):
        assert base[k] == _loop_topk(logits, labels, k)
    perm = torch.randperm(6, generator=g)
    inverse = torch.argsort(perm)  # column j of the permuted logits is old class perm[j]
    assert topk_accuracy(logits[:, perm], inverse[labels], ks=(1, 2, 5)) == base


def test_topk_accuracy_nan_rows_are_wrong_and_k_equal_c_is_one():
    logits = torch.tensor([[float("nan"), 0.0, 1.0], [0.0, 1.0, 2.0]])
    labels = torch.tensor([0, 2])
    assert topk_accuracy(logits, labels, ks=(1, 3)) == {1: 0.5, 3: 0.5}
    assert topk_accuracy(torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1]), ks=3) == {3: 1.0}


def test_topk_accuracy_bad_input_raises():
    logits, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    with pytest.raises(ValueError, match=r"^ks .*k=5"):
        topk_accuracy(logits, labels, ks=(1, 5))
    with pytest.raises(ValueError, match="^ks"):
        topk_accuracy(logits, labels, ks=(0,))
    with pytest.raises(ValueError, match="^labels must have length"):
        topk_accuracy(logits, labels[:5])
    with pytest.raises(ValueError, match="^logits"):
        topk_accuracy(logits[0], labels, ks=(1,))
    with pytest.raises(ValueError, match="^labels"):
        topk_accuracy(logits, labels.float(), ks=(1,))
    with pytest.raises(ValueError, match="^labels must lie"):
        topk_accuracy(logits, labels + 1, ks=(1,))
    with pytest.raises(ValueError, match="^logits must have at least one row"):
        topk_accuracy(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), ks=(1,))


def test_doctests():
    result = doctest.testmod(PR, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0
