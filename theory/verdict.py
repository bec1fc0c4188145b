"""The theory report's claim record and the small symbolic tests its verdicts are computed with.

A :class:`Claim` holds one statement of the CLOP paper (arXiv 2403.18699), how it was checked, the verdict
(one of :data:`clop.claims.VERDICTS`) and a one-line detail printing the values the verdict was computed
from; ``expressions`` (name -> sympy object) go to the Markdown report only.
"""

from __future__ import annotations

import dataclasses

import sympy as sp

from clop.claims import VERDICTS

__all__ = ["Claim", "equal", "positive_for_k_gt_2", "interval_text"]


@dataclasses.dataclass
class Claim:
    """One claim of the paper with the suite's verdict.  ``expressions``: name -> sympy object (Markdown only)."""

    id: str
    claim: str
    method: str
    verdict: str
    detail: str
    expressions: dict = dataclasses.field(default_factory=dict)
    where: str = ""

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}; got verdict={self.verdict!r}")

    def as_dict(self) -> dict:
        return {"id": self.id, "claim": self.claim, "method": self.method, "verdict": self.verdict, "detail": self.detail}


def equal(a, b) -> bool:
    """a == b symbolically: cancel the difference of rational functions, else fall back to simplify."""
    d = sp.sympify(a) - sp.sympify(b)
    if sp.cancel(sp.together(d)) == 0:
        return True
    return sp.simplify(d) == 0


def positive_for_k_gt_2(expr) -> tuple[bool, sp.Expr]:
    """Prove expr > 0 for all real k > 2: with k = q + 2 the expression must be a ratio of polynomials in q
    whose coefficients are all non-negative (and not all zero).  Returns (proven, the q-form)."""
    from theory import theorem1 as t1

    form = t1.for_k_gt_2(expr)
    num, den = sp.fraction(sp.together(form))
    try:
        pn, pd = sp.Poly(sp.expand(num), t1.q), sp.Poly(sp.expand(den), t1.q)
    except sp.PolynomialError:
        return False, form
    ok = all(c >= 0 for c in pn.coeffs()) and all(c >= 0 for c in pd.coeffs()) and not pn.is_zero
    return bool(ok), form


def interval_text(interval) -> str:
    """A sympy Interval as '(0, 29/14]' (oo as inf); any other set as sympy prints it."""
    if not isinstance(interval, sp.Interval):
        return str(interval)
    ends = ["inf" if e == sp.oo else str(e) for e in (interval.start, interval.end)]
    return f"{'(' if interval.left_open else '['}{ends[0]}, {ends[1]}{')' if interval.right_open else ']'}"
