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


# ---------------------------------------------------------------------------------------------------
# no decision from artefacts: too few pairs, zero spread, a spread below the resolution


def test_fewer_than_six_pairs_never_decide():
    for n in range(2, ps.MIN_PAIRS):
        g = ps.paired_gain([5.0 + 0.1 * i for i in range(n)])
        assert ps.direction_verdict(g, 1.0)[0] == "inconclusive"
        assert ps.size_verdict(g, 5.0)[0] == "inconclusive"
        assert ps.equivalence_verdict(g, 100.0)[0] == "inconclusive"
        assert math.isnan(ps.margin_se(g, ps.raises_judge(1.0)))
    g = ps.paired_gain([5.0 + 0.1 * i for i in range(ps.MIN_PAIRS)])
    assert ps.direction_verdict(g, 1.0)[0] == "holds"


def test_zero_spread_is_inconclusive_and_has_no_margin():
    for value in (1.11, 0.3, -2.0):
        g = ps.paired_gain([value] * 8)
        assert g.se == 0 and ps.direction_verdict(g, 1.0)[0] == "inconclusive"
        assert math.isnan(ps.margin_se(g, ps.raises_judge(1.0)))


def test_the_resolution_floors_the_spread():
    """Top-1 on 359 test images moves in steps of 100/359 pp: differences that all equal one step are
    rounding, and with the floor the interval is as wide as that step allows."""
    step = 100 / 359
    g = ps.paired_gain([step] * 8, resolution=step)
    assert g.floored and g.std == step and g.se == pytest.approx(step / math.sqrt(8))
    assert g.high - g.low > 0
    assert ps.direction_verdict(g, 1.0)[0] == "fails"  # one image's gain is negligible against 1 pp, decidedly
    d = [step, 0.0, 2 * step, 3 * step, 0.0, step, 2 * step, 0.0]
    assert not ps.paired_gain(d, resolution=step).floored  # a real spread above the resolution is kept
    with pytest.raises(ValueError, match="resolution"):
        ps.paired_gain(d, resolution=-1.0)


# ---------------------------------------------------------------------------------------------------
# every deciding threshold cleared by the margin, on the holds side as on the fails side


def _gain(mean: float, se: float, n: int = 100) -> ps.PairedGain:
    """A PairedGain with the given mean and SE (differences built to have exactly that spread)."""
    half = math.sqrt(n - 1) * se  # n/2 values at mean +- half give std = se * sqrt(n) ... up to ddof
    d = np.array([mean + half, mean - half] * (n // 2))
    g = ps.paired_gain(d)
    return ps.paired_gain(mean + (d - mean) * (se / g.se))


def test_holds_needs_the_negligible_band_cleared_too():
    """[0.50, 1.01] pp at n = 100 clears 0 but not +1 pp by the margin: not decided (it used to hold, and a
    shift of 0.08 SE made it inconclusive). Shifted by up to +-0.99 margins it stays undecided until its upper
    end clears +1 pp by the margin (the upper end moves from 1.01 to 1.01 + 1.98 SE, the margin is 2 SE of
    0.13 pp); no shift in this range reaches a "fails" (that needs the upper end 2 SE below +1 pp)."""
    se = (1.01 - 0.50) / 2 / ps._t_quantile(99)
    g = _gain(0.755, se)
    assert g.low == pytest.approx(0.50) and g.high == pytest.approx(1.01)
    assert ps.direction_verdict(g, 1.0)[0] == "inconclusive"
    margin = ps.DECISION_MARGIN_SE * se
    seen = []
    for shift in np.linspace(-0.99, 0.99, 21) * margin:
        shifted = _gain(0.755 + shift, se)
        expected = "holds" if shifted.low > margin and shifted.high > 1.0 + margin else "inconclusive"
        seen.append(ps.direction_verdict(shifted, 1.0)[0])
        assert seen[-1] == expected, (shift / se, shifted.low, shifted.high)
    assert seen == ["inconclusive"] * 20 + ["holds"]  # only the largest shift (+1.98 SE) is decided
    assert ps.direction_verdict(_gain(3.0, 0.3), 1.0)[0] == "holds"
    m = ps.margin_se(_gain(3.0, 0.3), ps.raises_judge(1.0))
    g = _gain(3.0, 0.3)
    assert m == pytest.approx(min(g.low - 0.6, g.high - 1.0 - 0.6) / 0.3)


def test_decided_verdicts_never_flip_to_the_opposite_within_the_margin():
    rng = np.random.default_rng(1)
    judges = [ps.raises_judge(1.0), ps.size_judge(3.0), ps.equivalence_judge(1.0)]
    for _ in range(300):
        g = _gain(rng.uniform(-4, 6), rng.uniform(0.05, 1.5), n=int(rng.integers(6, 60)) // 2 * 2)
        for judge in judges:
            base = judge(g)[0]
            if base == "inconclusive":
                continue
            for frac in (-0.99, -0.5, 0.5, 0.99):
                s = frac * ps.DECISION_MARGIN_SE * g.se
                moved = judge(ps.PairedGain(g.n, g.mean + s, g.std, g.se, g.low + s, g.high + s, g.up, g.down))[0]
                assert moved in (base, "inconclusive")


def test_equivalence_is_two_sided():
    assert ps.equivalence_verdict(_gain(0.1, 0.1), 1.0)[0] == "holds"
    assert ps.equivalence_verdict(_gain(-3.0, 0.2), 1.0)[0] == "fails"
    assert ps.equivalence_verdict(_gain(3.0, 0.2), 1.0)[0] == "fails"
    assert ps.equivalence_verdict(_gain(0.9, 0.2), 1.0)[0] == "inconclusive"


# ---------------------------------------------------------------------------------------------------
# the level the rule carries, and Holm's correction within a claim


def test_one_sided_level_matches_simulation():
    """With the true mean exactly at 0, "raises" (a tiny negligible band) holds as often as the stated level."""
    rng = np.random.default_rng(2)
    n, trials = 8, 40000
    level = ps.one_sided_level(n)
    draws = rng.normal(0.0, 1.0, size=(trials, n))
    hits = sum(ps.direction_verdict(ps.paired_gain(d), 1e-9)[0] == "holds" for d in draws)
    se = math.sqrt(level * (1 - level) / trials)
    assert abs(hits / trials - level) < 5 * se + 1e-4, (hits / trials, level)
    assert ps.one_sided_level(100) < ps.one_sided_level(8) < 0.025


def test_decision_alpha_is_where_the_verdict_starts():
    g = _gain(-2.0, 0.35, n=20)
    judge = ps.raises_judge(1.0)
    a = ps.decision_alpha(g, judge)
    assert 0 < a < 0.05
    assert judge(ps.at_confidence(g, 1 - a * 1.01))[0] == "fails"
    assert judge(ps.at_confidence(g, 1 - a * 0.99))[0] == "inconclusive"
    assert ps.decision_alpha(_gain(3.0, 0.3), judge) == 1.0  # not a fails at all


def test_holm_keeps_strong_fails_and_drops_weak_ones_in_a_large_family():
    judge = ps.raises_judge(1.0)
    strong, weak = _gain(-3.0, 0.3, n=20), _gain(-1.6, 0.35, n=20)
    a_weak = ps.decision_alpha(weak, judge)
    assert judge(weak)[0] == "fails" and 0.05 / 12 < a_weak < 0.05  # fails alone, not after 12-fold correction
    family = [strong] + [weak] + [_gain(0.0, 2.0, n=20)] * 10
    keep = ps.holm_fails(family, [judge] * len(family))
    assert keep[0] and not keep[1] and not any(keep[2:])
    assert ps.holm_fails([weak], [judge]) == [True]  # a family of one: no correction


def test_margin_at_the_edges_of_the_negligible_band():
    """The margin is the distance, in SE, to the nearest threshold +- the decision margin: at +-negligible it
    shrinks to ~0 as an interval's end reaches -+(negligible - 2 SE), and the verdict changes just past it."""
    judge = ps.raises_judge(1.0)
    se = 0.1
    half = ps._t_quantile(99) * se
    edge = 1.0 - ps.DECISION_MARGIN_SE * se - half  # the mean whose high end sits on +negligible - m
    inside = _gain(edge - 0.01, se)
    assert ps.direction_verdict(inside, 1.0)[0] == "fails"
    assert ps.margin_se(inside, judge) == pytest.approx(0.1, abs=1e-6)
    assert ps.direction_verdict(_gain(edge + 0.01, se), 1.0)[0] == "inconclusive"
    # at -negligible: an interval within the band that does not lie below -m (else it fails that way too)
    se = 0.2
    half = ps._t_quantile(99) * se
    edge = -1.0 + ps.DECISION_MARGIN_SE * se + half  # the mean whose low end sits on -negligible + m
    inside = _gain(edge + 0.01, se)
    assert ps.direction_verdict(inside, 1.0)[0] == "fails" and inside.high > -ps.DECISION_MARGIN_SE * se
    assert ps.margin_se(inside, judge) == pytest.approx(0.05, abs=1e-6)
    assert ps.direction_verdict(_gain(edge - 0.01, se), 1.0)[0] == "inconclusive"
    # within the band and below 0 as well: fails either way, so the margin is to leaving both
    both = _gain(-0.59, 0.1)
    assert ps.direction_verdict(both, 1.0)[0] == "fails"
    assert ps.margin_se(both, judge) == pytest.approx((1.0 - 0.2 - both.high) / 0.1, rel=1e-6)
    # the holds side: the low end must clear +m and the high end +negligible + m
    se = 0.1
    half = ps._t_quantile(99) * se
    top = 1.0 + ps.DECISION_MARGIN_SE * se - half  # the mean whose high end sits on negligible + m
    assert ps.direction_verdict(_gain(top - 0.01, se), 1.0)[0] == "inconclusive"
    just = _gain(top + 0.01, se)
    assert ps.direction_verdict(just, 1.0)[0] == "holds" and ps.margin_se(just, judge) == pytest.approx(0.1, abs=1e-6)


def test_degenerate_samples_are_decided_only_through_the_resolution():
    """Six identical differences: without a resolution nothing is decided (SE = 0, margin NaN); with one, the
    spread is the resolution's and the margin is finite."""
    bare = ps.paired_gain([2.0] * 6)
    assert bare.se == 0 and ps.direction_verdict(bare, 1.0)[0] == "inconclusive"
    assert math.isnan(ps.margin_se(bare, ps.raises_judge(1.0)))
    floored = ps.paired_gain([2.0] * 6, resolution=0.3)
    assert floored.floored and floored.se == pytest.approx(0.3 / math.sqrt(6))
    assert ps.direction_verdict(floored, 1.0)[0] == "holds"
    assert 0 < ps.margin_se(floored, ps.raises_judge(1.0)) < math.inf
    assert ps.direction_verdict(ps.paired_gain([2.0] * 5, resolution=0.3), 1.0)[0] == "inconclusive"  # n < 6
