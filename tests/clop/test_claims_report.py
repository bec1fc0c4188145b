"""REPORT.md is generated from claim files alone: counts per part, the paper's order, links, unique ids."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clop.claims import Claim, write_claims
from clop.claims_report import collect, main, part_of, render


def _c(id_, where, verdict="holds", paper="2403.18699", evidence="x.csv") -> Claim:
    return Claim(id=id_, where=where, quote="q", tested="t", verdict=verdict, result="r", evidence=evidence,
                 command="python x", paper=paper)


def _tree(tmp_path):
    write_claims(tmp_path / "theory_claims.csv", [_c("T-2", "Appendix D"), _c("T-1", "Sec. 3.1, Theorem 1", "fails")])
    (tmp_path / "sub").mkdir()
    write_claims(tmp_path / "sub" / "claims.csv", [_c("S-1", "Sec. 5, Figure 7", "inconclusive", evidence="sub/f.png"),
                                                  _c("O-1", "Theorem 2", "holds", paper="2503.08203")])
    (tmp_path / "x.csv").write_text("a\n")
    (tmp_path / "sub" / "f.png").write_bytes(b"")
    return collect(tmp_path)


def test_counts_and_order_follow_the_paper(tmp_path):
    text = render(_tree(tmp_path))
    order = [m for m in re.findall(r"^### (\S+)$", text, flags=re.M)]
    assert order == ["T-1", "S-1", "T-2", "O-1"]  # Sec. 3, Sec. 5, Appendix D, then another paper
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert rows["Section 3: theoretical analysis"].split("|")[2:] [3].strip() == "1"  # one fails
    assert "**4**" in rows["**all**"]
    assert part_of(_c("O-1", "Theorem 2", paper="2503.08203")).startswith("SSEM")


def test_every_link_resolves(tmp_path):
    text = render(_tree(tmp_path))
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        assert (tmp_path / target).exists(), target


def test_a_repeated_id_across_files_is_refused(tmp_path):
    write_claims(tmp_path / "a_claims.csv", [_c("X", "Sec. 3")])
    write_claims(tmp_path / "b_claims.csv", [_c("X", "Sec. 4")])
    with pytest.raises(ValueError, match="'X' appears in"):
        collect(tmp_path)


def test_cli_refuses_an_empty_root_and_writes_the_report(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--root", ""])
    assert info.value.code == 2 and "--root must not be empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--root", str(tmp_path)])  # no claim files
    assert "holds no claim files" in capsys.readouterr().err
    _tree(tmp_path)
    assert main(["--root", str(tmp_path)]) == 0
    sources = [Path("sub/claims.csv"), Path("theory_claims.csv")]
    assert (tmp_path / "REPORT.md").read_text() == render(collect(tmp_path), sources)
