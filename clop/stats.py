"""Paired statistics and verdict rules with a decision margin, for the empirical claims of arXiv 2403.18699.

A claim such as "CLOP raises the KNN accuracy" is judged from paired differences d_s (one per seed: the
same seed trained with and without the change). :func:`paired_gain` gives their mean with the two-sided 95 %
Student-t interval [low, high] = mean +- t_{0.975, n-1} * SE, SE = s / sqrt(n), where s is the sample
standard deviation floored at the measurement's ``resolution`` (the smallest step the quantity can take,
given by the caller: one test image of top-1, say). A sample whose spread is below the resolution is
rounding, not certainty, so it is never decisive: with a resolution of 0 and no spread (SE = 0) every rule
says ``inconclusive``.

Rules (every one needs at least :data:`MIN_PAIRS` pairs; with fewer it says ``inconclusive``):

* a verdict is decided only when the interval clears every threshold that separates it from another
  verdict by at least DECISION_MARGIN_SE standard errors (the margin ``m``), else ``inconclusive``. Another
  machine (float32 rounding changes trajectories) or another set of seeds moves the mean by a fraction of
  an SE to about one, so a decided verdict does not turn into the opposite one there.
* "the change raises the quantity" (:func:`direction_verdict`), thresholds -negligible, 0, +negligible:
    - ``fails`` when the interval lies within (-negligible + m, negligible - m) (no effect worth the name),
      or below -m (the change lowers it);
    - ``holds`` when it lies above +m and reaches above negligible + m (positive, and not confined to the
      negligible band: both thresholds cleared);
    - ``inconclusive`` otherwise.
  ``negligible`` is the caller's smallest effect of interest; without such a band a true effect of ~0 would
  be called ``holds``, ``fails`` or ``inconclusive`` at random.
* "... by the printed amount" (:func:`size_verdict`, thresholds 0 and the printed effect > 0): ``fails`` when
  the interval misses the printed effect by at least the margin; ``holds`` when it holds the printed effect
  and clears 0 by the margin; ``inconclusive`` otherwise.
* "the two are similar" (:func:`equivalence_verdict`, thresholds +-tolerance): ``holds`` when the interval
  lies within (-tolerance + m, tolerance - m); ``fails`` when it lies wholly beyond +-tolerance by m;
  ``inconclusive`` otherwise.

:func:`margin_se` gives how far, in standard errors, the mean would have to move to change a verdict.
:func:`one_sided_level` is the one-sided error level that a decided verdict carries at n pairs (the 95 %
interval plus the margin). :func:`holm_fails` applies Holm's step-down correction to the ``fails`` side of
a family of cells that one claim combines, so that many cells do not inflate the chance of a false ``fails``.
numpy only, with scipy imported for the t distribution.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

__all__ = [
    "CONFIDENCE", "DECISION_MARGIN_SE", "MIN_PAIRS", "PairedGain", "paired_gain", "at_confidence",
    "direction_verdict", "size_verdict", "equivalence_verdict", "raises_judge", "size_judge",
    "equivalence_judge", "margin_se", "one_sided_level", "decision_alpha", "holm_fails",
]

CONFIDENCE = 0.95
DECISION_MARGIN_SE = 2.0  # see the module docstring
MIN_PAIRS = 6
"""Fewest paired samples that may decide a verdict: with n <= 5 no distribution-free paired test (the sign
test, Wilcoxon's signed-rank test) can reach two-sided p < 0.05, so a decision would rest on the normality
of the differences alone."""


@dataclass(frozen=True)
class PairedGain:
    """Summary of n paired differences: mean, standard deviation (floored at ``resolution``), standard error,
    the interval [low, high] at ``confidence``, and how many pairs went up / down."""

    n: int
    mean: float
    std: float
    se: float
    low: float
    high: float
    up: int
    down: int
    resolution: float = 0.0
    raw_std: float = math.nan
    confidence: float = CONFIDENCE

    @property
    def floored(self) -> bool:
        """The sample spread was below the resolution, so the resolution set the standard error."""
        return self.n >= 2 and self.raw_std < self.resolution

    def interval_text(self, unit: str = "pp", digits: int = 2) -> str:
        """'+2.38 pp [+1.60, +3.16]' (the mean, then the interval)."""
        if self.n < 2:
            return f"{self.mean:+.{digits}f} {unit} (one seed: no interval)".replace("  ", " ")
        return f"{self.mean:+.{digits}f} {unit} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]".replace("  ", " ")


@functools.lru_cache(maxsize=None)
def _t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided Student-t quantile at ``confidence`` for ``df`` degrees of freedom (cached: the
    bootstrap of the Table 5 seed study asks for the same few df some 100,000 times)."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2, df))


def paired_gain(diffs, resolution: float = 0.0, confidence: float = CONFIDENCE) -> PairedGain:
    """Mean paired difference with its two-sided Student-t interval at ``confidence``.

    diffs: (n,) finite numbers, n >= 1. resolution: >= 0, the smallest step the measured quantity can take
    (in the units of ``diffs``); the standard deviation used is max(sample std, resolution).
    """
    d = np.asarray(diffs, dtype=np.float64).reshape(-1)
    if d.size == 0:
        raise ValueError("diffs must hold at least one paired difference; got an empty sequence")
    if not np.isfinite(d).all():
        raise ValueError(f"diffs must be finite; got {int((~np.isfinite(d)).sum())} non-finite value(s)")
    if not (isinstance(resolution, (int, float)) and math.isfinite(resolution) and resolution >= 0):
        raise ValueError(f"resolution must be a finite number >= 0; got {resolution!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence!r}")
    n, mean = d.size, float(d.mean())
    up, down = int((d > 0).sum()), int((d < 0).sum())
    if n < 2:
        return PairedGain(1, mean, math.nan, math.nan, math.nan, math.nan, up, down, float(resolution), math.nan,
                          confidence)
    raw = float(d.std(ddof=1))
    std = max(raw, float(resolution))
    se = std / math.sqrt(n)
    half = _t_quantile(n - 1, confidence) * se
    return PairedGain(n, mean, std, se, mean - half, mean + half, up, down, float(resolution), raw, confidence)


def at_confidence(g: PairedGain, confidence: float) -> PairedGain:
    """``g`` with its interval recomputed at another two-sided ``confidence`` (same mean and SE)."""
    if g.n < 2:
        return replace(g, confidence=confidence)
    half = _t_quantile(g.n - 1, confidence) * g.se
    return replace(g, low=g.mean - half, high=g.mean + half, confidence=confidence)


def _undecidable(g: PairedGain) -> str | None:
    """Why ``g`` cannot decide any verdict (too few pairs, no spread), or None."""
    if g.n < MIN_PAIRS:
        return f"n = {g.n} pairs: fewer than {MIN_PAIRS} cannot decide a verdict"
    if not g.se > 0:
        return "no spread and no resolution given: SE = 0 cannot decide a verdict"
    return None


def direction_verdict(g: PairedGain, negligible: float, margin: float = DECISION_MARGIN_SE,
                      unit: str = "") -> tuple[str, str]:
    """Verdict on "the change raises the quantity" from the interval of ``g`` (module docstring);
    ``negligible`` > 0 in the units of the differences; ``unit`` is appended to numbers in the reason."""
    why = _undecidable(g)
    if why:
        return "inconclusive", why
    m = margin * g.se
    if -negligible + m < g.low and g.high < negligible - m:
        return "fails", f"no effect worth the name: the whole interval lies within ±{negligible:g}{unit}"
    if g.high < -m:
        return "fails", "the change lowers it: the interval lies below 0"
    if g.low > m and g.high > negligible + m:
        return "holds", f"the interval lies above 0 and reaches above +{negligible:g}{unit}"
    if g.low > m:
        return "inconclusive", (f"the interval lies above 0 but not clearly beyond the negligible +{negligible:g}{unit} "
                                f"(by {margin:g} standard errors)")
    if -negligible < g.low and g.high < negligible:
        return "inconclusive", f"the interval lies within ±{negligible:g}{unit} by less than {margin:g} standard errors"
    if g.low > 0 or g.high < 0:
        return "inconclusive", f"the interval clears 0 by less than {margin:g} standard errors"
    return "inconclusive", "the interval straddles 0"


def size_verdict(g: PairedGain, printed: float, margin: float = DECISION_MARGIN_SE,
                 unit: str = "") -> tuple[str, str]:
    """Verdict on "the change raises the quantity by the printed ``printed``" (> 0) from the interval of ``g``."""
    why = _undecidable(g)
    if why:
        return "inconclusive", why
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


def equivalence_verdict(g: PairedGain, tolerance: float, margin: float = DECISION_MARGIN_SE,
                        unit: str = "") -> tuple[str, str]:
    """Verdict on "the two give similar values" (two-sided, within ``tolerance`` > 0) from the interval of ``g``."""
    why = _undecidable(g)
    if why:
        return "inconclusive", why
    m = margin * g.se
    if -tolerance + m < g.low and g.high < tolerance - m:
        return "holds", f"the whole interval lies within ±{tolerance:g}{unit}"
    if g.low > tolerance + m or g.high < -tolerance - m:
        return "fails", f"the interval lies beyond ±{tolerance:g}{unit}"
    return "inconclusive", f"the interval is neither within nor beyond ±{tolerance:g}{unit} by {margin:g} standard errors"


Judge = Callable[[PairedGain], tuple[str, str]]


def _judge(fn: Judge, thresholds: tuple[float, ...]) -> Judge:
    fn.thresholds = thresholds
    return fn


def raises_judge(negligible: float, unit: str = "") -> Judge:
    """:func:`direction_verdict` with ``negligible`` fixed, in the form :func:`margin_se` takes."""
    return _judge(lambda g: direction_verdict(g, negligible, unit=unit), (0.0, negligible, -negligible))


def size_judge(printed: float, unit: str = "") -> Judge:
    """:func:`size_verdict` with ``printed`` fixed, in the form :func:`margin_se` takes."""
    return _judge(lambda g: size_verdict(g, printed, unit=unit), (0.0, float(printed)))


def equivalence_judge(tolerance: float, unit: str = "") -> Judge:
    """:func:`equivalence_verdict` with ``tolerance`` fixed, in the form :func:`margin_se` takes."""
    return _judge(lambda g: equivalence_verdict(g, tolerance, unit=unit), (tolerance, -tolerance))


def margin_se(g: PairedGain, judge: Judge) -> float:
    """How far, in standard errors, the mean must move (the interval with it) before ``judge(g)``'s verdict
    changes; inf if no shift changes it; NaN where no verdict can be decided (fewer than :data:`MIN_PAIRS`
    pairs, or SE = 0).

    ``judge``: from :func:`raises_judge`, :func:`size_judge` or :func:`equivalence_judge` (a callable
    PairedGain -> (verdict, reason) with a ``thresholds`` attribute). The verdicts are piecewise constant in
    the shift, with breaks where an end of the interval meets a threshold or a threshold +- the decision
    margin, so only those shifts are tried.
    """
    if _undecidable(g):
        return math.nan
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
            moved = replace(g, mean=g.mean + shift, low=g.low + shift, high=g.high + shift)
            if judge(moved)[0] != base:
                return step / g.se
    return math.inf


def one_sided_level(n: int, margin: float = DECISION_MARGIN_SE, confidence: float = CONFIDENCE) -> float:
    """The one-sided error level of a decided verdict at ``n`` pairs: the chance that, with the true mean
    exactly at a threshold, the interval clears it by the margin, P(T_{n-1} > t_{(1+confidence)/2, n-1} + margin).
    """
    from scipy import stats

    if n < 2:
        return math.nan
    return float(stats.t.sf(_t_quantile(n - 1, confidence) + margin, n - 1))


def decision_alpha(g: PairedGain, judge: Judge, verdict: str = "fails", tol: float = 1e-6) -> float:
    """The smallest two-sided level alpha at which ``judge`` still gives ``verdict`` on the interval of ``g``
    recomputed at confidence 1 - alpha (a p-value of the verdict that includes the margin); 1.0 if it does
    not give ``verdict`` at the 95 % interval. The interval narrows as alpha grows, so the verdict, once
    given, stays given for every larger alpha, and bisection on log alpha finds where it starts."""
    if _undecidable(g) or judge(at_confidence(g, CONFIDENCE))[0] != verdict:
        return 1.0
    lo, hi = math.log(1e-15), math.log(1 - CONFIDENCE)  # the verdict holds at hi
    if judge(at_confidence(g, 1 - math.exp(lo)))[0] == verdict:
        return math.exp(lo)
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if judge(at_confidence(g, 1 - math.exp(mid)))[0] == verdict:
            hi = mid
        else:
            lo = mid
    return math.exp(hi)


def holm_fails(gains: Sequence[PairedGain], judges: Sequence[Judge], alpha: float = 1 - CONFIDENCE) -> list[bool]:
    """Holm's step-down correction on the ``fails`` side of a family of cells (one claim's cells): which
    cells' ``fails`` survives at family-wise level ``alpha``.

    Each cell's ``fails`` level is :func:`decision_alpha`; sorted ascending, the j-th (from 1) of the M
    cells keeps its ``fails`` when its level and every smaller one are <= alpha / (M - j + 1).
    """
    if len(gains) != len(judges):
        raise ValueError(f"gains and judges must have the same length; got {len(gains)} and {len(judges)}")
    levels = [decision_alpha(g, j) for g, j in zip(gains, judges)]
    keep = [False] * len(levels)
    total = len(levels)
    for rank, i in enumerate(sorted(range(total), key=lambda i: levels[i])):
        if levels[i] > alpha / (total - rank):
            break
        keep[i] = True
    return keep
