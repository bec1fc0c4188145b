"""The theory report of the CLOP paper (arXiv 2403.18699, Section 3, Appendices C-E): every claim with its
verdict, as a table, JSON or Markdown.

:data:`CLAIMS` lists the claim functions in the report's order (Theorem 1, Lemma 1, L_class and Lemma 2;
each ``f(fast) -> Claim``); :func:`all_claims` runs them. The verdicts are computed in
:mod:`theory.theorem1_claims`, :mod:`theory.lemma1_claims` and :mod:`theory.lclass_claims` from the values
each detail prints; this module only renders them. The Theorem 1 figure lives in :mod:`theory.figure`.
"""

from __future__ import annotations

import json

import sympy as sp

from clop import claims as suite_claims
from clop.claims import VERDICTS
from clop.util.progress import progress_bar
from theory import lclass_claims, lemma1_claims, theorem1_claims
from theory import theorem1 as t1
from theory.verdict import Claim

__all__ = ["CLAIMS", "all_claims", "records", "format_table", "to_json", "to_markdown"]

CLAIMS = [*theorem1_claims.CLAIMS, *lemma1_claims.CLAIMS, *lclass_claims.CLAIMS]
"""Every theory claim function, in the report's order."""


def all_claims(fast: bool = False, progress: bool = True) -> list[Claim]:
    """Run every check of :data:`CLAIMS`; ``fast`` shrinks Monte Carlo sizes (used by tests)."""
    return [fn(fast) for fn in progress_bar(CLAIMS, desc="theory checks", enabled=progress, unit="claim")]


def records(claims: list[Claim], report: str = "theory_report.md",
            command: str = "python -m theory --markdown paper_figures/theory_report.md "
                           "--claims paper_figures/theory_claims.csv") -> list[suite_claims.Claim]:
    """The theory claims as the suite's claim records (:mod:`clop.claims`): the paper's statement, the
    method, the verdict and the detail, with ``report`` (relative to paper_figures/) as their evidence."""
    return [suite_claims.Claim(id=c.id, where=c.where, quote=c.claim, tested=c.method, verdict=c.verdict,
                               result=c.detail, evidence=report, command=command) for c in claims]


def _latex(expr) -> str:
    if isinstance(expr, str):
        return expr
    return sp.latex(sp.sympify(expr), symbol_names={t1.eps: r"\varepsilon"})


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def format_table(claims: list[Claim]) -> str:
    """Plain-text table: one block per claim (id, verdict, claim, method, detail)."""
    lines = [f"{'id':<16}{'verdict':<24}detail", "-" * 100]
    for c in claims:
        lines.append(f"{c.id:<16}{c.verdict:<24}{c.detail}")
        lines.append(f"{'':<16}{'claim:':<24}{c.claim}")
        lines.append(f"{'':<16}{'method:':<24}{c.method}")
    return "\n".join(lines)


def to_json(claims: list[Claim]) -> str:
    return json.dumps([c.as_dict() for c in claims], indent=2)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(claims: list[Claim], runtime_s: float | None = None) -> str:
    counts = {v: sum(c.verdict == v for c in claims) for v in VERDICTS}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    out = ["# CLOP paper: theory verification report", ""]
    out.append(
        "Symbolic (sympy) and float64 numerical checks of Theorem 1 (Appendix D), Lemma 1 (Appendix C), the L_class optimum and "
        "Lemma 2 (Appendix E) of the CLOP paper. Each printed expression is typed in verbatim and compared with one derived from the "
        "stated assumptions by `simplify(a - b) == 0`. Main findings: the polynomial for E||x^(1)||^2 in Eq. (2) is mis-expanded "
        "(correct: 1 + eta^2/(k-1)), the printed closed form has a misprinted denominator (+4k for +3k), and the corrected bound "
        "eta <= 2(k-1)/(k-2) coincides exactly with the critical learning rate of the linearised normalised step at zero-mean "
        "configurations; the printed bound is below it for every k > 2 (conservative). Lemma 1's collapsed points are stationary but "
        f"saddles, not minima. Verdicts: {summary}."
        + (f" Run time {runtime_s:.1f} s." if runtime_s is not None else "")
    )
    out += ["", "| id | claim | method | verdict | detail |", "|---|---|---|---|---|"]
    for c in claims:
        out.append(f"| {c.id} | {_md_cell(c.claim)} | {_md_cell(c.method)} | **{c.verdict}** | {_md_cell(c.detail)} |")
    for c in claims:
        out += ["", f"## {c.id}: {c.verdict}", "", f"*Claim.* {c.claim}", "", f"*Method.* {c.method}", "", f"*Detail.* {c.detail}"]
        if c.expressions:
            out += ["", "Expressions (LaTeX, and sympy `str`):", ""]
            for name, expr in c.expressions.items():
                out.append(f"- {name}: $${_latex(expr)}$$ `{' '.join(sp.sstr(expr).split())}`")
    return "\n".join(out) + "\n"
