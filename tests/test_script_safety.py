"""Safety of the figure scripts, the theory command, the benchmark and reproduce.py (issue 12, items 1 and
6-10 for these scripts): outputs replaced atomically and together, bad settings refused before any
compute with exit status 2 and a message naming the flag, memory estimated before allocation, results
never reported at the search cap, and the library checks behind them.

Every run uses tiny settings; the compute functions are replaced by ones that fail the test where a
setting must be refused before any compute.
"""

from __future__ import annotations

import ast
import math
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from simulations import dimensional_collapse, lr_bound
from simulations import memory as mem

REPO = Path(__file__).resolve().parents[1]

FIG3_TINY = ["--ks", "3", "4", "--m", "6", "--trials", "1", "--steps", "40", "--resolution", "0.05",
             "--spectra-steps", "10", "--spectra-every", "5"]
FIG4_TINY = ["--ks", "4", "--m", "6", "--steps", "20", "--trials", "2", "--record-every", "10"]
FIG3_FILES = lr_bound.OUTPUTS
FIG4_FILES = ("figure4.csv", "figure4.png")


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One torch thread (tests/conftest.py), as the scripts use by default."""


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _fail_on_call(nth: int, exc: type[BaseException] = KeyboardInterrupt):
    """A replacement for a method that runs the original until its ``nth`` call, which raises ``exc``."""
    calls = {"n": 0}

    def wrap(original):
        def f(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == nth:
                raise exc()
            return original(*args, **kwargs)

        return f

    return wrap


def _no_compute(*args, **kwargs):
    raise AssertionError("compute started although a setting should have been refused first")


# --------------------------------------------------------------------------------------------------
# item 1: interrupted runs leave the previous complete outputs byte-identical


def test_interrupted_figure3_run_leaves_previous_outputs_byte_identical(tmp_path, monkeypatch, capsys):
    import matplotlib.figure

    out = tmp_path / "fig3"
    assert lr_bound.main(FIG3_TINY + ["--out", str(out)]) == 0
    before = _snapshot(out)
    assert set(before) == set(FIG3_FILES)
    assert before["figure3.pdf"].rstrip().endswith(b"%%EOF")

    # Ctrl-C while writing the second CSV
    monkeypatch.setattr(pd.DataFrame, "to_csv", _fail_on_call(2)(pd.DataFrame.to_csv))
    with pytest.raises(KeyboardInterrupt):
        lr_bound.main(FIG3_TINY + ["--out", str(out), "--seed", "1"])
    monkeypatch.undo()
    assert _snapshot(out) == before  # no temporary file left behind either

    # Ctrl-C while saving the PDF, after both CSVs and the PNG were written
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", _fail_on_call(2)(matplotlib.figure.Figure.savefig))
    with pytest.raises(KeyboardInterrupt):
        lr_bound.main(FIG3_TINY + ["--out", str(out), "--seed", "1"])
    monkeypatch.undo()
    assert _snapshot(out) == before

    # the interrupted runs had different data to write (so the checks above could fail)
    new = lr_bound.spectra_table(k=6, m=6, steps=10, record_every=5, seed=1, device="cpu")
    assert new.to_csv(index=False).encode() != before["figure3_spectra.csv"]
    capsys.readouterr()


def test_interrupted_figure4_run_leaves_previous_outputs_byte_identical(tmp_path, monkeypatch, capsys):
    import matplotlib.figure

    out = tmp_path / "fig4"
    assert dimensional_collapse.main(FIG4_TINY + ["--out", str(out)]) == 0
    before = _snapshot(out)
    assert set(before) == set(FIG4_FILES)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", _fail_on_call(1)(matplotlib.figure.Figure.savefig))
    with pytest.raises(KeyboardInterrupt):
        dimensional_collapse.main(FIG4_TINY + ["--out", str(out), "--seed", "1"])
    monkeypatch.undo()
    assert _snapshot(out) == before
    df = pd.read_csv(out / "figure4.csv")
    assert (df["m"] == 6).all() and (df["eta"] == 0.2).all()
    assert dimensional_collapse.plot(out) == out / "figure4.png"
    capsys.readouterr()


def test_interrupted_theory_outputs_stay_byte_identical(tmp_path, monkeypatch, capsys):
    import matplotlib.figure

    from theory import __main__ as cli
    from theory import report

    fake = [report.Claim("X-1", "a claim", "a method", "holds", "a detail")]
    monkeypatch.setattr(report, "all_claims", lambda fast=False, progress=True: fake)
    md, fig = tmp_path / "r" / "report.md", tmp_path / "f" / "bound.png"
    argv = ["--markdown", str(md), "--figure", str(fig), "--no-progress"]
    assert cli.main(argv) == 0
    before_md, before_fig = _snapshot(md.parent), _snapshot(fig.parent)
    assert set(before_fig) == {"bound.png", "theorem1_bound.csv"}

    fake[0] = report.Claim("X-1", "a claim", "a method", "fails", "another detail")  # the next run differs
    with monkeypatch.context() as m:
        m.setattr(matplotlib.figure.Figure, "savefig", _fail_on_call(1)(matplotlib.figure.Figure.savefig))
        with pytest.raises(KeyboardInterrupt):
            cli.main(argv)
    assert _snapshot(md.parent) == before_md and _snapshot(fig.parent) == before_fig
    with monkeypatch.context() as m:  # interrupted while writing the report itself
        m.setattr(report, "to_markdown", lambda claims, runtime_s=None: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            cli.main(argv)
    assert _snapshot(md.parent) == before_md and _snapshot(fig.parent) == before_fig
    assert cli.main(argv) == 0 and "another detail" in md.read_text()
    from theory.figure import plot_from_csv

    plot_from_csv(fig.parent / "theorem1_bound.csv", tmp_path / "redrawn.png")
    assert (tmp_path / "redrawn.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()


# --------------------------------------------------------------------------------------------------
# items 6 and 9: bad settings end with status 2 and a message naming the flag, before any compute


def _bad_cuda() -> str:
    return f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"


def _refused(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    return err.strip().splitlines()[-1]


FIG3_BAD = [
    (["--steps", "0"], "--steps must be an integer >= 1; got 0"),
    (["--trials", "0"], "--trials must be an integer >= 1; got 0"),
    (["--resolution", "0"], "--resolution must be a finite number in (0, 5)"),
    (["--resolution", "nan"], "got nan"),
    (["--resolution", "inf"], "got inf"),
    (["--spectra-every", "0"], "--spectra-every must be an integer >= 1; got 0"),
    (["--ks", "10", "20", "--m", "5"], "--ks must all lie in [3, m=5]"),
    (["--spectra-k", "200"], "--spectra-k must lie in [3, m=100]; got 200"),
    (["--seed", "-1"], "--seed must be an integer >= 0; got -1"),
    (["--device", "nonsense"], "--device: device='nonsense' is not a torch device"),
    (["--device", _bad_cuda()], "--device"),
    (["--m", "100000000"], "--m 100000000"),
    (["--trials", "1000000000"], "--trials 1000000000"),
]


@pytest.mark.parametrize("argv, message", FIG3_BAD, ids=[" ".join(a) for a, _ in FIG3_BAD])
def test_figure3_bad_settings_are_refused_before_compute(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(lr_bound, "spectra_table", _no_compute)
    monkeypatch.setattr(lr_bound, "max_lr_table", _no_compute)
    line = _refused(lr_bound.main, argv + ["--out", str(tmp_path / "o")], capsys)
    assert "error: " in line
    assert message in line, line


def test_memory_refusal_names_the_estimate_and_the_available_memory(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(lr_bound, "spectra_table", _no_compute)
    line = _refused(lr_bound.main, ["--m", "100000000", "--out", str(tmp_path)], capsys)
    assert "TiB of memory" in line
    assert "is available" in line and "--ks 3..100 (98 values)" in line
    # refusal decided by the estimate against what is available: pretend 1 MiB is left
    monkeypatch.setattr(mem, "_host_available", lambda: (2**20, "test"))
    line = _refused(lr_bound.main, ["--out", str(tmp_path)], capsys)
    assert "but 1.0 MiB is available (test)" in line
    line = _refused(dimensional_collapse.main, ["--out", str(tmp_path)], capsys)
    assert "but 1.0 MiB is available (test)" in line and "--trials 10" in line
    assert not any(tmp_path.iterdir())  # refused before --out was touched


def test_memory_estimates_follow_the_tensor_shapes():
    cpu = torch.device("cpu")
    one = sum(mem.search_bytes([30], 1000, 100, 1, cpu))
    ten = sum(mem.search_bytes([30], 1000, 1000, 1, cpu))
    assert 9 < ten / one < 11  # linear in trials
    # at least the float64 starts themselves: trials x k x m x 8 bytes
    assert one > 100 * 30 * 1000 * 8
    # the default Figure 3 run is estimated at tens of MiB, not refused on any machine that runs the suite
    assert sum(mem.search_bytes(list(range(3, 101)), 100, 5, 1, cpu)) < 2**30
    assert mem.format_bytes(1536) == "1.5 KiB" and mem.format_bytes(3 * 2**50) == "3.0 PiB"


@pytest.mark.parametrize("kind", ["file", "read-only"])
def test_out_that_cannot_be_written_is_refused_before_compute(kind, tmp_path, monkeypatch, capsys):
    import clop._io

    target = tmp_path / "out"
    if kind == "file":
        target.write_text("not a folder")
        expected = f"--out {str(target)!r} is a file"
    else:  # root ignores permission bits, so refuse the write itself
        target.mkdir()
        real = clop._io.tempfile.mkstemp

        def mkstemp(*args, dir=None, **kwargs):
            if Path(dir) == target:
                raise PermissionError(13, "Permission denied")
            return real(*args, dir=dir, **kwargs)

        monkeypatch.setattr(clop._io.tempfile, "mkstemp", mkstemp)
        expected = f"--out {str(target)!r} cannot be written: Permission denied"
    monkeypatch.setattr(lr_bound, "spectra_table", _no_compute)
    monkeypatch.setattr(dimensional_collapse, "run", _no_compute)
    assert expected in _refused(lr_bound.main, ["--out", str(target)], capsys)
    assert expected in _refused(dimensional_collapse.main, ["--out", str(target)], capsys)


FIG4_BAD = [
    (["--steps", "0"], "--steps must be an integer >= 1; got 0"),
    (["--trials", "0"], "--trials must be an integer >= 1; got 0"),
    (["--record-every", "0"], "--record-every must be an integer >= 1; got 0"),
    (["--eta", "inf"], "--eta must be a finite number > 0; got inf"),
    (["--ks", "10", "--m", "5"], "--ks must lie in [3, m=5]"),
    (["--device", "nonsense"], "--device: device='nonsense'"),
    (["--ks", "3", "--m", "100000000"], "--m 100000000"),
]


@pytest.mark.parametrize("argv, message", FIG4_BAD, ids=[" ".join(a) for a, _ in FIG4_BAD])
def test_figure4_bad_settings_are_refused_before_compute(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(dimensional_collapse, "run", _no_compute)
    assert message in _refused(dimensional_collapse.main, argv + ["--out", str(tmp_path)], capsys)


def test_benchmark_refuses_bad_settings_without_printing_a_speed_up(monkeypatch, capsys):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import bench_lclass
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    monkeypatch.setattr(bench_lclass, "sweep", _no_compute)
    for argv, message in [(["--steps", "0"], "--steps must be an integer >= 1; got 0"),
                          (["--device", "nonsense"], "--device: device='nonsense'"),
                          (["--etas", "nan"], "--etas must be a finite number > 0; got nan"),
                          (["--trials", "1000000000"], "--trials 1000000000")]:
        with pytest.raises(SystemExit) as info:
            bench_lclass.main(argv)
        captured = capsys.readouterr()
        assert info.value.code == 2 and message in captured.err and "speed-up" not in captured.out


def test_theory_output_paths_are_checked_before_compute(tmp_path, monkeypatch, capsys):
    from theory import __main__ as cli
    from theory import report

    monkeypatch.setattr(report, "all_claims", _no_compute)
    assert "--markdown" in _refused(cli.main, ["--markdown", str(tmp_path)], capsys)
    (tmp_path / "f").write_text("")
    line = _refused(cli.main, ["--markdown", str(tmp_path / "f" / "r.md")], capsys)
    assert line.endswith(f"--markdown {str(tmp_path / 'f' / 'r.md')!r} cannot be written: {str(tmp_path / 'f')!r} is a file, not a folder")
    line = _refused(cli.main, ["--figure", str(tmp_path / "fig.txt")], capsys)
    assert "--figure" in line and "must end in one of" in line and "'.png'" in line


# --------------------------------------------------------------------------------------------------
# item 6: no result at the search cap, no meaningless horizon estimate, settings stated as used


def test_capped_search_is_reported_as_no_collapse_below_the_cap(tmp_path, monkeypatch, capsys):
    import matplotlib.figure

    titles: list[str] = []

    def record_titles(self, *args, **kwargs):  # draws nothing: the titles are what is checked
        titles.extend(ax.get_title() for ax in self.axes if ax.get_title())

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record_titles)
    argv = ["--ks", "3", "--m", "10", "--trials", "1", "--steps", "10", "--spectra-steps", "8",
            "--spectra-every", "4", "--out", str(tmp_path)]
    assert lr_bound.main(argv) == 0
    out = capsys.readouterr().out
    assert "no collapse below the cap η = 6 within 10 steps in any trial for k = 3" in out
    assert "m = 10, min over 1 trial(s), resolution 0.001" in out and "measured(min/1)" in out
    row = next(line for line in out.splitlines() if line.split()[:1] == ["3"])
    assert "6.0000" not in row and "—" in row
    # every number printed is of a sensible size (no 300-digit horizon estimate)
    numbers = [float(t) for t in out.replace(",", " ").split() if t.replace(".", "", 1).isdigit()]
    assert max(numbers) < 1e4
    ml = pd.read_csv(tmp_path / "figure3_max_lr.csv")
    assert ml["max_lr"].isna().all() and np.isinf(ml["min_collapse_lr"]).all()
    assert ml["finite_horizon_estimate"].isna().all()
    assert any("k = 10, m = 10," in t for t in titles)  # spectra k = min(30, m)
    assert any("(m = 10, 10 steps, resolution 0.001, 1 trials)" in t for t in titles), titles
    drawn = list(titles)
    titles.clear()
    assert lr_bound.plot(tmp_path) == tmp_path / "figure3.png"  # redrawn from the CSV files alone
    assert titles == drawn


def test_finite_horizon_estimate_is_infinite_when_no_eta_can_collapse_in_time():
    from simulations.lclass import collapse_steps_estimate, fastest_collapse_steps, finite_horizon_threshold

    t_min = fastest_collapse_steps(3, m0=0.5)
    assert collapse_steps_estimate(3, 1e6, m0=0.5) == pytest.approx(t_min, rel=1e-4)
    assert math.isinf(finite_horizon_threshold(3, math.floor(t_min), m0=0.5))
    eta = finite_horizon_threshold(3, math.floor(t_min) + 2, m0=0.5)
    assert math.isfinite(eta) and collapse_steps_estimate(3, eta, m0=0.5) <= math.floor(t_min) + 2


# --------------------------------------------------------------------------------------------------
# items 7 and 8: the library


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


@pytest.mark.parametrize("x, message", [
    (torch.ones(3, 4, dtype=torch.int64), "floating-point tensor; got dtype torch.int64"),
    (torch.zeros(0, 3), "x is empty"),
    (torch.zeros(3, 0), "x is empty"),
    (torch.zeros(0, 3, 4), "x is empty"),
    ([[1.0, 0.0], [0.0, 1.0]], "x must be a torch.Tensor"),
])
def test_l_class_refuses_integer_and_empty_input(x, message):
    from clop.losses import l_class

    with pytest.raises(ValueError, match=message):
        l_class(x)


# --------------------------------------------------------------------------------------------------
# item 10: reproduce.py


def _fake_steps(monkeypatch, behaviours: dict[str, object]) -> list[str]:
    import reproduce

    ran: list[str] = []
    steps = []
    for name, behaviour in behaviours.items():
        mod = types.ModuleType(f"_fake_step_{name}")

        def main(argv, name=name, behaviour=behaviour):
            ran.append(name)
            if isinstance(behaviour, BaseException):
                raise behaviour
            return behaviour

        mod.main = main
        monkeypatch.setitem(sys.modules, mod.__name__, mod)
        steps.append((name, mod.__name__, lambda out, dev: []))
    monkeypatch.setattr(reproduce, "STEPS", steps)
    return ran


def test_reproduce_runs_every_step_and_reports_each_failure(tmp_path, monkeypatch, capsys):
    import reproduce

    ran = _fake_steps(monkeypatch, {"argerror": SystemExit(2), "crash": RuntimeError("boom"), "fine": 0,
                                    "status": 3, "exit0": SystemExit(0)})
    assert reproduce.main(["--out", str(tmp_path)]) == 1
    assert ran == ["argerror", "crash", "fine", "status", "exit0"]
    out = capsys.readouterr()
    summary = out.out[out.out.index("== summary"):]
    for name, word in [("argerror", "FAILED (status 2)"), ("crash", "FAILED (status 1)"), ("fine", "ok"),
                       ("status", "FAILED (status 3)"), ("exit0", "ok")]:
        assert any(line.split()[:1] == [name] and word in line for line in summary.splitlines()), summary
    assert "failed steps: argerror, crash, status" in out.err and "RuntimeError: boom" in out.err
    _fake_steps(monkeypatch, {"a": 0, "b": 0})
    assert reproduce.main(["--out", str(tmp_path)]) == 0


def test_reproduce_stops_on_ctrl_c_after_printing_the_summary(tmp_path, monkeypatch, capsys):
    import reproduce

    ran = _fake_steps(monkeypatch, {"first": 0, "second": KeyboardInterrupt(), "third": 0})
    assert reproduce.main(["--out", str(tmp_path)]) == 130
    assert ran == ["first", "second"]
    out = capsys.readouterr()
    assert "INTERRUPTED" in out.out and "first" in out.out[out.out.index("== summary"):]
    assert "interrupted during step second" in out.err


# --------------------------------------------------------------------------------------------------
# issue 11 (theory): verdicts computed from the values they print


def test_no_theory_verdict_is_a_constant():
    """Every Claim(...) in theory/report.py gets its verdict from an expression, except 'not checked'
    (the check could not run at all)."""
    tree = ast.parse((REPO / "theory" / "report.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "Claim"]
    assert len(calls) >= 20
    constant = [ast.unparse(c.args[3]) for c in calls
                if len(c.args) > 3 and isinstance(c.args[3], ast.Constant) and c.args[3].value != "not checked"]
    assert constant == []


def test_t1_k30_verdict_follows_the_printed_values(monkeypatch):
    from theory import report
    from theory.paper_data import PAPER_QUOTES

    claim = report.t1_k30_claim()
    assert claim.verdict == "holds with correction"
    assert "printed closed form 2.0333" in claim.detail and "matches: printed closed form" in claim.detail
    quote = dict(PAPER_QUOTES["theorem1_bound_k30"])
    for value, verdict in [("2.07", "holds"), ("2.50", "fails")]:
        monkeypatch.setitem(PAPER_QUOTES, "theorem1_bound_k30", {**quote, "value": value})
        assert report.t1_k30_claim().verdict == verdict
    assert report.k30_verdict(["printed ratio"], bracket=False) == "fails"


def test_t1_proof_verdict_is_computed():
    from theory import report

    claim = report.t1_proof_claim(fast=True)
    assert claim.verdict == "fails"
    assert "k = 30: (0, inf)" in claim.detail and "k = 30: (0, 29/14]" in claim.detail
    assert report.proof_verdict(last_step_void=False, rows_above_fraction=0.0) == "holds"
    assert report.proof_verdict(last_step_void=False, rows_above_fraction=0.3) == "fails"

