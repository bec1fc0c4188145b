"""clop.collapse_modes: every measure against an independent numpy computation, the collapsed extremes, the
decision rules on made-up seeds, the claim records, and bad input refused with the argument named."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clop.collapse_modes import RULES, code_usage, collapse_modes, log_spectrum, mode_claims, verdict, within_cluster


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _cov_eigs(x: np.ndarray) -> np.ndarray:
    c = x - x.mean(0)
    return np.sort(np.linalg.eigvalsh(c.T @ c / len(x)))[::-1]


def _within_share(u: np.ndarray, assign: np.ndarray) -> float:
    total = sum(float(np.sum((row - u.mean(0)) ** 2)) for row in u)
    within = 0.0
    for a in set(assign.tolist()):
        members = u[assign == a]
        within += sum(float(np.sum((row - members.mean(0)) ** 2)) for row in members)
    return within / total


def test_the_measures_match_an_independent_computation():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(40, 5)) @ np.diag([3.0, 2.0, 1.0, 0.5, 0.1]) + 0.3
    logits = rng.normal(size=(40, 6)) * 2
    labels = np.repeat(np.arange(4), 10)
    m = collapse_modes(e, logits=logits, labels=labels)
    u = _unit(e)
    assert m["mu"] == pytest.approx(np.linalg.norm(u.mean(0)), rel=1e-12)
    w = _cov_eigs(e)
    assert m["stable_rank"] == pytest.approx(w.sum() ** 2 / (w**2).sum(), rel=1e-9)
    assert m["decades"] == pytest.approx(math.log10(w[0] / w[-1]), rel=1e-9)
    np.testing.assert_allclose(log_spectrum(e), np.log10(w), rtol=1e-9)
    p = np.exp(logits - logits.max(1, keepdims=True))
    pbar = (p / p.sum(1, keepdims=True)).mean(0)
    h = -(pbar * np.log(pbar)).sum()
    assert m["code_entropy"] == pytest.approx(h / math.log(6), rel=1e-12)
    assert m["code_share"] == pytest.approx(math.exp(h) / 6, rel=1e-12)
    assert m["codes_used"] == len(set(logits.argmax(1).tolist()))
    assign = logits.argmax(1)
    sizes = {a: int((assign == a).sum()) for a in set(assign.tolist())}
    keep = np.array([sizes[a] >= 2 for a in assign])
    assert m["cluster_points"] == keep.sum()
    assert m["within_cluster"] == pytest.approx(_within_share(u[keep], assign[keep]), rel=1e-9)
    assert m["within_class"] == pytest.approx(_within_share(u, labels), rel=1e-9)


def test_the_collapsed_extremes():
    same = np.tile([[0.3, -1.0, 2.0]], (8, 1))
    assert collapse_modes(same)["mu"] == pytest.approx(1.0)
    one_code = np.zeros((8, 4))
    one_code[:, 2] = 50.0
    usage = code_usage(one_code)
    assert usage["code_entropy"] == pytest.approx(0.0, abs=1e-12) and usage["codes_used"] == 1
    uniform = code_usage(np.zeros((8, 4)))
    assert uniform["code_entropy"] == pytest.approx(1.0) and uniform["code_share"] == pytest.approx(1.0)
    points = np.repeat(np.eye(3), 4, axis=0)
    share, counted = within_cluster(points, np.repeat(np.arange(3), 4))
    assert share == pytest.approx(0.0, abs=1e-15) and counted == 12


def test_singletons_do_not_count_and_nothing_left_is_nan():
    z = np.eye(4)
    share, counted = within_cluster(z, [0, 1, 2, 3])
    assert math.isnan(share) and counted == 0


def test_the_rules_decide_on_made_up_seeds():
    rule = RULES["representation"]
    assert verdict([0.50, 0.52, 0.48, 0.51, 0.49, 0.50], rule)[0] == "holds"
    assert verdict([0.99, 0.98, 0.99, 0.97, 0.99, 0.98], rule)[0] == "fails"
    assert verdict([0.5, 0.9, 0.95, 0.7], rule)[0] == "inconclusive"  # fewer than 6 seeds
    assert verdict([math.nan] * 6, rule)[0] == "not testable"
    cluster = RULES["cluster"]
    assert verdict([0.9, 0.92, 0.88, 0.91, 0.9, 0.93], cluster)[0] == "holds"
    assert verdict([0.2, 0.25, 0.22, 0.18, 0.21, 0.2], cluster)[0] == "fails"


def test_mode_claims_combine_the_cells():
    good = {"mu": [0.5] * 3 + [0.52] * 3, "decades": [1.0, 1.1, 0.9, 1.0, 1.05, 0.95],
            "code_entropy": [0.9, 0.92, 0.88, 0.91, 0.9, 0.93], "within_cluster": [0.2, 0.21, 0.19, 0.2, 0.22, 0.18]}
    bad = dict(good, code_entropy=[0.2, 0.25, 0.22, 0.18, 0.21, 0.2])
    claims = mode_claims({"a": good, "b": bad}, id_prefix="X", setting="test", evidence="e.md", command="cmd")
    verdicts = {c.id: c.verdict for c in claims}
    assert verdicts == {"X-representation": "holds", "X-dimensional": "holds", "X-cluster": "fails",
                        "X-intracluster": "holds"}
    assert all(c.paper == "2410.04959" for c in claims)
    assert "b: code_entropy 0.21" in next(c.result for c in claims if c.id == "X-cluster")


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="emb must be a matrix"):
        collapse_modes(np.ones(5))
    with pytest.raises(ValueError, match="logits must have c >= 2"):
        code_usage(np.ones((4, 1)))
    with pytest.raises(ValueError, match="logits must have N = 4 rows"):
        collapse_modes(np.eye(4), logits=np.ones((3, 2)))
    with pytest.raises(ValueError, match="assign must have N = 4"):
        within_cluster(torch.eye(4), [0, 1])
