"""A careless command loses nothing in a run folder, and what a run reads from it is checked.

* ``--overwrite`` (and a new run) deletes only the files of a run of ours: a folder whose config.json does not
  parse as a config of training.pretrain is left as it is, even under run files' names.
* A checkpoint of another architecture, an out-of-range ``labeled_indices.npy``, a garbage ``metrics.csv`` or
  ``geometry.csv``: one line naming the file (exit 2), not a traceback.
* ``--resume`` with ``metrics.csv`` or ``geometry.csv`` deleted is refused naming the file (the history before
  the checkpoint cannot be rebuilt), the folder unchanged.
* The temporaries a killed run left are removed at the next run or probe, under the lock; nothing else.
* Every check comes before ``--out`` is created: a refused start leaves no folder behind.
* ``train.log`` is never appended through a symbolic link.

Runs: digits, ``--arch small``, 2 epochs of one step (about 2 s each).
"""

from __future__ import annotations

import os
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import snapshot
from training import linear_eval, plots, pretrain
from training.engine.rundir import RunLogHandler
from training.practice import cli as practice
from training.practice.grid import Grid

pytestmark = pytest.mark.usefixtures("one_thread")

ARGS = ["--dataset", "digits", "--arch", "small", "--batch-size", "128", "--epochs", "2", "--warmup-epochs", "0",
        "--steps-per-epoch", "1", "--hidden-dim", "16", "--projection-dim", "16", "--eval-batch", "16",
        "--geometry-images", "100", "--device", "cpu", "--no-progress"]
PROBE = ["--device", "cpu", "--workers", "0", "--epochs", "1", "--no-progress"]


def _pretrain(out: Path | str, *extra: str) -> int:
    return pretrain.main([*ARGS, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "finished"
    assert _pretrain(run) == 0
    return run


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _partial(finished: Path, dst: Path) -> Path:
    """A copy of the finished run as it was after its first epoch (checkpoint.prev.pt as checkpoint.pt)."""
    run = _copy(finished, dst)
    shutil.copy(run / "checkpoint.prev.pt", run / "checkpoint.pt")
    return run


def _one_line(err: str, start: str) -> None:
    assert err.startswith(start) and err.count("\n") == 1 and "Traceback" not in err, err


# ------------------------------------------------------------------------------------------------ --overwrite


def test_an_empty_out_or_a_folder_of_another_program_loses_nothing(tmp_path, monkeypatch, capsys):
    """The issue: ``--out '' --overwrite`` deleted another program's config.json, train.log and metrics.csv in
    the current folder."""
    monkeypatch.chdir(tmp_path)
    theirs = {name: f"another program's {name}\n" for name in ("config.json", "train.log", "metrics.csv")}
    for name, text in theirs.items():
        (tmp_path / name).write_text(text)
    assert _pretrain("", "--overwrite") == 2
    _one_line(capsys.readouterr().err, "error: --out must not be empty")

    other = tmp_path / "other"
    other.mkdir()
    for name, text in theirs.items():
        (other / name).write_text(text)
    (other / "notes.txt").write_text("mine")
    for extra in (["--overwrite"], [], ["--resume"]):
        assert _pretrain(other, *extra) == 2, extra
        err = capsys.readouterr().err
        _one_line(err, f"error: out={str(other)!r} holds config.json, metrics.csv, train.log, but not a run of "
                       "training.pretrain")
        assert "nothing was deleted" in err
    for folder in (tmp_path, other):
        assert {n: (folder / n).read_text() for n in theirs} == theirs
    assert sorted(p.name for p in other.iterdir()) == ["config.json", "metrics.csv", "notes.txt", "train.log"]


def test_overwrite_still_replaces_a_run_of_ours(finished, tmp_path):
    run = _copy(finished, tmp_path / "run")
    (run / "linear_eval.json").write_text("{}")
    assert _pretrain(run, "--overwrite", "--seed", "1") == 0
    assert not (run / "linear_eval.json").exists() and '"seed": 1' in (run / "config.json").read_text()


# ------------------------------------------------------------------------------------- what a run reads


def test_a_checkpoint_of_another_run_or_architecture_is_named(finished, tmp_path, capsys):
    other = tmp_path / "wide"
    assert _pretrain(other, "--hidden-dim", "32") == 0
    capsys.readouterr()
    run = _copy(finished, tmp_path / "run")
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        shutil.copy(other / name, run / name)
    assert linear_eval.main(["--run", str(run), *PROBE]) == 2
    err = capsys.readouterr().err
    _one_line(err, f"error: checkpoint {run / 'checkpoint.pt'} was written by a run with other settings than its "
                   "config.json (hidden_dim: 32 -> 16)")

    # a state that does not fit the network although its settings say it does (copied weights)
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    ckpt["config"] = torch.load(finished / "checkpoint.pt", map_location="cpu", weights_only=True)["config"]
    torch.save(ckpt, run / "checkpoint.pt")
    assert linear_eval.main(["--run", str(run), *PROBE]) == 2
    err = capsys.readouterr().err
    _one_line(err, f"error: checkpoint {run / 'checkpoint.pt'} does not fit the network of the run's settings (6 of "
                   "another shape (e.g. head.0.weight)")


@pytest.mark.parametrize("key, value", [("epochs", "two"), ("base_lr", True), ("seed", 1.5), ("loss", 3)])
def test_a_config_value_of_the_wrong_type_is_named(finished, tmp_path, capsys, key, value):
    """A hand-edited config.json with a value of the wrong type: the probe and the resume name it, instead of
    reading "two" epochs as a run not finished or as one finished long ago."""
    run = _copy(finished, tmp_path / "run")
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**saved, key: value}))
    assert linear_eval.main(["--run", str(run), *PROBE]) == 2
    _one_line(capsys.readouterr().err, f"error: --run {str(run)!r}: config.json has {key}={value!r}, which is not a")
    assert _pretrain(run, "--resume") == 2
    assert f"config.json has {key}={value!r}" in capsys.readouterr().err


def test_labeled_indices_out_of_range_are_named(finished, tmp_path, capsys):
    run = _copy(finished, tmp_path / "run")
    for bad, what in ((np.array([0, 5, 100000]), "indices outside 0..1437 (e.g. 100000)"),
                      (np.array([3, 3]), "repeated indices"), (np.array([0.5]), "is not a list of image indices")):
        np.save(run / "labeled_indices.npy", bad)
        assert linear_eval.main(["--run", str(run), *PROBE]) == 2
        err = capsys.readouterr().err
        _one_line(err, f"error: --run {str(run)!r}: labeled_indices.npy")
        assert what in err and "--all-labels" in err


@pytest.mark.parametrize("name, key", [("metrics.csv", "epoch"), ("geometry.csv", "step")])
def test_a_garbage_log_is_named_on_resume(finished, tmp_path, capsys, name, key):
    run = _partial(finished, tmp_path / "run")
    for garbage, what in (("hello,world\n1,2\n", f"has no {key!r} column"), (f"{key},x\nabc,1\n", "line 2")):
        (run / name).write_text(garbage)
        before = snapshot(run)
        assert _pretrain(run, "--resume") == 2
        err = capsys.readouterr().err
        _one_line(err, f"error: {run / name}")
        assert what in err and "--overwrite" in err
        assert snapshot(run) == before


@pytest.mark.parametrize("name", ["metrics.csv", "geometry.csv"])
def test_resume_without_its_history_is_refused_naming_the_file(finished, tmp_path, capsys, name):
    run = _partial(finished, tmp_path / "run")
    (run / name).unlink()
    before = snapshot(run)
    assert _pretrain(run, "--resume") == 2
    err = capsys.readouterr().err
    _one_line(err, f"error: resume: {run / name} is missing")
    assert "cannot be rebuilt" in err and snapshot(run) == before

    # rows lost from the file: the same
    if name == "metrics.csv":
        (run / name).write_text((finished / name).read_text().splitlines()[0] + "\n")
        assert _pretrain(run, "--resume") == 2
        assert "lacks the rows of epochs 1" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- killed runs' leftovers


def test_stale_temporaries_are_removed_at_the_next_run_and_probe(finished, tmp_path):
    run = _copy(finished, tmp_path / "run")
    stale = [".metrics.abcd1234.tmp.csv", ".checkpoint.k2j3h4g5.tmp.pt", ".linear_eval.x1y2z3w4.tmp.json",
             ".checkpoint.prev.pt.0123456789abcdef0123456789abcdef.tmp"]
    kept = [".notes.txt", ".metrics.too-long-name.tmp.csv", ".other.abcd1234.tmp.csv"]
    for name in stale + kept:
        (run / name).write_text("left by a killed run")
    assert _pretrain(run, "--resume") == 0  # finished: nothing to do, but the folder is tidied under its lock
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == sorted(kept)
    for name in stale:
        (run / name).write_text("left by a killed probe")
    assert linear_eval.main(["--run", str(run), *PROBE, "--results", str(tmp_path / "results.csv")]) == 0
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == sorted(kept)


def test_plots_and_practice_tidy_their_output_folders(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".figure6.abcd1234.tmp.csv").write_text("stale")
    (out / ".practice.abcd1234.tmp.md").write_text("stale")
    (out / ".mine.abcd1234.tmp.md").write_text("keep")
    results = tmp_path / "results.csv"
    results.write_text("dataset,loss,label_fraction,clop_lambda,prototypes,similarity,augmentation,batch_size,base_lr,"
                       "seed,top1,top5\ncifar100,infonce,0.1,0,orthonormal,cosine,simclr,256,0.3,0,0.5,0.8\n")
    assert plots.main(["--results", str(results), "--out", str(out)]) == 0
    assert not (out / ".figure6.abcd1234.tmp.csv").exists() and (out / ".practice.abcd1234.tmp.md").exists()
    grid = Grid(lrs=(0.3,), optimizers=("lars",), batches=(256,), reference_variants=("infonce10",),
                variants=("infonce10",))
    assert practice.main(["--report-only", "--runs", str(tmp_path / "runs"), "--out", str(out), "--only", "lr"],
                         grid=grid) == 2  # nothing to report, but its stale files are gone
    assert not (out / ".practice.abcd1234.tmp.md").exists() and (out / ".mine.abcd1234.tmp.md").exists()
    assert not (out / ".output.lock").exists()
    capsys.readouterr()


# ---------------------------------------------------------------------------------- checks before --out


@pytest.mark.parametrize("flags, message", [
    (["--momentum", "1.5"], "momentum must be a real number in [0, 1); got 1.5"),
    (["--seed", "-1"], "seed must be an integer >= 0; got -1"),
    (["--seed", str(2**63)], "seed must be an integer in [0, 2**63); got 9223372036854775808"),  # torch's limit
    (["--base-lr", "1e300"], "exceeds float32's largest value"),  # would overflow in the optimiser's first step
    (["--prototypes", "etf", "--projection-dim", "8"], "--prototypes etf needs projection_dim >= 9"),
    (["--batch-size", "5000"], "batch_size=5000 exceeds the 1438 training images of digits"),
    (["--dataset", "cifar100", "--data-root", "missing", "--projection-dim", "128"],
     "cifar100: CIFAR-100 (python version) not found"),
    (["--image-size", "100000"], "this run (--arch small, --image-size 100000"),
])
def test_a_refused_start_creates_no_folder(tmp_path, monkeypatch, capsys, flags, message):
    monkeypatch.chdir(tmp_path)
    assert _pretrain(tmp_path / "new" / "x", *flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flags, message", [
    (["--lr", "1e300"], "lr must be below float32's largest value"),
    (["--seed", str(2**64)], "seed must be an integer in [0, 2**63)"),
])
def test_a_refused_probe_reads_no_run(tmp_path, capsys, flags, message):
    assert linear_eval.main(["--run", str(tmp_path / "no-run"), *PROBE, *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_plots_and_practice_report_only_create_no_folder_when_refused(tmp_path, capsys):
    assert plots.main(["--results", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "new" / "figs")]) == 2
    assert "missing.csv" in capsys.readouterr().err
    grid = Grid(lrs=(0.3,), optimizers=("lars",), batches=(256,), reference_variants=("infonce10",),
                variants=("infonce10",))
    assert practice.main(["--report-only", "--runs", str(tmp_path / "new" / "runs"), "--out",
                          str(tmp_path / "new" / "report")], grid=grid) == 2
    assert "no practice_runs.csv to redraw from" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- train.log


def test_train_log_is_never_appended_through_a_symbolic_link(finished, tmp_path, capsys):
    outside = tmp_path / "outside.txt"
    outside.write_text("")
    for run in (_copy(finished, tmp_path / "finished"), _partial(finished, tmp_path / "partial")):
        (run / "train.log").unlink()
        (run / "train.log").symlink_to(outside)
        assert _pretrain(run, "--resume") == 2
        _one_line(capsys.readouterr().err, f"error: out={str(run)!r}: train.log is a symbolic link")
    assert outside.read_text() == ""

    link = tmp_path / "link.log"
    link.symlink_to(outside)
    with pytest.raises(ValueError, match="is a symbolic link"):
        RunLogHandler(link)
    assert outside.read_text() == "" and os.path.islink(link)
