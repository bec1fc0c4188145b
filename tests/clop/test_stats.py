"""Tests of clop/stats.py: the paired t-interval against closed forms and its coverage, and the verdict rules.

The rules applied to Table 5's numbers are also tested in tests/simulations/test_synthetic_ffn.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from clop import stats as ps


def test_paired_interval_matches_closed_form_t_quantiles():
    """Student-t quantiles have closed forms for 1 and 2 degrees of freedom (Cauchy: tan(pi (p - 1/2));
    df = 2: (2p - 1) / sqrt(2 p (1 - p))): the 95 % interval of 2 and 3 paired differences uses them."""
    p = 0.975
    for diffs, q in (([1.0, 3.0], math.tan(math.pi * (p - 0.5))), ([1.0, 2.0, 6.0], (2 * p - 1) / math.sqrt(2 * p * (1 - p)))):
        d = np.array(diffs)
        g = ps.paired_gain(d)
        se = d.std(ddof=1) / math.sqrt(d.size)
        assert g.mean == pytest.approx(d.mean()) and g.se == pytest.approx(se)
        assert (g.low, g.high) == (pytest.approx(d.mean() - q * se), pytest.approx(d.mean() + q * se))
    assert (ps.paired_gain([2.0, -1.0, 0.0]).up, ps.paired_gain([2.0, -1.0, 0.0]).down) == (1, 1)


def test_paired_interval_covers_the_true_mean_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    trials, n = 4000, 6
    draws = rng.normal(1.5, 2.0, size=(trials, n))
    hits = 0
    for d in draws:
        g = ps.paired_gain(d)
        hits += g.low <= 1.5 <= g.high
    se = math.sqrt(0.95 * 0.05 / trials)  # binomial standard error of the coverage
    assert abs(hits / trials - 0.95) < 4 * se, hits / trials


def test_one_seed_is_inconclusive_and_bad_diffs_are_refused():
    assert ps.direction_verdict(ps.paired_gain([5.0]), 1.0)[0] == "inconclusive"
    with pytest.raises(ValueError, match="diffs"):
        ps.paired_gain([])
    with pytest.raises(ValueError, match="finite"):
        ps.paired_gain([1.0, float("nan")])



def test_verdicts_need_the_decision_margin():
    # mean 3.2, SE 1.0, n = 10: the interval [0.94, 5.46] clears 0, but by less than 2 SE
    g = ps.paired_gain([6.2, 0.2] * 5)
    assert g.low > 0 and ps.direction_verdict(g, 1.0)[0] == "inconclusive"
    assert ps.direction_verdict(g, 1.0, margin=0.5)[0] == "holds"
    # the same numbers shifted by +2: clears 0 by more than 2 SE
    assert ps.direction_verdict(ps.paired_gain([8.2, 2.2] * 5), 1.0)[0] == "holds"
    assert ps.direction_verdict(ps.paired_gain([-8.2, -2.2] * 5), 1.0)[0] == "fails"
    # the margin is the shift of the mean, in SE, that changes the verdict
    g = ps.paired_gain([8.2, 2.2] * 5)
    judge = ps.raises_judge(1.0)
    assert ps.margin_se(g, judge) == pytest.approx(g.low / g.se - ps.DECISION_MARGIN_SE)
    assert math.isnan(ps.margin_se(ps.paired_gain([1.0]), judge))
