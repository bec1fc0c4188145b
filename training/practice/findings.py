"""Findings of the practice study: one measured quantity over seeds, judged by the rules of :mod:`clop.stats`.

Paper: "Preventing collapse in contrastive learning with orthonormal prototypes" (CLOP), arXiv 2403.18699.

A :class:`Finding` is a sample over seeds (paired by seed where two settings are compared: same seed = same
initial weights, labeled subset and batch order) with its mean, 95 % Student-t interval, verdict and margin:

* :func:`judge_diff`  - "the difference is positive" (:func:`clop.stats.raises_judge`, a negligible band);
* :func:`judge_bound` - "the values lie above / below a bound" (the same rule on values - bound, no band);
* :func:`judge_equiv` - "the two are similar" (:func:`clop.stats.equivalence_judge`, two-sided).

Each takes the measurement's ``resolution`` (top-1: one test image; geometry: the bootstrap standard deviation
over the test images, :mod:`training.practice.endgeom`), at which the spread over seeds is floored, so a sample
whose spread is rounding never decides. Fewer than :data:`clop.stats.MIN_PAIRS` seeds never decide.
``margin`` is :func:`clop.stats.margin_se`: how far, in standard errors, the mean would have to move to
change the verdict.

A claim combines several findings. :func:`holm` applies Holm's step-down correction
(:func:`clop.stats.holm_fails`) to the ``fails`` side of a claim's verdict findings (the family), so that many
cells do not inflate the chance of a false ``fails``; a ``fails`` that does not survive it becomes
``inconclusive``. :func:`combine` and :func:`unanimous` turn the findings' verdicts into the claim's.
Roles: ``verdict`` findings decide, ``precondition`` ones say whether a cell can be tested at all, ``context``
ones only inform (their verdict is printed as "—").
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from clop.stats import (
    PairedGain,
    equivalence_judge,
    holm_fails,
    margin_se,
    paired_gain,
    raises_judge,
)

__all__ = ["ROLES", "TINY", "Finding", "judge_diff", "judge_bound", "judge_equiv", "holm", "combine", "unanimous",
           "finite"]

ROLES = ("verdict", "precondition", "context")
TINY = 1e-12
"""The negligible band of a bound test: none (either side of the bound counts)."""


@dataclasses.dataclass(frozen=True)
class Finding:
    """One quantity over seeds: mean and 95 % interval of the values (bound tests) or of the paired
    differences, the verdict and why, the margin in SE, the resolution used and whether it set the spread,
    and (after :func:`holm`) the size of the family its ``fails`` was corrected for."""

    scope: str
    measured: str
    unit: str
    n: int
    mean: float
    low: float
    high: float
    verdict: str
    reason: str
    role: str = "verdict"
    margin: float = math.nan
    resolution: float = 0.0
    floored: bool = False
    family: int = 0
    gain: PairedGain | None = dataclasses.field(default=None, compare=False, repr=False)
    judge: object = dataclasses.field(default=None, compare=False, repr=False)

    def interval_text(self, digits: int = 3) -> str:
        if self.n == 0:
            return "no runs"
        f = f"{{:.{digits}g}}"
        if self.n < 2 or not math.isfinite(self.low):
            return f"{f.format(self.mean)}{self.unit} (n = {self.n})"
        return f"{f.format(self.mean)}{self.unit} [{f.format(self.low)}, {f.format(self.high)}] (n = {self.n})"

    def margin_text(self) -> str:
        return "—" if not math.isfinite(self.margin) else f"{self.margin:.1f} SE"


def finite(values) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    return a[np.isfinite(a)]


def _shown(verdict: str, role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"role={role!r}: expected one of {list(ROLES)}")
    return "—" if role == "context" else verdict


def _too_few(scope, measured, unit, d, role, what="seed(s)") -> Finding:
    return Finding(scope, measured, unit, int(d.size), float(d.mean()) if d.size else math.nan, math.nan, math.nan,
                   _shown("inconclusive", role), f"{d.size} {what}: an interval needs at least 2", role)


def _finding(scope, measured, unit, g: PairedGain, judge, role, shown: PairedGain | None = None,
             reason_map: dict[str, str] | None = None) -> Finding:
    verdict, reason = judge(g)
    for old, new in (reason_map or {}).items():
        reason = reason.replace(old, new)
    s = shown or g
    return Finding(scope, measured, unit, s.n, s.mean, s.low, s.high, _shown(verdict, role), reason, role,
                   margin_se(g, judge), g.resolution, g.floored, 0, g, judge)


def judge_diff(scope: str, measured: str, diffs, *, negligible: float, resolution: float, unit: str = "",
               role: str = "verdict") -> Finding:
    """"The paired difference is positive" (beyond +-``negligible``), spread floored at ``resolution``."""
    d = finite(diffs)
    if d.size < 2:
        return _too_few(scope, measured, unit, d, role)
    judge = raises_judge(negligible, unit.strip())
    return _finding(scope, measured, unit, paired_gain(d, resolution=resolution), judge, role,
                    reason_map={"the change lowers it": "the difference is negative"})


def judge_bound(scope: str, measured: str, values, bound: float, *, above: bool = True, resolution: float,
                unit: str = "", role: str = "verdict") -> Finding:
    """"The values lie above ``bound``" (``above``) or below it: the rule on values - bound (or bound - values)
    without a negligible band; mean and interval reported for the values themselves."""
    v = finite(values)
    if v.size < 2:
        return _too_few(scope, measured, unit, v, role)
    g = paired_gain(v - bound if above else bound - v, resolution=resolution)
    judge = raises_judge(TINY)
    f = _finding(scope, measured, unit, g, judge, role, shown=paired_gain(v, resolution=resolution))
    side, other = ("above", "below") if above else ("below", "above")
    reason = {"holds": f"the interval lies {side} {bound:.4g}", "fails": f"the interval lies {other} {bound:.4g}"}
    return dataclasses.replace(f, reason=reason.get(judge(g)[0], f.reason.replace(" 0", f" {bound:.4g}")))


def judge_equiv(scope: str, measured: str, diffs, *, tolerance: float, resolution: float, unit: str = "",
                role: str = "verdict") -> Finding:
    """"The two are similar": the paired differences lie within +-``tolerance`` (two-sided)."""
    d = finite(diffs)
    if d.size < 2:
        return _too_few(scope, measured, unit, d, role)
    return _finding(scope, measured, unit, paired_gain(d, resolution=resolution),
                    equivalence_judge(tolerance, unit.strip()), role)


def holm(findings: Sequence[Finding]) -> tuple[list[Finding], int]:
    """The findings with Holm's correction applied to the ``fails`` of the ``verdict`` findings (the family);
    returns (findings, family size). Findings outside the family pass unchanged."""
    members = [i for i, f in enumerate(findings) if f.role == "verdict" and f.gain is not None]
    out = list(findings)
    if not members:
        return out, 0
    keep = holm_fails([findings[i].gain for i in members], [findings[i].judge for i in members])
    for i, kept in zip(members, keep):
        f = dataclasses.replace(findings[i], family=len(members))
        if f.verdict == "fails" and not kept:
            f = dataclasses.replace(f, verdict="inconclusive",
                                    reason=f"{f.reason}, but not after Holm's correction over {len(members)} cells")
        out[i] = f
    return out, len(members)


def combine(verdicts: Sequence[str]) -> str:
    """"Every cell": ``not testable`` cells are set aside (all of them: not testable); then holds if every
    verdict holds, fails if any fails, else inconclusive."""
    tested = [v for v in verdicts if v != "not testable"]
    if not tested:
        return "not testable"
    if all(v == "holds" for v in tested):
        return "holds"
    return "fails" if "fails" in tested else "inconclusive"


def unanimous(verdicts: Sequence[str]) -> str:
    """Across settings the paper does not name (the optimiser): ``not testable`` set aside; holds if all hold,
    fails if all fail, else (a mixture, or none) inconclusive; all not testable: not testable."""
    tested = [v for v in verdicts if v != "not testable"]
    if not tested:
        return "not testable" if verdicts else "inconclusive"
    if all(v == "holds" for v in tested):
        return "holds"
    if all(v == "fails" for v in tested):
        return "fails"
    return "inconclusive"
