"""Safety of ``python -m theory``: outputs replaced atomically and together, output paths checked before any
compute; the float API's argument checks; every verdict of the report computed from the values it prints."""

from __future__ import annotations

import ast

import pytest

from tests.helpers import REPO, fail_on_call, no_compute, refused, snapshot
from theory import theorem1_claims as t1c
from theory.verdict import Claim


def test_interrupted_theory_outputs_stay_byte_identical(tmp_path, monkeypatch, capsys):
    import matplotlib.figure

    from theory import __main__ as cli
    from theory import report

    fake = [Claim("X-1", "a claim", "a method", "holds", "a detail")]
    monkeypatch.setattr(report, "all_claims", lambda fast=False, progress=True: fake)
    md, fig = tmp_path / "r" / "report.md", tmp_path / "f" / "bound.png"
    argv = ["--markdown", str(md), "--figure", str(fig), "--no-progress"]
    assert cli.main(argv) == 0
    before_md, before_fig = snapshot(md.parent), snapshot(fig.parent)
    assert set(before_fig) == {"bound.png", "theorem1_bound.csv"}

    fake[0] = Claim("X-1", "a claim", "a method", "fails", "another detail")  # the next run differs
    with monkeypatch.context() as m:
        m.setattr(matplotlib.figure.Figure, "savefig", fail_on_call(1)(matplotlib.figure.Figure.savefig))
        with pytest.raises(KeyboardInterrupt):
            cli.main(argv)
    assert snapshot(md.parent) == before_md and snapshot(fig.parent) == before_fig
    with monkeypatch.context() as m:  # interrupted while writing the report itself
        m.setattr(report, "to_markdown", lambda claims, runtime_s=None: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            cli.main(argv)
    assert snapshot(md.parent) == before_md and snapshot(fig.parent) == before_fig
    assert cli.main(argv) == 0 and "another detail" in md.read_text()
    from theory.figure import plot_from_csv

    plot_from_csv(fig.parent / "theorem1_bound.csv", tmp_path / "redrawn.png")
    assert (tmp_path / "redrawn.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()


def test_theory_output_paths_are_checked_before_compute(tmp_path, monkeypatch, capsys):
    from theory import __main__ as cli
    from theory import report

    monkeypatch.setattr(report, "all_claims", no_compute)
    assert "--markdown" in refused(cli.main, ["--markdown", str(tmp_path)], capsys)
    (tmp_path / "f").write_text("")
    line = refused(cli.main, ["--markdown", str(tmp_path / "f" / "r.md")], capsys)
    assert line.endswith(f"--markdown {str(tmp_path / 'f' / 'r.md')!r} cannot be written: {str(tmp_path / 'f')!r} is a file, not a folder")
    line = refused(cli.main, ["--figure", str(tmp_path / "fig.txt")], capsys)
    assert "--figure" in line and "must end in one of" in line and "'.png'" in line


def test_theorem1_float_api_takes_eps_and_refuses_non_integer_k():
    from theory import theorem1 as t1

    assert t1.lr_bound(30, eps=0.0) == t1.lr_bound(30) == pytest.approx(58 / 28)
    assert t1.lr_bound(30, eps=0.1) == t1.lr_bound(30, 0.1) > t1.lr_bound(30)
    assert t1.critical_lr(30.0) == t1.critical_lr(30)  # a whole number given as a float is an integer k
    for fn in (t1.lr_bound, t1.critical_lr, t1.paper_closed_form):
        for bad in ("5", 2.5, 7.5, [3, 4.5], None):
            with pytest.raises(ValueError, match=r"k must be an integer >= 3 .*; got k="):
                fn(bad)
    with pytest.raises(ValueError, match="eps must be a finite real number >= 0"):
        t1.lr_bound(5, eps="0.1")


def test_no_theory_verdict_is_a_constant():
    """Every Claim(...) in theory/*_claims.py gets its verdict from an expression, except 'not checked'
    (the check could not run at all)."""
    files = sorted((REPO / "theory").glob("*_claims.py"))
    assert len(files) >= 3
    calls = [n for f in files for n in ast.walk(ast.parse(f.read_text()))
             if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "Claim"]
    assert len(calls) >= 20
    constant = [ast.unparse(c.args[3]) for c in calls
                if len(c.args) > 3 and isinstance(c.args[3], ast.Constant) and c.args[3].value != "not checked"]
    assert constant == []


def test_t1_k30_verdict_follows_the_printed_values(monkeypatch):
    from theory.paper_data import PAPER_QUOTES

    claim = t1c.k30_claim()
    assert claim.verdict == "holds with correction"
    assert "printed closed form 2.0333" in claim.detail and "matches: printed closed form" in claim.detail
    quote = dict(PAPER_QUOTES["theorem1_bound_k30"])
    for value, verdict in [("2.07", "holds"), ("2.50", "fails")]:
        monkeypatch.setitem(PAPER_QUOTES, "theorem1_bound_k30", {**quote, "value": value})
        assert t1c.k30_claim().verdict == verdict
    assert t1c.k30_verdict(["printed ratio"], bracket=False) == "fails"


def test_t1_proof_verdict_is_computed():
    claim = t1c.proof_claim(fast=True)
    assert claim.verdict == "fails"
    assert "k = 30: (0, inf)" in claim.detail and "k = 30: (0, 29/14]" in claim.detail
    assert t1c.proof_verdict(last_step_void=False, rows_above_fraction=0.0) == "holds"
    assert t1c.proof_verdict(last_step_void=False, rows_above_fraction=0.3) == "fails"
