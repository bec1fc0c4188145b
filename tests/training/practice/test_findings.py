"""Findings and their combination (training.practice.findings): the resolution floor, the six-seed minimum, the
margin, bound and equivalence tests, Holm's correction within a claim, and the claim-level rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.practice import findings as F
from training.practice.table import TOP1_RESOLUTION_PP

STEP = TOP1_RESOLUTION_PP


def test_a_quantised_spread_of_zero_is_floored_at_one_test_image():
    """Eight seeds that all gain exactly one test image: without the floor SE = 0 would decide anything."""
    f = F.judge_diff("s", "m", [STEP] * 8, negligible=1.0, resolution=STEP, unit=" pp")
    assert f.floored and f.resolution == STEP and f.high - f.low > 0
    assert f.verdict == "fails" and 0 < f.margin < math.inf  # one image is decidedly negligible against 1 pp
    same = F.judge_diff("s", "m", [1.11] * 8, negligible=1.0, resolution=0.0)
    assert same.verdict == "inconclusive" and math.isnan(same.margin)  # no resolution given: SE = 0 decides nothing


def test_fewer_than_six_seeds_never_decide():
    for n in (2, 3, 5):
        f = F.judge_diff("s", "m", [5.0 + 0.3 * i for i in range(n)], negligible=1.0, resolution=STEP)
        assert f.verdict == "inconclusive" and math.isnan(f.margin)
    assert F.judge_diff("s", "m", [5.0 + 0.3 * i for i in range(6)], negligible=1.0, resolution=STEP).verdict == "holds"
    one = F.judge_diff("s", "m", [5.0], negligible=1.0, resolution=STEP)
    assert one.n == 1 and one.verdict == "inconclusive" and "at least 2" in one.reason
    ctx = F.judge_diff("s", "m", [5.0, 6.0], negligible=1.0, resolution=STEP, role="context")
    assert ctx.verdict == "—"


def test_bounds_and_similarity():
    rng = np.random.default_rng(0)
    above = F.judge_bound("s", "μ", 0.9996 + 0.0001 * rng.standard_normal(8), 0.999, resolution=1e-4)
    assert above.verdict == "holds" and above.reason == "the interval lies above 0.999"
    assert above.mean == pytest.approx(0.9996, abs=1e-4)  # the values themselves are reported, not values - bound
    below = F.judge_bound("s", "μ", 0.5 + 0.01 * rng.standard_normal(8), 0.999, resolution=1e-3)
    assert below.verdict == "fails" and below.reason == "the interval lies below 0.999"
    small = F.judge_bound("s", "x", 0.05 + 0.01 * rng.standard_normal(8), 0.1, above=False, resolution=0.002)
    assert small.verdict == "holds"
    near = F.judge_equiv("s", "d", 0.1 + 0.3 * rng.standard_normal(8), tolerance=1.0, resolution=STEP)
    far = F.judge_equiv("s", "d", 3.0 + 0.3 * rng.standard_normal(8), tolerance=1.0, resolution=STEP)
    assert (near.verdict, far.verdict) == ("holds", "fails")  # above by +3 pp is not "similar"


def test_holm_within_a_claim():
    rng = np.random.default_rng(1)
    z = rng.standard_normal(12)
    z = (z - z.mean()) / z.std(ddof=1)  # exactly mean 0, sd 1: the mean is then mean/SE standard errors from 0
    se = 1 / math.sqrt(12)
    strong = F.judge_diff("strong", "d", -8.0 * se + z, negligible=1.0, resolution=STEP)
    weak = F.judge_diff("weak", "d", -4.8 * se + z, negligible=1.0, resolution=STEP)  # t + 2 = 4.2 < 4.8 < 5.5
    flat = [F.judge_diff(f"flat{i}", "d", 0.5 * rng.standard_normal(12) + 3 * (i % 2 - 0.5), negligible=1.0,
                         resolution=STEP) for i in range(10)]
    ctx = F.judge_diff("ctx", "d", -5.0 + 0.1 * rng.standard_normal(12), negligible=1.0, resolution=STEP, role="context")
    assert strong.verdict == weak.verdict == "fails"
    out, m = F.holm([strong, weak, *flat, ctx])
    assert m == 12 and all(f.family == 12 for f in out[:12]) and out[12] == ctx
    assert out[0].verdict == "fails"
    assert out[1].verdict == "inconclusive" and "not after Holm's correction over 12 cells" in out[1].reason
    alone, m1 = F.holm([weak])
    assert m1 == 1 and alone[0].verdict == "fails"


def test_combining_verdicts():
    assert F.combine(["holds", "holds"]) == "holds"
    assert F.combine(["holds", "fails", "inconclusive"]) == "fails"
    assert F.combine(["holds", "inconclusive"]) == "inconclusive"
    assert F.combine(["not testable", "holds"]) == "holds" and F.combine(["not testable"] * 2) == "not testable"
    assert F.unanimous(["holds", "fails"]) == "inconclusive" and F.unanimous(["fails", "fails"]) == "fails"
    assert F.unanimous(["not testable", "holds"]) == "holds" and F.unanimous(["not testable"]) == "not testable"
    assert F.unanimous([]) == "inconclusive"
    with pytest.raises(ValueError, match="role"):
        F.judge_diff("s", "m", [1.0, 2.0], negligible=1.0, resolution=0.0, role="vote")
