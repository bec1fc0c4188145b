"""A run folder written before the training package was reorganised still resumes and is probed.

``tests/fixtures/old_run/`` holds a run made with the code of commit ``MADE_AT_COMMIT``: ``partial/`` (digits,
``--arch small``, killed in epoch 2 with its epoch-1 checkpoint) and ``finished/`` (metrics.csv, geometry.csv and
config.json of the same run, uninterrupted). Resumed now with the same settings it must end with the very numbers
of ``finished/``, and ``python -m training.linear_eval --run`` must probe it. The fixture was made with two torch
threads, and CPU results are bit-exact only for one thread count: the test runs with two.
"""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch

from tests.helpers import REPO
from training import linear_eval, pretrain
from training.config import ADDED_SETTINGS

FIXTURE = REPO / "tests" / "fixtures" / "old_run"
SETTINGS = ["--dataset", "digits", "--arch", "small", "--epochs", "2", "--batch-size", "256", "--steps-per-epoch", "2",
            "--hidden-dim", "16", "--projection-dim", "16", "--geometry-images", "100", "--device", "cpu", "--seed", "3"]
"""The settings of the fixture's run (as in partial/config.json)."""
TIME_COLUMNS = ["images_per_s", "epoch_seconds"]


@pytest.fixture()
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_the_fixture_is_the_run_its_settings_describe():
    saved = json.loads((FIXTURE / "partial" / "config.json").read_text())
    flags = dict(zip(SETTINGS[::2], SETTINGS[1::2]))
    for flag, value in flags.items():
        assert str(saved[flag[2:].replace("-", "_")]) == value, flag
    ckpt = torch.load(FIXTURE / "partial" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert (ckpt["epoch"], ckpt["step_in_epoch"]) == (1, 0)
    assert list(pd.read_csv(FIXTURE / "partial" / "metrics.csv")["epoch"]) == [1]


@pytest.mark.slow
@pytest.mark.usefixtures("two_threads")
def test_an_old_run_resumes_to_the_numbers_of_its_uninterrupted_twin_and_is_probed(tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE / "partial", run)
    assert pretrain.main([*SETTINGS, "--out", str(run), "--resume", "--no-progress"]) == 0
    assert "resumed at epoch 2, step 0" in capsys.readouterr().err

    ours = pd.read_csv(run / "metrics.csv").drop(columns=TIME_COLUMNS)
    theirs = pd.read_csv(FIXTURE / "finished" / "metrics.csv").drop(columns=TIME_COLUMNS)
    pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
    # geometry.csv: the rows written before the kill stay byte for byte (a column added since, eta_step_se,
    # widens the header and leaves them an empty cell); the resumed rows equal the twin's in every column but
    # the per-step fit, whose estimator changed since (a grid of etas before Gauss-Newton, NaN when two fit alike)
    added, refitted = ["eta_step_se"], ["eta_step", "r2_step"]
    old_lines = (FIXTURE / "finished" / "geometry.csv").read_text().splitlines()
    kept = (FIXTURE / "partial" / "geometry.csv").read_text().splitlines()[1:]
    width = len(old_lines[0].split(","))
    new_lines = (run / "geometry.csv").read_text().splitlines()
    assert new_lines[0].split(",")[:width] == old_lines[0].split(",") and new_lines[0].split(",")[width:] == added
    assert [",".join(line.split(",")[:width]) for line in new_lines[1:len(kept) + 1]] == kept
    ours = pd.read_csv(run / "geometry.csv").drop(columns=refitted + added)
    theirs = pd.read_csv(FIXTURE / "finished" / "geometry.csv").drop(columns=refitted)
    pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
    saved = json.loads((run / "config.json").read_text())
    finished = json.loads((FIXTURE / "finished" / "config.json").read_text())
    mine = {"out", "data_root", "workers", "resume"}  # where and how it was run, and the machine's CPUs
    added = {k: v for k, v in saved.items() if k not in finished}  # settings that came later, at what their absence meant
    assert added == {k: ADDED_SETTINGS[k] for k in added}
    assert {k: v for k, v in saved.items() if k not in mine | set(added)} == {
        k: v for k, v in finished.items() if k not in mine}

    results = tmp_path / "results.csv"
    assert linear_eval.main(["--run", str(run), "--results", str(results), "--workers", "0", "--device", "cpu",
                             "--no-progress"]) == 0
    row = pd.read_csv(results).iloc[0]
    assert (row["dataset"], row["arch"], row["trained_epochs"], row["seed"]) == ("digits", "small", 2, 3)
    assert 0.0 <= row["top1"] <= row["top5"] <= 1.0
