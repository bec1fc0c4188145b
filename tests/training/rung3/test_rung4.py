"""Rung 4 of the ladder (ResNet-50 on CIFAR-100; docs/ladder.md): its grid resolves to the runs the commands in
docs/ladder.md describe, its command line refuses what it cannot run, and its report code reads a real ResNet-50
run: the smoke version of the grid (``--smoke``, generated 16 px images) on the CPU."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from tests.training.rung3.helpers import one_line_refusal
from training.data.cifar import write_synthetic_cifar
from training.rung3 import cli
from training.rung3.grid import RUNG4, make_launch, points
from training.rung3.report import LADDER_COLUMNS, report_files
from training.sweeps.launch import pretrain_config


def test_the_default_grid_is_the_documented_one():
    pts = points(rung=RUNG4)
    assert len(pts) == len(RUNG4.lrs) * 2 * 2 * 6  # lrs x {lars, sgd} x {bn, fixed} x six seeds
    assert {n for n, _ in pts} == {"bn", "fixed"}  # a ResNet-50 without BatchNorm is not on this rung
    norm, p = pts[0]
    assert (norm, str(p.run_dir)) == ("bn", "runs/ladder_rung4/e100/bn/infonce10_lars_b1024_lr4.8_s0")
    for norm, p in pts:
        cfg = pretrain_config(p, make_launch(norm, rung=RUNG4, data_root="/data"))  # as training.pretrain resolves it
        assert (cfg.dataset, cfg.arch, cfg.batch_size, cfg.epochs, cfg.data_root) == ("cifar100", "resnet50", 1024,
                                                                                      100, "/data")
        assert cfg.base_lr * cfg.batch_size / 256 == pytest.approx(p.value)  # the grid's lr is the optimiser's rate
        assert cfg.hold_weight_norms == (norm == "fixed")
        assert (cfg.loss, cfg.label_fraction, cfg.clop_lambda, cfg.optimizer) == ("infonce", 0.1, 0.0,
                                                                                  p.settings["optimizer"])
    with pytest.raises(ValueError, match=r"norms=\['nobn'\]: expected some of \['bn', 'fixed'\]"):
        points(norms=["nobn"], rung=RUNG4)


@pytest.mark.parametrize("argv, needle", [
    (["--norms", "nobn"], "invalid choice: 'nobn'"),
    (["--smoke"], "--smoke runs on generated images: it needs --dataset synthetic"),
    (["--batch-size", "0"], "--batch-size must be an integer >= 1"),
    (["--data-root", ""], "--data-root"),
    (["--dataset", "digits"], "invalid choice: 'digits'"),
    (["--context-lrs", "3"], "unrecognized arguments: --context-lrs"),
])
def test_bad_flags_are_one_line_errors(argv, needle, capsys, tmp_path):
    assert RUNG4.command == "python -m training.rung4"
    assert needle in one_line_refusal(argv, RUNG4, capsys, tmp_path)


@pytest.mark.slow
def test_the_smoke_grid_runs_and_its_report_reads_the_resnet(tmp_path, capsys):
    """One ResNet-50 run with its weight norms held (the launch, training.pretrain, the probe, the measurements);
    the BatchNorm arm is that run copied, so the report has both arms to pair (the pairing, not the numbers, is
    what this checks: the verdicts on real data need the GPU grid). The generated set is a small one (10 training
    and 10 test images per class): the probe embeds every image, and nothing here needs more."""
    data = tmp_path / "data"
    write_synthetic_cifar(data / "synthetic", train_per_class=10, test_per_class=10)
    runs = tmp_path / "runs"
    argv = ["--smoke", "--dataset", "synthetic", "--data-root", str(data), "--runs", str(runs),
            "--out", str(tmp_path / "out"), "--ladder-rows", str(tmp_path / "rows" / "ladder_rows_rung4.csv"),
            "--epochs", "1", "--batch-size", "16", "--lrs", "4.8", "--optimizers", "sgd", "--seeds", "0",
            "--device", "cpu", "--no-progress"]
    assert cli.main([*argv, "--norms", "fixed"], rung=RUNG4) == 0
    fixed = runs / "e1" / "fixed" / "infonce10_sgd_b16_lr4.8_s0"
    assert "--arch resnet50" in (runs / "e1" / "fixed" / f"{fixed.name}.log").read_text()
    shutil.copytree(fixed, runs / "e1" / "bn" / fixed.name)
    capsys.readouterr()
    assert cli.main([*argv, "--report-only"], rung=RUNG4) == 0
    out = capsys.readouterr().out
    assert "LAD-R4-collapse-sgd-fixed" in out and "LAD-R4-earlier-fixed-sgd" in out and "2 of 2 runs" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(report_files(RUNG4))

    tab = pd.read_csv(tmp_path / "out" / "rung4_runs.csv")
    row = tab[tab["norm"] == "fixed"].iloc[0]
    # the measurements against the run's own record: the held norms, and the held-out mean unit embedding that
    # training.pretrain logged at its last step (the same images, embedded once more here; the float32 forward
    # passes differ only in their batching, far below this tolerance)
    assert row["w_growth"] == pytest.approx(1.0, abs=1e-5)
    logged = pd.read_csv(fixed / "metrics.csv")["geom_mu_norm"].iloc[-1]
    assert row["mu_norm"] == pytest.approx(logged, abs=1e-4)
    assert row["top1"] == pytest.approx(json.loads((fixed / "linear_eval.json").read_text())["top1"])

    rows = pd.read_csv(tmp_path / "rows" / "ladder_rows_rung4.csv")
    assert list(rows.columns) == list(LADDER_COLUMNS) and set(rows["rung"]) == {4}
    assert set(rows["units"]) == {"lr (batch 16)"} and set(rows["model"]) == {
        "ResNet-50 on synthetic, BatchNorm (as trained)", "ResNet-50 on synthetic, BatchNorm, weight norms held fixed"}
    md = (tmp_path / "out" / "rung4.md").read_text()
    assert md.startswith("# Rung 4: the ResNet-50 on synthetic") and f"under `{runs}`" in md
