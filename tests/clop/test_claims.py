"""The shared claim record: CSV round trip, one-line fields, the verdict vocabulary, unique ids, paper order."""

from __future__ import annotations

import pytest

from clop.claims import FIELDS, VERDICTS, Claim, check_claims_owner, paper_order, read_claims, write_claims


def _claim(id_="X-1", verdict="holds", **kw) -> Claim:
    base = dict(id=id_, where="Sec. 3.1, Theorem 1", quote='the "bound", with, commas', tested="sympy",
                verdict=verdict, result="2(k-1)/(k-2)", evidence="theory_report.md", command="python -m theory")
    base.update(kw)
    return Claim(**base)


def test_round_trip_keeps_every_field(tmp_path):
    claims = [_claim(), _claim("X-2", "inconclusive", paper="2503.08203", result="+0.2 pp [-0.1, 0.5], n = 8")]
    path = write_claims(tmp_path / "claims.csv", claims)
    assert read_claims(path) == claims
    assert path.read_text().splitlines()[0] == ",".join(FIELDS)


def test_bad_records_are_refused():
    with pytest.raises(ValueError, match="verdict"):
        _claim(verdict="mostly holds")
    with pytest.raises(ValueError, match="one line"):
        _claim(result="a\nb")
    with pytest.raises(ValueError, match="must be a str"):
        _claim(result=2.0)
    with pytest.raises(ValueError, match="repeated"):
        write_claims("unused.csv", [_claim(), _claim()])
    assert len(VERDICTS) == 7 and "not testable" in VERDICTS


def test_a_file_that_is_not_a_claims_file_is_named(tmp_path):
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="x.csv is not a claims file"):
        read_claims(bad)


def test_paper_order_puts_sections_before_appendices():
    wheres = ["Appendix D", "Sec. 5, Figure 6", "Sec. 3.2", "Table 5", "Sec. 3.1, Theorem 1", "Appendix B"]
    assert sorted(wheres, key=paper_order) == ["Sec. 3.1, Theorem 1", "Sec. 3.2", "Sec. 5, Figure 6", "Appendix B",
                                               "Appendix D", "Table 5"]


def test_a_folder_holding_another_studys_claims_is_refused(tmp_path):
    """Several studies name their claims file claims.csv: pointed at another study's folder, a study refuses it
    before compute instead of replacing it; its own folder, or one without a claims.csv, passes."""
    owns = lambda i: i.startswith("SSEM-")  # noqa: E731
    check_claims_owner(tmp_path, owns, "ssem_grid.py")  # no claims.csv
    write_claims(tmp_path / "claims.csv", [_claim("SSEM-tau"), _claim("SSEM-spread")])
    check_claims_owner(tmp_path, owns, "ssem_grid.py")  # its own
    write_claims(tmp_path / "claims.csv", [_claim("CPL-cluster")])
    with pytest.raises(ValueError, match=r"claims.csv of another study \(ids such as 'CPL-cluster'\)"):
        check_claims_owner(tmp_path, owns, "ssem_grid.py")
    (tmp_path / "claims.csv").write_text("not,a,claims,file\n")
    with pytest.raises(ValueError, match="holds a claims.csv that ssem_grid.py did not write"):
        check_claims_owner(tmp_path, owns, "ssem_grid.py")
