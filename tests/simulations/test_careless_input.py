"""What a hostile or careless command does to the simulation scripts: an empty --out, repeated values, a
second run on the same --out, the temporaries of a killed run, a refused setting or a diverging run after
--out was named. Each case ends in a one-line error or a correct result, and nothing is lost."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from clop.util.io import OUTPUT_LOCK, _temp_for
from clop.util.lock import FolderLock
from simulations import dimensional_collapse, lr_bound, synthetic_ffn, table5_seeds
from simulations.ffn import train as ffn_train
from tests.helpers import no_compute, refused, snapshot

FIG3_TINY = ["--ks", "3", "4", "--m", "6", "--trials", "1", "--steps", "40", "--resolution", "0.05",
             "--spectra-steps", "10", "--spectra-every", "5"]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One torch thread (tests/conftest.py), as the scripts use by default."""


@pytest.mark.parametrize("main", [lr_bound.main, dimensional_collapse.main, synthetic_ffn.main, table5_seeds.main])
def test_an_empty_out_is_refused(main, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "--out must not be empty" in refused(main, ["--out", ""], capsys)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("main, argv, flag", [
    (lr_bound.main, ["--ks", "3", "3"], "--ks repeats 3"),
    (dimensional_collapse.main, ["--ks", "10", "10"], "--ks repeats 10"),
    (synthetic_ffn.main, ["--seeds", "2", "--losses", "infonce", "infonce"], "--losses repeats infonce"),
    (table5_seeds.main, ["--sizes", "10", "10"], "--sizes repeats 10"),
])
def test_repeated_values_are_refused_instead_of_counted_twice(main, argv, flag, capsys, tmp_path):
    assert flag in refused(main, argv + ["--out", str(tmp_path / "o")], capsys)
    assert not (tmp_path / "o").exists()


def test_a_second_run_on_the_same_out_is_refused_while_the_first_writes(tmp_path, capsys, monkeypatch):
    out = tmp_path / "fig3"
    assert lr_bound.main(FIG3_TINY + ["--out", str(out)]) == 0
    before = snapshot(out)
    assert OUTPUT_LOCK not in before  # released at the end
    monkeypatch.setattr(lr_bound, "spectra_table", no_compute)
    with FolderLock.acquire(out, "another lr_bound.py", name=OUTPUT_LOCK):
        line = refused(lr_bound.main, FIG3_TINY + ["--out", str(out)], capsys)
    assert "is in use by another lr_bound.py" in line
    assert snapshot(out) == before


def test_temporaries_left_by_a_killed_run_are_removed_by_the_next(tmp_path):
    out = tmp_path / "fig3"
    out.mkdir()
    stale = [_temp_for(out / "figure3.png"), _temp_for(out / "figure3_max_lr.csv")]
    (out / "notes.txt").write_text("mine")
    assert lr_bound.main(FIG3_TINY + ["--out", str(out)]) == 0
    assert not any(p.exists() for p in stale)
    assert (out / "notes.txt").read_text() == "mine"


def test_a_refused_setting_or_a_diverging_run_leaves_no_folder(tmp_path, capsys, monkeypatch):
    out = tmp_path / "new" / "t5"
    assert "--batch-size must be at most the 500 points" in refused(
        synthetic_ffn.main, ["--batch-size", "1000000", "--out", str(out)], capsys)
    assert not (tmp_path / "new").exists()

    def diverges(*args, **kwargs):
        raise FloatingPointError("the loss became nan at epoch 3")

    monkeypatch.setattr(ffn_train, "run_experiment", diverges)
    assert synthetic_ffn.main(["--seeds", "2", "--out", str(out)]) == 2
    assert "nothing was written" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_the_claims_file_is_written_with_the_figure(tmp_path):
    assert lr_bound.main(FIG3_TINY + ["--out", str(tmp_path)]) == 0
    claims = pd.read_csv(tmp_path / "figure3_claims.csv")
    assert {"F3-2.0-vs-2.1", "F3-last-sv", "F3-bound-aligns"} >= set(claims["id"]) and len(claims) >= 1
    assert os.path.getsize(tmp_path / "figure3.png") > 0


def test_a_huge_eta_collapses_and_is_drawn_instead_of_a_traceback(tmp_path):
    """--eta 1e12 collapses every run completely: every pairwise cosine is 1 and the histogram has no width."""
    assert dimensional_collapse.main(["--eta", "1e12", "--ks", "10", "--trials", "2", "--steps", "20",
                                      "--out", str(tmp_path)]) == 0
    claims = pd.read_csv(tmp_path / "figure4_claims.csv").set_index("id")
    assert claims.loc["F4-rank", "verdict"] == "fails" and "k = 10: 1..1" in claims.loc["F4-rank", "result"]
    assert os.path.getsize(tmp_path / "figure4.png") > 0
