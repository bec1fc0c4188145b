"""The documents stay true to the repository: REPORT.md is what the generator makes from the committed claim
files (a stale report fails), every relative link in the README, docs/ and the reports resolves to a file,
claim ids are unique and verdicts are words of the vocabulary, and nothing names an issue number or a path
outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

from clop.claims import VERDICTS
from clop.claims_report import REPORT_NAME, collect, find_claim_files, render
from tests.helpers import REPO

FIGURES = REPO / "paper_figures"
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def _documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted(FIGURES.rglob("*.md"))]


def test_report_is_what_the_claim_files_make():
    claims = collect(FIGURES)
    sources = [p.relative_to(FIGURES) for p in find_claim_files(FIGURES)]
    assert (FIGURES / REPORT_NAME).read_text() == render(claims, sources), (
        "paper_figures/REPORT.md is stale: run python reproduce.py --report-only")


def test_claims_are_unique_and_use_the_vocabulary():
    claims = collect(FIGURES)  # raises on a repeated id across files
    assert len(claims) >= 50
    assert {c.verdict for c, _ in claims} <= set(VERDICTS)
    assert len({c.id for c, _ in claims}) == len(claims)


def test_every_relative_link_resolves():
    broken = []
    for doc in _documents():
        for target in LINK.findall(doc.read_text()):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(REPO)} -> {target}")
    assert broken == []


def test_no_issue_numbers_or_outside_paths_in_code_and_docs():
    pattern = re.compile(r"\b[Ii]ssues? #?\d+\b|\.\./shared|/work/")
    files = [*_documents()]
    for pkg in ("clop", "theory", "simulations", "training", "benchmarks"):
        files += sorted((REPO / pkg).rglob("*.py")) + sorted((REPO / pkg).rglob("*.sh")) + sorted((REPO / pkg).rglob("*.c"))
    files += [REPO / "reproduce.py"]
    found = [f"{f.relative_to(REPO)}:{n}: {line.strip()[:80]}" for f in files
             for n, line in enumerate(f.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []


def test_readme_is_short_and_names_both_commands():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert "reproduce.py" in text and "pytest" in text and "paper_figures/REPORT.md" in text
