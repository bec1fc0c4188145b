"""One record per claim of a paper, shared by every study of the suite, and its CSV file.

A study (the theory checks, a figure script, Table 5, the Section 5 study, ...) turns each statement of a
paper it tests into a :class:`Claim` and writes them with :func:`write_claims` to
``paper_figures/claims/<study>.csv``; the suite's report (``paper_figures/REPORT.md``) is generated from
those files alone, so no verdict is ever written by hand.

Fields:

* ``id``: unique over the whole suite, e.g. ``T1-bound``;
* ``where``: where in the paper, in its own words, e.g. ``Sec. 3.1, Theorem 1, Eq. (2)`` or
  ``Appendix D``; :func:`paper_order` sorts claims by it (Sections, then Appendices);
* ``quote``: the paper's words (verbatim where possible);
* ``tested``: what was tested and how;
* ``verdict``: one of :data:`VERDICTS`;
* ``result``: the deciding number with its 95 % interval and n, or the exact expression;
* ``evidence``: the files behind the verdict, relative to ``paper_figures/``, separated by ``; ``;
* ``command``: the command that regenerates the evidence;
* ``paper``: the arXiv id of the paper the claim comes from (default: the CLOP paper, 2403.18699).

Verdicts (the suite's vocabulary): ``holds``; ``holds with correction`` (the claim is right, a printed
expression is not); ``conservative`` (a bound that holds but is not tight); ``fails``; ``inconclusive``
(an empirical claim whose interval does not decide it); ``not testable`` (its precondition is absent,
e.g. nothing collapsed); ``not checked``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Callable
from pathlib import Path

from clop.util.io import atomic_write_text

__all__ = ["VERDICTS", "CLOP_ARXIV", "Claim", "FIELDS", "claims_csv", "write_claims", "read_claims", "check_claims_owner",
           "paper_order"]

VERDICTS = ("holds", "holds with correction", "conservative", "fails", "inconclusive", "not testable", "not checked")
CLOP_ARXIV = "2403.18699"


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim of a paper with the suite's verdict on it (see the module docstring for the fields)."""

    id: str
    where: str
    quote: str
    tested: str
    verdict: str
    result: str
    evidence: str
    command: str
    paper: str = CLOP_ARXIV

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, str):
                raise ValueError(f"Claim.{f.name} must be a str; got {value!r}")
            if "\n" in value or "\r" in value:
                raise ValueError(f"Claim.{f.name} of {self.id!r} must be one line; got {value!r}")
        if not self.id.strip():
            raise ValueError("Claim.id must not be empty")
        if self.verdict not in VERDICTS:
            raise ValueError(f"Claim.verdict of {self.id!r} must be one of {list(VERDICTS)}; got {self.verdict!r}")


FIELDS = tuple(f.name for f in dataclasses.fields(Claim))
"""The columns of a claims CSV, in order."""


def claims_csv(claims: list[Claim]) -> str:
    """The claims as CSV text (header :data:`FIELDS`); ValueError on a repeated id."""
    seen: set[str] = set()
    for c in claims:
        if c.id in seen:
            raise ValueError(f"claim id {c.id!r} is repeated; every claim id must be unique")
        seen.add(c.id)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(FIELDS)
    for c in claims:
        writer.writerow([getattr(c, name) for name in FIELDS])
    return buf.getvalue()


def write_claims(path: str | Path, claims: list[Claim]) -> Path:
    """Write ``claims`` to the CSV ``path`` atomically (a temporary file renamed into place); returns it."""
    path = Path(path)
    atomic_write_text(path, claims_csv(claims))
    return path


def read_claims(path: str | Path) -> list[Claim]:
    """The claims of a CSV written by :func:`write_claims`; ValueError naming the file if it is not one."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or tuple(rows[0]) != FIELDS:
        raise ValueError(f"{path} is not a claims file: its header must be {list(FIELDS)}")
    claims = []
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != len(FIELDS):
            raise ValueError(f"{path}, line {n}: expected {len(FIELDS)} fields, got {len(row)}")
        try:
            claims.append(Claim(**dict(zip(FIELDS, row))))
        except ValueError as exc:
            raise ValueError(f"{path}, line {n}: {exc}") from None
    return claims


def check_claims_owner(folder: str | Path, owns: Callable[[str], bool], study: str, flag: str = "--out") -> None:
    """ValueError when ``folder`` holds a ``claims.csv`` that another study wrote (no claim id there is one that
    ``owns`` accepts) or one that is not a claims file: several studies name their claims file ``claims.csv``, and
    a study pointed at another's folder would replace it. Called before compute; a folder without one passes."""
    path = Path(folder) / "claims.csv"
    if not path.is_file():
        return
    try:
        ids = [c.id for c in read_claims(path)]
    except (OSError, ValueError) as exc:
        raise ValueError(f"{flag} {str(folder)!r} holds a claims.csv that {study} did not write ({exc}); "
                         "give another folder") from None
    if ids and not any(owns(i) for i in ids):
        raise ValueError(f"{flag} {str(folder)!r} holds the claims.csv of another study (ids such as {ids[0]!r}); "
                         f"{study} would replace it: give another folder")


_PART = re.compile(r"\b(Sec(?:tion)?\.?|Appendix|App\.)\s*([A-Z]|\d+)(?:\.(\d+))?", re.IGNORECASE)


def paper_order(where: str) -> tuple:
    """A sort key that puts claims in the paper's order: Sections 1, 2, ... (by subsection), then
    Appendices A, B, ...; a ``where`` that names neither sorts last."""
    m = _PART.search(where)
    if m is None:
        return (2, 0, 0)
    kind, major, minor = m.group(1).lower(), m.group(2), int(m.group(3) or 0)
    if kind.startswith("sec") and major.isdigit():
        return (0, int(major), minor)
    if major.isalpha():
        return (1, ord(major.upper()) - ord("A"), minor)
    return (2, 0, 0)
