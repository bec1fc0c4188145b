"""Tests of simulations/table5_seeds.py (the seed study): it runs on pools it finds in --out without training
them again, redraws the committed report from the committed runs files, and refuses bad settings before any
training (exit status 2 and a message naming the flag)."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest

from simulations import table5_seeds
from simulations.ffn import seeds, train
from simulations.ffn.data import REGIMES
from tests.helpers import REPO, no_compute, refused


def _fake_pool(pool: int, shift: float) -> pd.DataFrame:
    i = np.arange(pool)
    rows = []
    for k, loss in enumerate(train.LOSSES):
        for s in i:
            gain = shift * k + 0.5 * np.sin(s + k)
            for clop, acc in ((False, 0.6), (True, 0.6 + gain / 100)):
                rows.append({"loss": loss, "clop": clop, "seed": int(s), "knn_accuracy": acc, "stable_rank": 2.0,
                             "entropy_rank": 2.0})
    return pd.DataFrame(rows)


def test_study_on_pools_already_in_out_trains_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train, "run_experiment", no_compute)
    for j, regime in enumerate(REGIMES):
        _fake_pool(12, 2.0 + j).to_csv(seeds.runs_path(tmp_path, regime), index=False)
    assert table5_seeds.main(["--pool", "12", "--sizes", "6", "3", "--bootstrap", "20", "--out", str(tmp_path),
                              "--no-progress", "--device", "cpu"]) == 0
    table = pd.read_csv(tmp_path / "table5_seed_study.csv")
    assert set(table["regime"]) == set(REGIMES) and sorted(set(table["n"])) == [3, 6]
    text = (tmp_path / "table5_seed_study.md").read_text()
    assert text in capsys.readouterr().out and "| separable |" in text and "| overlapping |" in text


def test_committed_report_redraws_from_the_committed_runs(tmp_path, monkeypatch):
    """The default study on paper_figures' runs files: the same table and report (the run time aside)."""
    monkeypatch.setattr(train, "run_experiment", no_compute)
    figures = REPO / "paper_figures"
    for regime in REGIMES:
        shutil.copy(seeds.runs_path(figures, regime), tmp_path)
    assert table5_seeds.main(["--out", str(tmp_path), "--no-progress", "--device", "cpu"]) == 0
    assert (tmp_path / "table5_seed_study.csv").read_bytes() == (figures / "table5_seed_study.csv").read_bytes()
    runtime = re.compile(r"^Runtime of the statistics: [0-9.]+ s", re.M)
    new, old = ((p / "table5_seed_study.md").read_text() for p in (tmp_path, figures))
    assert runtime.sub("Runtime", new) == runtime.sub("Runtime", old)


BAD = [
    (["--pool", "1"], "--pool must be an integer >= 2; got 1"),
    (["--sizes", "1"], "--sizes must be integers in [2, --pool=400]"),
    (["--pool", "10", "--sizes", "20"], "--sizes must be integers in [2, --pool=10]"),
    (["--bootstrap", "0"], "--bootstrap must be an integer >= 1; got 0"),
    (["--threads", "0"], "--threads must be an integer >= 1; got 0"),
    (["--chunk", "0"], "--chunk must be an integer >= 1; got 0"),
    (["--device", "nonsense"], "--device='nonsense'"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_settings_are_refused_before_training(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train, "run_experiment", no_compute)
    assert message in refused(table5_seeds.main, argv + ["--out", str(tmp_path)], capsys)
    assert not any(tmp_path.iterdir())


def test_out_that_is_a_file_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train, "run_experiment", no_compute)
    target = tmp_path / "a_file"
    target.write_text("x")
    assert "--out" in refused(table5_seeds.main, ["--out", str(target)], capsys)
