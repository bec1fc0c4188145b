"""Safety of the figure scripts and the L_class benchmark: outputs replaced atomically and together, bad settings refused before any
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
from tests.helpers import REPO, fail_on_call, no_compute, refused, snapshot


FIG3_TINY = ["--ks", "3", "4", "--m", "6", "--trials", "1", "--steps", "40", "--resolution", "0.05",
             "--spectra-steps", "10", "--spectra-every", "5"]
FIG4_TINY = ["--ks", "4", "--m", "6", "--steps", "20", "--trials", "2", "--record-every", "10"]
FIG3_FILES = lr_bound.OUTPUTS
FIG4_FILES = ("figure4.csv", "figure4.png")


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One torch thread (tests/conftest.py), as the scripts use by default."""


# --------------------------------------------------------------------------------------------------
# item 1: interrupted runs leave the previous complete outputs byte-identical


def test_interrupted_figure3_run_leaves_previous_outputs_byte_identical(tmp_path, monkeypatch, capsys):
    import matplotlib.figure

    out = tmp_path / "fig3"
    assert lr_bound.main(FIG3_TINY + ["--out", str(out)]) == 0
    before = snapshot(out)
    assert set(before) == set(FIG3_FILES)
    assert before["figure3.pdf"].rstrip().endswith(b"%%EOF")

    # Ctrl-C while writing the second CSV
    monkeypatch.setattr(pd.DataFrame, "to_csv", fail_on_call(2)(pd.DataFrame.to_csv))
    with pytest.raises(KeyboardInterrupt):
        lr_bound.main(FIG3_TINY + ["--out", str(out), "--seed", "1"])
    monkeypatch.undo()
    assert snapshot(out) == before  # no temporary file left behind either

    # Ctrl-C while saving the PDF, after both CSVs and the PNG were written
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", fail_on_call(2)(matplotlib.figure.Figure.savefig))
    with pytest.raises(KeyboardInterrupt):
        lr_bound.main(FIG3_TINY + ["--out", str(out), "--seed", "1"])
    monkeypatch.undo()
    assert snapshot(out) == before

    # the interrupted runs had different data to write (so the checks above could fail)
    new = lr_bound.spectra_table(k=6, m=6, steps=10, record_every=5, seed=1, device="cpu")
    assert new.to_csv(index=False).encode() != before["figure3_spectra.csv"]
    capsys.readouterr()


def test_interrupted_figure4_run_leaves_previous_outputs_byte_identical(tmp_path, monkeypatch, capsys):
    import matplotlib.figure

    out = tmp_path / "fig4"
    assert dimensional_collapse.main(FIG4_TINY + ["--out", str(out)]) == 0
    before = snapshot(out)
    assert set(before) == set(FIG4_FILES)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", fail_on_call(1)(matplotlib.figure.Figure.savefig))
    with pytest.raises(KeyboardInterrupt):
        dimensional_collapse.main(FIG4_TINY + ["--out", str(out), "--seed", "1"])
    monkeypatch.undo()
    assert snapshot(out) == before
    df = pd.read_csv(out / "figure4.csv")
    assert (df["m"] == 6).all() and (df["eta"] == 0.2).all()
    assert dimensional_collapse.plot(out) == out / "figure4.png"
    capsys.readouterr()


# --------------------------------------------------------------------------------------------------
# items 6 and 9: bad settings end with status 2 and a message naming the flag, before any compute


def _bad_cuda() -> str:
    return f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"


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
    (["--device", "nonsense"], "--device='nonsense' is not a torch device"),
    (["--device", _bad_cuda()], "--device"),
    (["--m", "100000000"], "--m 100000000"),
    (["--trials", "1000000000"], "--trials 1000000000"),
]


@pytest.mark.parametrize("argv, message", FIG3_BAD, ids=[" ".join(a) for a, _ in FIG3_BAD])
def test_figure3_bad_settings_are_refused_before_compute(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(lr_bound, "spectra_table", no_compute)
    monkeypatch.setattr(lr_bound, "max_lr_table", no_compute)
    line = refused(lr_bound.main, argv + ["--out", str(tmp_path / "o")], capsys)
    assert "error: " in line
    assert message in line, line


def test_memory_refusal_names_the_estimate_and_the_available_memory(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(lr_bound, "spectra_table", no_compute)
    line = refused(lr_bound.main, ["--m", "100000000", "--out", str(tmp_path)], capsys)
    assert "TiB of memory" in line
    assert "is available" in line and "--ks 3..100 (98 values)" in line
    # refusal decided by the estimate against what is available: pretend 1 MiB is left
    monkeypatch.setattr(mem, "_host_available", lambda: (2**20, "test"))
    line = refused(lr_bound.main, ["--out", str(tmp_path)], capsys)
    assert "but 1.0 MiB is available (test)" in line
    line = refused(dimensional_collapse.main, ["--out", str(tmp_path)], capsys)
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
    import clop.util.io

    target = tmp_path / "out"
    if kind == "file":
        target.write_text("not a folder")
        expected = f"--out {str(target)!r} is a file"
    else:  # root ignores permission bits, so refuse the write itself
        target.mkdir()
        real = clop.util.io.tempfile.mkstemp

        def mkstemp(*args, dir=None, **kwargs):
            if Path(dir) == target:
                raise PermissionError(13, "Permission denied")
            return real(*args, dir=dir, **kwargs)

        monkeypatch.setattr(clop.util.io.tempfile, "mkstemp", mkstemp)
        expected = f"--out {str(target)!r} cannot be written: Permission denied"
    monkeypatch.setattr(lr_bound, "spectra_table", no_compute)
    monkeypatch.setattr(dimensional_collapse, "run", no_compute)
    assert expected in refused(lr_bound.main, ["--out", str(target)], capsys)
    assert expected in refused(dimensional_collapse.main, ["--out", str(target)], capsys)


FIG4_BAD = [
    (["--steps", "0"], "--steps must be an integer >= 1; got 0"),
    (["--trials", "0"], "--trials must be an integer >= 1; got 0"),
    (["--record-every", "0"], "--record-every must be an integer >= 1; got 0"),
    (["--eta", "inf"], "--eta must be a finite number > 0; got inf"),
    (["--ks", "10", "--m", "5"], "--ks must lie in [3, m=5]"),
    (["--device", "nonsense"], "--device='nonsense'"),
    (["--ks", "3", "--m", "100000000"], "--m 100000000"),
]


@pytest.mark.parametrize("argv, message", FIG4_BAD, ids=[" ".join(a) for a, _ in FIG4_BAD])
def test_figure4_bad_settings_are_refused_before_compute(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(dimensional_collapse, "run", no_compute)
    assert message in refused(dimensional_collapse.main, argv + ["--out", str(tmp_path)], capsys)


def test_benchmark_refuses_bad_settings_without_printing_a_speed_up(monkeypatch, capsys):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import bench_lclass
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    monkeypatch.setattr(bench_lclass, "sweep", no_compute)
    for argv, message in [(["--steps", "0"], "--steps must be an integer >= 1; got 0"),
                          (["--device", "nonsense"], "--device='nonsense'"),
                          (["--etas", "nan"], "--etas must be a finite number > 0; got nan"),
                          (["--trials", "1000000000"], "--trials 1000000000")]:
        with pytest.raises(SystemExit) as info:
            bench_lclass.main(argv)
        captured = capsys.readouterr()
        assert info.value.code == 2 and message in captured.err and "speed-up" not in captured.out


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


