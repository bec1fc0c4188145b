"""Nothing lost, nothing silently wrong in the training package.

* ``--overwrite`` checks settings and data before it deletes anything: a failed start leaves the old run
  byte for byte as it was.
* A run directory is locked by the process that owns it: a live owner refuses a second run, a dead one's
  lock is taken over, and of several simultaneous starts exactly one gets the lock.
* ``checkpoint.prev.pt`` keeps the previous checkpoint: a truncated / empty ``checkpoint.pt`` is named,
  ``--resume`` falls back to the previous one and ends with the uninterrupted numbers (bit-exact, CPU,
  one process, one thread count), and linear_eval names the file and refuses unless the previous one holds
  the finished run.
* linear_eval checks ``--results`` before training the probe, refuses a CSV with other columns, prints the
  result first and saves it to RUN/linear_eval.json before appending, and appends without touching the
  existing lines.
* Corrupt CIFAR files, bad ``--out`` / ``--device`` / ``--root`` values: one-line errors, before any compute.
* training.plots: an interrupted run leaves the previous outputs byte-identical.

Smoke runs: ResNet-18, 8 px, batch 16, 2 epochs of 1 step on generated data. Budget: about 40 s.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from clop.util.lock import FolderLock, FolderLockedError, owner_alive, start_ticks
from training import linear_eval, plots, pretrain, sweep
from training.data.catalog import DatasetCorruptError
from training.data.cifar import write_synthetic_cifar
from training.data.datasets import load_dataset
from training.eval import (
    linear as probe_module,  # where linear_eval looks up what the tests replace
)
from training.eval.probe import fit_linear_probe
from training.eval.results import RESULT_COLUMNS, append_result
from training.sweeps import (
    report as report_module,  # where make_all looks up what the tests replace
)
from training.sweeps.figures import plot_sweep
from training.sweeps.report import make_all

pytestmark = pytest.mark.usefixtures("one_thread")

ARGS = ("--smoke", "--arch", "resnet18", "--image-size", "8", "--epochs", "2", "--steps-per-epoch", "1",
        "--warmup-epochs", "0", "--eval-batch", "16", "--hidden-dim", "32", "--projection-dim", "16",
        "--device", "cpu", "--no-progress")
TIME_COLUMNS = ["images_per_s", "epoch_seconds"]
PROBE = ("--no-progress", "--workers", "0", "--device", "cpu", "--epochs", "2")


def _pretrain(out: Path, data: Path, *extra: str) -> int:
    return pretrain.main([*ARGS, "--out", str(out), "--data-root", str(data), *extra])


def _snapshot(folder: Path) -> dict[str, str]:
    """Every entry of ``folder`` (hidden ones too) -> sha1 of its bytes."""
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _copy_run(src: Path, dst: Path) -> Path:
    """A copy of a run; the large checkpoints are hard links (the code under test never writes a file in
    place, and the tests below replace a file by unlinking it first)."""
    shutil.copytree(src, dst, copy_function=lambda s, d: os.link(s, d) if s.endswith(".pt") else shutil.copy2(s, d))
    return dst


def _replace(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


@pytest.fixture(scope="module")
def data(synthetic_data) -> Path:
    return synthetic_data


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data) -> Path:
    run = tmp_path_factory.mktemp("runs") / "finished"
    assert _pretrain(run, data) == 0
    return run


def test_checkpoints_keep_the_previous_one_and_the_lock_is_gone(finished):
    names = {p.name for p in finished.iterdir()}
    assert names == {"config.json", "labeled_indices.npy", "metrics.csv", "checkpoint.pt", "checkpoint.prev.pt",
                     "train.log", "geometry.csv"}, "no lock, no temporary file left behind"
    epochs = [torch.load(finished / n, map_location="cpu", weights_only=False)["epoch"]
              for n in ("checkpoint.prev.pt", "checkpoint.pt")]
    assert epochs == [1, 2]


# ------------------------------------------------------------------------------------------ --overwrite


def test_overwrite_with_missing_data_or_a_bad_batch_leaves_the_old_run_byte_identical(finished, data, tmp_path,
                                                                                       capsys):
    before = _snapshot(finished)
    missing = tmp_path / "missing"
    assert _pretrain(finished, missing, "--overwrite", "--dataset", "cifar100", "--projection-dim", "128") == 2
    assert str(missing / "cifar-100-python" / "train") in capsys.readouterr().err
    assert _pretrain(finished, data, "--overwrite", "--batch-size", "100000") == 2
    err = capsys.readouterr().err
    assert "batch_size=100000 exceeds the 500 training images" in err and "Traceback" not in err
    assert _snapshot(finished) == before


# ---------------------------------------------------------------------------------------------- lock


def test_a_live_lock_refuses_a_second_run_and_nothing_changes(finished, data, capsys):
    before = _snapshot(finished)
    with FolderLock.acquire(finished, "the first run") as lock:
        for extra in (("--resume",), ("--overwrite",)):
            assert _pretrain(finished, data, *extra) == 2
            err = capsys.readouterr().err
            assert f"--out {str(finished)!r} is in use by the first run (pid {os.getpid()}" in err
            assert str(finished / "run.lock") in err
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not (finished / "run.lock").exists(), "released on leaving the block"
    assert _snapshot(finished) == before


def _lock_of(pid: int) -> dict:
    return {"pid": pid, "host": socket.gethostname(), "start": start_ticks(pid), "program": "a killed run"}


def test_a_lock_of_another_live_process_refuses_and_its_stale_lock_is_taken_over(finished, data, capsys):
    holder = subprocess.Popen(["sleep", "60"])
    try:
        (finished / "run.lock").write_text(json.dumps(_lock_of(holder.pid)))
        assert _pretrain(finished, data, "--resume") == 2
        assert f"in use by a killed run (pid {holder.pid}" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    # the owner is dead now: the lock is stale, and the next run takes it over (and removes it at its end)
    assert _pretrain(finished, data, "--resume") == 0
    err = capsys.readouterr().err
    assert f"took over the lock {finished / 'run.lock'} of a killed run (pid {holder.pid}" in err
    assert "already finished" in err
    assert not (finished / "run.lock").exists()


def test_a_lock_from_another_host_is_refused_naming_the_file(tmp_path):
    (tmp_path / "run.lock").write_text(json.dumps({"pid": 1, "host": "elsewhere.invalid", "program": "p"}))
    with pytest.raises(FolderLockedError, match="cannot tell whether that process still runs") as info:
        FolderLock.acquire(tmp_path, "test")
    assert str(tmp_path / "run.lock") in str(info.value)


def test_an_empty_lock_file_left_by_a_crash_is_taken_over(tmp_path, capsys):
    (tmp_path / "run.lock").write_bytes(b"")  # its writer died between creating and writing it
    with FolderLock.acquire(tmp_path, "test") as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert "took over the lock" in capsys.readouterr().err and not (tmp_path / "run.lock").exists()


def test_a_reused_process_id_does_not_keep_a_lock_alive(tmp_path):
    if start_ticks(os.getpid()) is None:
        pytest.skip("no /proc: process start times are unknown")
    info = _lock_of(os.getpid())
    assert owner_alive(info) is True
    info["start"] += 1  # the same pid, started at another time: another process
    assert owner_alive(info) is False


@pytest.mark.parametrize("stale", [False, True])
def test_of_simultaneous_starts_exactly_one_gets_the_lock(tmp_path, stale):
    dead = subprocess.Popen(["true"])
    dead.wait()
    for round_ in range(10):
        folder = tmp_path / f"r{round_}"
        folder.mkdir()
        if stale:
            (folder / "run.lock").write_text(json.dumps(_lock_of(dead.pid)))
        start, won, refused = threading.Barrier(6), [], []

        def contender() -> None:
            start.wait()
            try:
                won.append(FolderLock.acquire(folder, "contender"))
            except FolderLockedError:
                refused.append(1)

        threads = [threading.Thread(target=contender) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert (len(won), len(refused)) == (1, 5), round_
        assert json.loads((folder / "run.lock").read_text())["token"] == won[0].info["token"]
        won[0].release()
        assert not (folder / "run.lock").exists()


# ----------------------------------------------------------------------------------------- checkpoints


def _assert_same_run(a: Path, b: Path) -> None:
    ca = torch.load(a / "checkpoint.pt", map_location="cpu", weights_only=False)
    cb = torch.load(b / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert (ca["epoch"], ca["step_in_epoch"]) == (cb["epoch"], cb["step_in_epoch"]) == (2, 0)
    for name, value in ca["model"].items():
        assert torch.equal(value, cb["model"][name]), name
    for sa, sb in zip(ca["optimizer"]["state"].values(), cb["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    ma = pd.read_csv(a / "metrics.csv").drop(columns=TIME_COLUMNS)
    mb = pd.read_csv(b / "metrics.csv").drop(columns=TIME_COLUMNS)
    pd.testing.assert_frame_equal(ma, mb, check_exact=True)


def test_truncated_checkpoint_is_named_and_resume_falls_back_to_the_previous_one(finished, data, tmp_path, capsys):
    run = _copy_run(finished, tmp_path / "truncated")
    whole = (run / "checkpoint.pt").read_bytes()
    _replace(run / "checkpoint.pt", whole[: len(whole) // 2])
    assert _pretrain(run, data, "--resume") == 0
    err = capsys.readouterr().err
    assert f"checkpoint {run / 'checkpoint.pt'} cannot be loaded: it is truncated or damaged" in err
    assert f"resuming from the previous checkpoint {run / 'checkpoint.prev.pt'} (epoch 1, step 0)" in err
    assert "resumed at epoch 2, step 0" in err
    _assert_same_run(run, finished)
    prev = torch.load(run / "checkpoint.prev.pt", map_location="cpu", weights_only=False)
    assert prev["epoch"] == 1, "the good previous checkpoint is kept, not replaced by the damaged one"


def test_empty_checkpoint_without_a_previous_one_is_refused_naming_both(finished, data, tmp_path, capsys):
    run = _copy_run(finished, tmp_path / "empty")
    _replace(run / "checkpoint.pt", b"")
    (run / "checkpoint.prev.pt").unlink()
    before = _snapshot(run)
    assert _pretrain(run, data, "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: checkpoint {run / 'checkpoint.pt'} cannot be loaded: it is empty (0 bytes), and there "
                   "is no checkpoint.prev.pt to fall back on; pass --overwrite to start the run again")
    assert _snapshot(run) == before


def test_linear_eval_names_a_bad_checkpoint_and_uses_the_previous_only_when_allowed(finished, tmp_path, capsys,
                                                                                     monkeypatch):
    run = _copy_run(finished, tmp_path / "bad")
    _replace(run / "checkpoint.pt", b"not a checkpoint\n")
    results = tmp_path / "results.csv"
    monkeypatch.setattr(probe_module, "fit_linear_probe", lambda *a, **k: pytest.fail("the probe must not train"))
    assert linear_eval.main(["--run", str(run), "--results", str(results), *PROBE]) == 2
    err = capsys.readouterr().err
    assert (f"checkpoint {run / 'checkpoint.pt'} cannot be loaded: it is not a torch checkpoint (not a zip archive) "
            "(17 bytes); the previous checkpoint") in err
    assert "holds epoch 1, step 0, not the finished run" in err and "--resume" in err
    assert not results.exists() and not (run / "linear_eval.json").exists()

    monkeypatch.setattr(probe_module, "fit_linear_probe", fit_linear_probe)  # --allow-partial: the previous epoch is probed
    assert linear_eval.main(["--run", str(run), "--results", str(results), "--allow-partial", *PROBE]) == 0
    out, err = capsys.readouterr()
    assert "using the previous checkpoint" in err and out.startswith("top-1 ")
    assert pd.read_csv(results)["trained_epochs"].tolist() == [1]


# ----------------------------------------------------------------------------------------- linear_eval


@pytest.mark.parametrize("where", ["under a file", "a folder", "a foreign CSV"])
def test_linear_eval_checks_results_before_training(finished, tmp_path, capsys, monkeypatch, where):
    monkeypatch.setattr(probe_module, "fit_linear_probe", lambda *a, **k: pytest.fail("the probe must not train"))
    monkeypatch.setattr(probe_module, "load_run", lambda *a, **k: pytest.fail("the network must not be loaded"))
    (tmp_path / "file").write_text("x")
    foreign = tmp_path / "other.csv"
    foreign.write_text("id,count,label\n1,20,a\n2,30,b\n")
    results = {"under a file": tmp_path / "file" / "results.csv", "a folder": tmp_path,
               "a foreign CSV": foreign}[where]
    assert linear_eval.main(["--run", str(finished), "--results", str(results), *PROBE]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --results {str(results)!r}") and err.count("\n") == 1
    if where == "a foreign CSV":
        assert "unexpected: ['id', 'count', 'label']; missing: ['run', 'dataset'" in err
        assert foreign.read_text() == "id,count,label\n1,20,a\n2,30,b\n", "the foreign CSV is left as it was"
    assert not (finished / "linear_eval.json").exists()


def test_linear_eval_prints_first_saves_the_json_then_appends_keeping_the_old_lines(finished, tmp_path, capsys,
                                                                                      monkeypatch):
    run = _copy_run(finished, tmp_path / "probed")
    results = tmp_path / "results.csv"

    def no_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(probe_module, "append_result", no_disk)
    assert linear_eval.main(["--run", str(run), "--results", str(results), *PROBE]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("top-1 ") and "top-5 " in out
    saved = json.loads((run / "linear_eval.json").read_text())
    assert f"top-1 {saved['top1']:.4f}  top-5 {saved['top5']:.4f}" in out
    assert err.startswith(f"error: the result is saved in {run / 'linear_eval.json'} but could not be appended")
    assert not results.exists()
    monkeypatch.undo()

    append_result(results, saved)
    first = results.read_bytes()
    saved2 = {**saved, "probe_seed": 7, "top1": 0.25}
    append_result(results, saved2)
    assert results.read_bytes().startswith(first), "the existing lines stay byte for byte"
    table = pd.read_csv(results)
    assert list(table.columns) == list(RESULT_COLUMNS)
    assert table["probe_seed"].tolist() == [0, 7] and table["batch_size"].dtype.kind == "i"
    assert table["top1"].tolist() == [saved["top1"], 0.25]


# ------------------------------------------------------------------------------- data and bad settings


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_corrupt_cifar_files_get_a_message_naming_the_file(tmp_path, damage, capsys):
    folder = write_synthetic_cifar(tmp_path / "data", num_classes=2, train_per_class=2, test_per_class=1)
    train = folder / "train"
    whole = train.read_bytes()
    train.write_bytes({"truncated": whole[: len(whole) // 2], "empty": b"", "garbage": b"\x00\x01junk"}[damage])
    with pytest.raises(DatasetCorruptError) as info:
        load_dataset("cifar100", tmp_path / "data", "train")
    message = str(info.value)
    assert message.startswith(f"{train} is not a readable CIFAR-100 file: it is ")
    assert "--download" in message and str(folder) in message
    assert isinstance(info.value, ValueError)
    out = tmp_path / "run"
    assert pretrain.main(["--dataset", "cifar100", "--data-root", str(tmp_path / "data"), "--out", str(out),
                          "--device", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {train} is not a readable CIFAR-100 file") and err.count("\n") == 1
    assert not out.exists(), "nothing written: --out is not even created before the data are read"


def test_bad_out_and_device_are_one_line_errors_before_any_compute(tmp_path, data, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep")
    cases = [(["--out", str(a_file)], f"error: --out {str(a_file)!r} is a file; expected a folder"),
             (["--out", str(a_file / "sub")], f"error: --out {str(a_file / 'sub')!r} cannot be written"),
             (["--out", str(tmp_path / "r"), "--device", "nonsense"], "error: device='nonsense' is not a torch device"),
             (["--out", str(tmp_path / "r"), "--device", "meta"], "error: device='meta' is not supported")]
    if not torch.cuda.is_available():
        cases.append((["--out", str(tmp_path / "r"), "--device", "cuda"], "error: device='cuda' asks for CUDA"))
    for flags, message in cases:
        rc = pretrain.main(["--smoke", "--arch", "resnet18", "--data-root", str(data), "--no-progress", *flags])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith(message) and err.count("\n") == 1, (flags, err)
    assert a_file.read_text() == "keep" and not (tmp_path / "r").exists()

    assert linear_eval.main(["--run", str(tmp_path), "--device", "nonsense"]) == 2
    assert capsys.readouterr().err.startswith("error: device='nonsense' is not a torch device")
    assert plots.main(["--results", str(a_file), "--out", str(a_file)]) == 2
    assert capsys.readouterr().err == f"error: --out {str(a_file)!r} is a file; expected a folder (it is created if missing)\n"
    assert sweep.main(["batch-size", "--root", str(a_file), "--values", "32", "--variants", "supcon100",
                       "--no-progress"]) == 2
    assert f"error: --root {str(a_file)!r} is a file" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- plots


def _results_rows(top1: float) -> pd.DataFrame:
    rows = []
    for batch in (256, 1024):
        for lam in (0.0, 1.0):
            rows.append({"dataset": "cifar100", "loss": "supcon", "label_fraction": 1.0, "clop_lambda": lam,
                         "prototypes": "orthonormal", "similarity": "cosine", "augmentation": "simclr",
                         "batch_size": batch, "base_lr": 0.3, "seed": 0, "top1": top1, "top5": top1 + 0.1})
    return pd.DataFrame(rows)


def test_plots_interrupted_run_leaves_the_previous_outputs_byte_identical(tmp_path, monkeypatch):
    out = tmp_path / "figures"
    first = tmp_path / "first.csv"
    _results_rows(0.5).to_csv(first, index=False)
    drawn = []
    monkeypatch.setattr(report_module, "plot_sweep", lambda data, *a, **k: drawn.append(type(data)) or plot_sweep(data, *a, **k))
    make_all([first], out)
    assert drawn and set(drawn) == {pd.DataFrame}, "the figures are drawn from the data in memory"
    before = _snapshot(out)
    assert {"figure6.csv", "figure6.png", "figure8.png", "table1.csv", "table1.md", "figures.md"} <= set(before)

    second = tmp_path / "second.csv"
    _results_rows(0.7).to_csv(second, index=False)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report_module, "table_markdown", interrupted)  # after the figures, before the tables
    with pytest.raises(KeyboardInterrupt):
        make_all([second], out)
    assert _snapshot(out) == before, "the previous complete set, and no temporary file"
    monkeypatch.undo()
    make_all([second], out)
    assert pd.read_csv(out / "figure6.csv")["top1_mean"].tolist() == pytest.approx([0.7] * 4)
    assert np.all(pd.read_csv(out / "table1.csv")["top1_mean"].dropna() == 0.7)
