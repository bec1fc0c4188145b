"""Tests of simulations/lr_bound.py (Figure 3) and the tables and figure of simulations.lclass.figure3: a small
run, outputs replaced atomically and together, bad settings refused before any compute with exit status 2
and a message naming the flag, and no result reported at the search cap.

Every run uses tiny settings; the compute functions are replaced by ones that fail the test where a
setting must be refused before any compute.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from simulations import lr_bound
from simulations.lclass import figure3
from tests.helpers import fail_on_call, no_compute, refused, snapshot
from theory.theorem1 import critical_lr

FIG3_FILES = figure3.OUTPUTS


FIG3_TINY = ["--ks", "3", "4", "--m", "6", "--trials", "1", "--steps", "40", "--resolution", "0.05",
             "--spectra-steps", "10", "--spectra-every", "5"]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One torch thread (tests/conftest.py), as the scripts use by default."""


def test_figure3_script_small(tmp_path):
    rc = lr_bound.main(["--ks", "3", "8", "--trials", "2", "--steps", "300", "--spectra-steps", "40",
                        "--spectra-every", "20", "--out", str(tmp_path)])
    assert rc == 0
    for name in ("figure3.png", "figure3.pdf", "figure3_max_lr.csv", "figure3_spectra.csv"):
        assert (tmp_path / name).stat().st_size > 0
    ml = pd.read_csv(tmp_path / "figure3_max_lr.csv")
    assert {"k", "m", "trial", "max_lr", "theorem1_bound", "critical_lr", "paper_closed_form"} <= set(ml.columns)
    assert len(ml) == 4
    assert ml.loc[ml.k == 8, "critical_lr"].iloc[0] == pytest.approx(critical_lr(8))
    sp = pd.read_csv(tmp_path / "figure3_spectra.csv")
    assert set(sp.eta.unique()) == {2.0, 2.1} and sp["index"].max() == 30


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
    new = figure3.spectra_table(k=6, m=6, steps=10, record_every=5, seed=1, device="cpu")
    assert new.to_csv(index=False).encode() != before["figure3_spectra.csv"]
    capsys.readouterr()


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
    assert figure3.plot(tmp_path) == tmp_path / "figure3.png"  # redrawn from the CSV files alone
    assert titles == drawn
