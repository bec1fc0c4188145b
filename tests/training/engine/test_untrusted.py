"""Files from elsewhere cannot run code: a crafted checkpoint or CIFAR file is refused, whatever reads it.

The fixtures (``tests/fixtures/untrusted``, written by its ``make_untrusted.py``) are pickles whose loading calls
``os.system`` to write the word "ran" to the file named by ``CLOP_TEST_MARKER``. One test proves that they do
run when trusted (plain ``pickle`` / ``torch.load(weights_only=False)`` in a child process); every other test
points the marker into its temporary folder, feeds a fixture to an entry point (``training.linear_eval --run``,
``training.pretrain --resume``, ``training.sweep``, ``training.practice``, ``--dataset cifar100``) and checks
the one-line refusal and that the marker never appears. Old checkpoints and CIFAR files of the real format still
load (the restricted readers admit what the formats need).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO
from training import linear_eval, pretrain, sweep
from training.data.catalog import DatasetCorruptError
from training.data.cifar import write_synthetic_cifar
from training.data.datasets import load_dataset
from training.engine.rundir import CheckpointError, read_checkpoint
from training.practice import cli as practice
from training.practice.grid import Grid, make_launch, study_points
from training.practice.run import run_in_process
from training.sweeps.grid import points
from training.sweeps.launch import Launch, pretrain_config

pytestmark = pytest.mark.usefixtures("one_thread")

UNTRUSTED = REPO / "tests" / "fixtures" / "untrusted"
RUN_ARGS = ["--dataset", "digits", "--arch", "small", "--epochs", "2", "--batch-size", "256", "--steps-per-epoch", "1",
            "--hidden-dim", "16", "--projection-dim", "16", "--geometry-images", "0", "--device", "cpu", "--seed", "0",
            "--no-progress"]
"""The settings of the fixture run (its config.json)."""


@pytest.fixture()
def marker(tmp_path, monkeypatch) -> Path:
    """Where a payload that ran would write; the tests run in ``tmp_path``."""
    path = tmp_path / "MARKER"
    monkeypatch.setenv("CLOP_TEST_MARKER", str(path))
    monkeypatch.chdir(tmp_path)
    return path


def _hostile_run(dst: Path, config: dict | None = None) -> Path:
    """The fixture run copied to ``dst`` (its config.json replaced by ``config`` when given), its checkpoint
    made the newest file as in a finished run (a fresh clone gives the files their checkout order's times)."""
    shutil.copytree(UNTRUSTED / "run", dst, dirs_exist_ok=True)
    if config is not None:
        (dst / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    newest = max(p.stat().st_mtime_ns for p in dst.iterdir())
    os.utime(dst / "checkpoint.pt", ns=(newest + 10**9, newest + 10**9))
    return dst


@pytest.mark.slow
def test_the_fixtures_do_run_code_when_trusted(tmp_path):
    """Without the restricted readers every fixture file writes the marker: the tests below test something."""
    files = [UNTRUSTED / "run" / "checkpoint.pt", *sorted((UNTRUSTED / "cifar" / "cifar-100-python").iterdir())]
    load_all = (
        "import os, pickle, sys, torch\n"
        "for i, path in enumerate(sys.argv[2:]):\n"
        "    os.environ['CLOP_TEST_MARKER'] = os.path.join(sys.argv[1], f'marker{i}')\n"
        "    if path.endswith('.pt'):\n"
        "        torch.load(path, weights_only=False)\n"
        "    else:\n"
        "        pickle.load(open(path, 'rb'), encoding='latin1')\n"
    )
    subprocess.run([sys.executable, "-c", load_all, str(tmp_path), *map(str, files)], capture_output=True,
                   timeout=120, check=True)
    for i, path in enumerate(files):
        assert (tmp_path / f"marker{i}").read_text().strip() == "ran", path


def test_a_crafted_checkpoint_is_refused_unread(marker):
    with pytest.raises(CheckpointError, match=r"is refused: it holds objects other than tensors.*posix\.system"):
        read_checkpoint(UNTRUSTED / "run" / "checkpoint.pt")
    assert not marker.exists()


def test_linear_eval_run_refuses_a_crafted_checkpoint(marker, tmp_path, capsys):
    run = _hostile_run(tmp_path / "run")
    assert linear_eval.main(["--run", str(run), "--device", "cpu", "--workers", "0", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: checkpoint {run / 'checkpoint.pt'} is refused") and err.count("\n") == 1, err
    assert not marker.exists()


def test_pretrain_resume_refuses_a_crafted_checkpoint(marker, tmp_path, capsys):
    run = _hostile_run(tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert pretrain.main([*RUN_ARGS, "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: checkpoint {run / 'checkpoint.pt'} is refused") and err.count("\n") == 1, err
    assert "--overwrite" in err and not marker.exists()
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_sweep_and_practice_never_run_a_crafted_checkpoint(marker, tmp_path, capsys):
    # a sweep point whose run folder holds the crafted checkpoint and the config the sweep would run
    extra = ["--arch", "small", "--epochs", "2", "--steps-per-epoch", "1", "--hidden-dim", "16", "--projection-dim",
             "16", "--geometry-images", "0", "--device", "cpu", "--workers", "0"]
    root = tmp_path / "sweeps"
    (point,) = points("lr", "digits", ["infonce10"], values=[0.3], root=root)
    config = dataclasses.asdict(pretrain_config(point, Launch(root=root, extra=tuple(extra))))
    _hostile_run(point.run_dir, config)
    argv = ["lr", "--dataset", "digits", "--variants", "infonce10", "--values", "0.3", "--root", str(root),
            "--no-progress", "--", *extra]
    assert sweep.main(argv, runner=run_in_process) == 1
    assert "pretrain failed (exit 2)" in capsys.readouterr().err
    assert "is refused" in point.run_dir.with_name(point.name + ".log").read_text()
    assert not marker.exists()

    # the practice study over a grid of one point (and its untrained reference), every run folder crafted
    grid = Grid(lrs=(0.3,), optimizers=("lars",), batches=(256,), reference_variants=("infonce10",),
                variants=("infonce10",))
    runs = tmp_path / "practice"
    pts = study_points(["lr"], [0], 1, runs, grid)
    launch = make_launch(runs, 1, "cpu")
    for p in pts:
        _hostile_run(p.run_dir, dataclasses.asdict(pretrain_config(p, launch)))
    argv = ["--only", "lr", "--epochs", "1", "--seeds", "0", "--runs", str(runs), "--out", str(tmp_path / "report"),
            "--device", "cpu", "--jobs", "1", "--no-progress"]
    assert practice.main(argv, grid=grid) == 1
    assert capsys.readouterr().err.count("FAILED at probe (exit 2)") == len(pts)  # the runs look trained
    assert all("is refused" in p.run_dir.with_name(p.name + ".log").read_text() for p in pts)
    assert not marker.exists()


@pytest.mark.parametrize("split", ["train", "test"])
def test_crafted_cifar_files_are_refused_unread(marker, split):
    with pytest.raises(DatasetCorruptError, match=r"is refused and was not read: it names posix\.system"):
        load_dataset("cifar100", UNTRUSTED / "cifar", split)
    assert not marker.exists()


def test_a_crafted_cifar_meta_file_is_refused_unread(marker, tmp_path):
    folder = write_synthetic_cifar(tmp_path / "data", num_classes=3, train_per_class=1, test_per_class=1)
    shutil.copy(UNTRUSTED / "cifar" / "cifar-100-python" / "meta", folder / "meta")
    with pytest.raises(DatasetCorruptError, match=rf"{folder / 'meta'} is refused and was not read"):
        load_dataset("cifar100", tmp_path / "data", "train")
    assert not marker.exists()


def test_pretrain_on_a_crafted_cifar_folder_is_one_line_and_creates_nothing(marker, tmp_path, capsys):
    out = tmp_path / "out"
    assert pretrain.main(["--dataset", "cifar100", "--data-root", str(UNTRUSTED / "cifar"), "--arch", "small",
                          "--device", "cpu", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is refused and was not read" in err and err.count("\n") == 1
    assert not marker.exists() and not out.exists()


def test_the_restricted_readers_admit_the_formats(tmp_path):
    """A checkpoint written before the reorganisation loads with weights_only=True; a CIFAR file re-pickled by
    Python 3 (protocol 2: the array's bytes through _codecs.encode) loads like the Python 2 originals."""
    ckpt = read_checkpoint(REPO / "tests" / "fixtures" / "old_run" / "partial" / "checkpoint.pt")
    assert (ckpt["epoch"], ckpt["step_in_epoch"]) == (1, 0) and ckpt["geometry"]["means"].shape == (10, 16)

    folder = write_synthetic_cifar(tmp_path / "a", num_classes=2, train_per_class=2, test_per_class=1)
    for name in ("train", "test", "meta"):
        with open(folder / name, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    assert b"_codecs" in (folder / "train").read_bytes()
    ds = load_dataset("cifar100", tmp_path / "a", "train")
    assert len(ds) == 4 and ds.classes == ["class_00", "class_01"] and np.asarray(ds[0][0]).shape == (32, 32, 3)
