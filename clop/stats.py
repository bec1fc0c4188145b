"""Paired statistics and verdicts with a decision margin (used for arXiv 2403.18699's empirical claims).

A claim such as "CLOP raises the KNN accuracy" is judged from paired differences d_s (one per seed: the
same seed trained with and without the change). :func:`paired_gain` gives their mean with the two-sided 95 %
Student-t interval [low, high] = mean +- t_{0.975, n-1} * SE, SE = std / sqrt(n) (scipy.stats.t).

A verdict is printed only when the data decide it clearly: the interval must clear every threshold that
would change the verdict by at least DECISION_MARGIN_SE standard errors, otherwise the verdict is
``inconclusive``. On another machine (float32 rounding changes training trajectories) or with another set of
seeds the mean moves by a fraction of a standard error to about one, so a decided verdict stays where it is;
without the margin, a claim whose interval ends near a threshold would be decided differently from machine
to machine. Two kinds of claim:

* "the change raises the quantity" (:func:`direction_verdict`), thresholds -negligible, 0, +negligible:
    - ``fails`` when the whole interval lies within +-negligible (no effect worth the name, either way),
    - ``holds`` when it lies above 0,
    - ``fails`` when it lies below 0 (the change lowers it),
    - ``inconclusive`` otherwise (the interval straddles a threshold, or clears it by less than the margin).
  ``negligible`` is the caller's smallest effect of interest; without such a band a true effect of ~0 would
  be called ``holds``, ``fails`` or ``inconclusive`` at random.
* "... by the printed amount" (:func:`size_verdict`, thresholds 0 and the printed effect > 0): ``fails`` when
  the interval misses the printed effect by at least the margin (the detail says whether ours is smaller or
  larger); ``holds`` when the interval holds the printed effect and clears 0 by the margin; ``inconclusive``
  otherwise.

:func:`margin_se` gives how far, in standard errors, the mean would have to move to change a verdict.
numpy only, with scipy imported for the t quantile.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DECISION_MARGIN_SE", "PairedGain", "paired_gain", "direction_verdict", "size_verdict", "raises_judge",
    "size_judge", "margin_se",
]

CONFIDENCE = 0.95
DECISION_MARGIN_SE = 2.0  # see the module docstring


@dataclass(frozen=True)
class PairedGain:
    """Summary of n paired differences (percentage points): mean, sample std, standard error, the 95 %
    t-interval [low, high], and how many seeds went up / down."""

    n: int
    mean: float
    std: float
    se: float
    low: float
    high: float
    up: int
    down: int

    def interval_text(self, unit: str = "pp", digits: int = 2) -> str:
        """'+2.38 pp [+1.60, +3.16]' (the mean, then the 95 % interval)."""
        if self.n < 2:
            return f"{self.mean:+.{digits}f} {unit} (one seed: no interval)".replace("  ", " ")
        return f"{self.mean:+.{digits}f} {unit} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]".replace("  ", " ")


@functools.lru_cache(maxsize=None)
def _t_quantile(df: int) -> float:
    """The two-sided 95 % Student-t quantile for ``df`` degrees of freedom (cached: the bootstrap of
    simulations/table5_seeds.py asks for the same few df some 100,000 times)."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, df))


def paired_gain(diffs) -> PairedGain:
    """Mean paired difference with its two-sided 95 % Student-t interval. diffs: (n,) finite numbers, n >= 1."""
    d = np.asarray(diffs, dtype=np.float64).reshape(-1)
    if d.size == 0:
        raise ValueError("diffs must hold at least one paired difference; got an empty sequence")
    if not np.isfinite(d).all():
        raise ValueError(f"diffs must be finite; got {int((~np.isfinite(d)).sum())} non-finite value(s)")
    n, mean = d.size, float(d.mean())
    if n < 2:
        return PairedGain(1, mean, math.nan, math.nan, math.nan, math.nan, int(d[0] > 0), int(d[0] < 0))
    std = float(d.std(ddof=1))
    se = std / math.sqrt(n)
    half = _t_quantile(n - 1) * se
    return PairedGain(n, mean, std, se, mean - half, mean + half, int((d > 0).sum()), int((d < 0).sum()))


def direction_verdict(g: PairedGain, negligible: float, margin: float = DECISION_MARGIN_SE,
                      unit: str = "") -> tuple[str, str]:
    """Verdict on "the change raises the quantity" from the interval of ``g`` (module docstring);
    ``negligible`` > 0 in the units of the differences; ``unit`` is appended to numbers in the reason."""
    if g.n < 2:
        return "inconclusive", "one seed gives no interval"
    m = margin * g.se
    if -negligible < g.low and g.high < negligible:  # inside the band of negligible gains
        if -negligible + m < g.low and g.high < negligible - m:
            return "fails", f"no effect worth the name: the whole interval lies within ±{negligible:g}{unit}"
        return "inconclusive", f"the interval lies within ±{negligible:g}{unit} by less than {margin:g} standard errors"
    if g.low > 0:
        if g.low > m:
            return "holds", "the interval lies above 0"
        return "inconclusive", f"the interval clears 0 by less than {margin:g} standard errors"
    if g.high < 0:
        if g.high < -m:
            return "fails", "the change lowers it: the interval lies below 0"
        return "inconclusive", f"the interval clears 0 by less than {margin:g} standard errors"
    return "inconclusive", "the interval straddles 0"


def size_verdict(g: PairedGain, printed: float, margin: float = DECISION_MARGIN_SE,
                 unit: str = "") -> tuple[str, str]:
    """Verdict on "the change raises the quantity by the printed ``printed``" (> 0) from the interval of ``g``."""
    if g.n < 2:
        return "inconclusive", "one seed gives no interval"
    m = margin * g.se
    if g.high < printed - m:
        return "fails", f"smaller than printed: the interval lies below {printed:+.4g}{unit}"
    if g.low > printed + m:
        return "fails", f"larger than printed: the interval lies above {printed:+.4g}{unit}"
    if g.low <= printed <= g.high and g.low > m:
        return "holds", f"the interval lies above 0 and holds the printed {printed:+.4g}{unit}"
    if g.low <= m:
        return "inconclusive", f"the interval does not clear 0 by {margin:g} standard errors, so it cannot confirm an effect"
    return "inconclusive", f"the printed {printed:+.4g}{unit} lies just outside the interval (less than {margin:g} SE)"


def raises_judge(negligible: float, unit: str = ""):
    """:func:`direction_verdict` with ``negligible`` fixed, in the form :func:`margin_se` takes."""
    def judge(g: PairedGain) -> tuple[str, str]:
        return direction_verdict(g, negligible, unit=unit)

    judge.thresholds = (0.0, negligible, -negligible)
    return judge


def size_judge(printed: float, unit: str = ""):
    """:func:`size_verdict` with ``printed`` fixed, in the form :func:`margin_se` takes."""
    def judge(g: PairedGain) -> tuple[str, str]:
        return size_verdict(g, printed, unit=unit)

    judge.thresholds = (0.0, float(printed))
    return judge


def margin_se(g: PairedGain, judge) -> float:
    """How far, in standard errors, the mean must move (the interval with it) before ``judge(g)``'s verdict
    changes; inf if no shift changes it, NaN for fewer than two seeds.

    ``judge``: from :func:`raises_judge` or :func:`size_judge` (a callable PairedGain -> (verdict, reason) with
    a ``thresholds`` attribute). The verdicts are piecewise constant in the shift, with breaks where an end of
    the interval meets a threshold or a threshold +- the decision margin, so only those shifts are tried.
    """
    if g.n < 2:
        return math.nan
    if g.se == 0:
        return math.inf
    base = judge(g)[0]
    m = DECISION_MARGIN_SE * g.se
    values = set()
    for t in judge.thresholds:
        values.update((t, t + m, t - m))
    steps = sorted({abs(v - end) for v in values for end in (g.low, g.high)})
    tiny = 1e-9 * (1.0 + max(abs(g.low), abs(g.high)))
    for step in steps:
        for sign in (1.0, -1.0):
            shift = sign * (step + tiny)
            moved = PairedGain(g.n, g.mean + shift, g.std, g.se, g.low + shift, g.high + shift, g.up, g.down)
            if judge(moved)[0] != base:
                return step / g.se
    return math.inf
