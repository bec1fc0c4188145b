"""Tests of simulations/dimensional_collapse.py (Figure 4): a small run, outputs replaced atomically and
together (and redrawn from the CSV by simulations.lclass.figure4.plot), bad settings refused before any
compute with exit status 2 and a message naming the flag.
"""

from __future__ import annotations

import pandas as pd
import pytest

from simulations import dimensional_collapse
from simulations.lclass import figure4
from tests.helpers import fail_on_call, no_compute, refused, snapshot

FIG4_TINY = ["--ks", "4", "--m", "6", "--steps", "20", "--trials", "2", "--record-every", "10"]


FIG4_FILES = ("figure4.csv", "figure4_claims.csv", "figure4.png")


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One torch thread (tests/conftest.py), as the scripts use by default."""


def test_figure4_script_small(tmp_path):
    rc = dimensional_collapse.main(["--ks", "5", "--m", "12", "--steps", "60", "--trials", "2", "--out", str(tmp_path)])
    assert rc == 0
    assert (tmp_path / "figure4.png").stat().st_size > 0
    df = pd.read_csv(tmp_path / "figure4.csv")
    assert set(df.quantity.unique()) == {"singular_value", "pairwise_cosine", "l_class"}


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
    assert figure4.plot(out) == out / "figure4.png"
    capsys.readouterr()


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
    monkeypatch.setattr(dimensional_collapse, "figure4_table", no_compute)
    assert message in refused(dimensional_collapse.main, argv + ["--out", str(tmp_path)], capsys)
