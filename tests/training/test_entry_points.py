"""Every training entry point answers a careless command with one line, never a traceback, and changes nothing.

* An empty path (an unset shell variable) is refused for every path flag: ``--out``, ``--run``, ``--results``,
  ``--data-root``, ``--root``, ``--runs``; nothing is written in the current folder.
* One device check everywhere: ``meta`` and ``mps`` are refused (cpu, cuda, cuda:N that exists).
* ``--download`` without network, ``--dataset synthetic --data-root FILE``, a CIFAR-100 folder holding another
  class count, ``bench_train_step.py --rounds -1`` / ``--batch 0`` / a size that cannot fit, ``linear_eval
  --seed -1``: exit 2 with one line.
* A full disk or a file-size limit while writing: one line naming the file, exit 1, the files in place intact.
* Ctrl-C: one line and exit 130; for pre-training, that the last checkpoint is kept and ``--resume`` continues.
* ``--no-sync-bn``'s help says what the default is, not "(default: True)".
"""

from __future__ import annotations

import errno
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO
from training import linear_eval, plots, pretrain, sweep
from training.config import pretrain_parser
from training.data.catalog import DatasetNotFoundError
from training.data.cifar import write_synthetic_cifar
from training.data.datasets import load_dataset
from training.engine.steps import forward_loss
from training.practice import cli as practice

pytestmark = pytest.mark.usefixtures("one_thread")

PT = ["--dataset", "digits", "--arch", "small", "--batch-size", "128", "--epochs", "2", "--warmup-epochs", "0",
      "--steps-per-epoch", "1", "--hidden-dim", "16", "--projection-dim", "16", "--eval-batch", "16",
      "--geometry-images", "0", "--device", "cpu", "--no-progress"]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _benchmark(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _exit_code(fn, argv) -> int:
    """``fn(argv)``'s return value, or the code of the SystemExit it raised (argparse's errors)."""
    try:
        return fn(argv)
    except SystemExit as exc:
        return exc.code


def _one_line(err: str, needle: str) -> None:
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("usage:")
             and not line.startswith("  ")]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err


# ---------------------------------------------------------------------------------------------- empty paths


EMPTY_PATHS = [
    ("pretrain --out", pretrain.main, [*PT, "--out", ""], "--out must not be empty"),
    ("pretrain --data-root", pretrain.main, [*PT, "--data-root", "", "--out", "x"], "--data-root must not be empty"),
    ("linear_eval --run", linear_eval.main, ["--run", ""], "--run must not be empty"),
    ("linear_eval --results", linear_eval.main, ["--run", "r", "--results", ""], "--results must not be empty"),
    ("linear_eval --data-root", linear_eval.main, ["--run", "r", "--data-root", ""], "--data-root must not be empty"),
    ("sweep --root", sweep.main, ["lr", "--root", ""], "--root must not be empty"),
    ("sweep --data-root", sweep.main, ["lr", "--data-root", ""], "--data-root must not be empty"),
    ("plots --out", plots.main, ["--results", "r.csv", "--out", ""], "--out must not be empty"),
    ("plots --results", plots.main, ["--results", "", "--out", "figs"], "--results must not be empty"),
    ("practice --out", practice.main, ["--out", ""], "--out must not be empty"),
    ("practice --runs", practice.main, ["--runs", "", "--report-only"], "--runs must not be empty"),
    ("practice --data-root", practice.main, ["--data-root", "", "--report-only"], "--data-root must not be empty"),
]


@pytest.mark.parametrize("name, fn, argv, needle", EMPTY_PATHS, ids=[c[0] for c in EMPTY_PATHS])
def test_an_empty_path_is_refused_and_nothing_is_written(tmp_path, monkeypatch, capsys, name, fn, argv, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.csv").write_text("dataset,top1\n")
    assert _exit_code(fn, argv) == 2
    _one_line(capsys.readouterr().err, needle)
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]


def test_bench_loader_refuses_an_empty_data_root(capsys):
    assert _exit_code(_benchmark("bench_loader").main, ["--data-root", ""]) == 2
    _one_line(capsys.readouterr().err, "--data-root must not be empty")


# ---------------------------------------------------------------------------------------------- devices


@pytest.mark.parametrize("device", ["meta", "mps"])
def test_one_device_check_everywhere(tmp_path, monkeypatch, capsys, device):
    monkeypatch.chdir(tmp_path)
    calls = [
        (pretrain.main, [*PT, "--device", device, "--out", "x"]),
        (linear_eval.main, ["--run", "x", "--device", device]),
        (sweep.main, ["lr", "--dataset", "digits", "--root", "x", "--", "--device", device]),
        (practice.main, ["--device", device, "--out", "x", "--runs", "y"]),
        (_benchmark("bench_loader").main, ["--device", device]),
        (_benchmark("bench_train_step").main, ["--device", device]),
    ]
    for fn, argv in calls:
        assert _exit_code(fn, argv) == 2, argv
        _one_line(capsys.readouterr().err, f"device={device!r} is not supported; expected 'cpu', 'cuda' or 'cuda:N'")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- datasets


@pytest.fixture()
def offline(monkeypatch):
    """No network: every connection fails as it does on a machine without one."""

    def unreachable(*args, **kwargs):
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    monkeypatch.setattr(socket.socket, "connect", unreachable)
    monkeypatch.setattr(socket, "create_connection", unreachable)


def test_download_without_network_is_one_line(tmp_path, offline, capsys):
    with pytest.raises(DatasetNotFoundError, match=r"cifar100: --download of https://www\.cs\.toronto\.edu/.* failed"):
        load_dataset("cifar100", tmp_path / "data", "train", download=True)
    with pytest.raises(DatasetNotFoundError, match=r"tiny-imagenet: --download of http://cs231n.* failed .*reachable"):
        load_dataset("tiny-imagenet", tmp_path / "tiny", "train", download=True)
    out = tmp_path / "out"
    assert pretrain.main([*PT, "--dataset", "cifar100", "--projection-dim", "128", "--data-root",
                          str(tmp_path / "data"), "--download", "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, "--download of https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz into")
    assert not out.exists()


def test_synthetic_data_root_that_is_a_file_is_one_line(tmp_path, capsys):
    a_file = tmp_path / "FILE"
    a_file.write_text("keep")
    assert pretrain.main([*PT, "--dataset", "synthetic", "--data-root", str(a_file), "--out", str(tmp_path / "x")]) == 2
    _one_line(capsys.readouterr().err, f"synthetic: the data folder {str(a_file)!r} is a file")
    assert a_file.read_text() == "keep" and not (tmp_path / "x").exists()


def test_a_cifar100_folder_with_another_class_count_is_refused(tmp_path, capsys):
    write_synthetic_cifar(tmp_path / "data")  # ten classes in the CIFAR-100 layout
    out = tmp_path / "x"
    assert pretrain.main(["--dataset", "cifar100", "--data-root", str(tmp_path / "data"), "--arch", "small",
                          "--image-size", "8", "--batch-size", "128", "--epochs", "1", "--warmup-epochs", "0",
                          "--device", "cpu", "--no-progress", "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, "cifar100: the data read from")
    assert not out.exists()


# --------------------------------------------------------------------------------------- bad values


@pytest.mark.parametrize("argv, needle", [
    (["--rounds", "-1"], "--rounds must be an integer >= 1; got -1"),
    (["--batch", "0"], "--batch must be an integer >= 2; got 0"),
    (["--image-size", "100000"], "this run (--arch resnet50, --image-size 100000, --batch 16) needs about"),
])
def test_bench_train_step_refuses_bad_values_before_allocating(capsys, argv, needle):
    assert _exit_code(_benchmark("bench_train_step").main, ["--device", "cpu", *argv]) == 2
    _one_line(capsys.readouterr().err, needle)


def test_linear_eval_refuses_a_negative_seed_as_pretrain_does(tmp_path, capsys):
    assert linear_eval.main(["--run", str(tmp_path), "--seed", "-1"]) == 2
    _one_line(capsys.readouterr().err, "seed must be an integer >= 0; got -1")
    assert pretrain.main([*PT, "--seed", "-1", "--out", str(tmp_path / "x")]) == 2
    _one_line(capsys.readouterr().err, "seed must be an integer >= 0; got -1")


def test_no_sync_bn_help_says_what_the_default_is():
    text = " ".join(pretrain_parser().format_help().split())
    help_text = text[text.rindex("--no-sync-bn"):].split(" --geometry-images")[0]
    assert "(default: True)" not in help_text and "default: over the global batch" in help_text


# ----------------------------------------------------------------------------------------- interrupts


def test_ctrl_c_in_pretrain_is_one_line_and_the_run_resumes(tmp_path, capsys):
    calls = []

    def interrupted_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return forward_loss(*args, **kwargs)

    run = tmp_path / "run"
    assert pretrain.cli([*PT, "--out", str(run)], step=interrupted_in_epoch_2) == 130
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == pretrain.INTERRUPTED and "Traceback" not in err
    assert (run / "checkpoint.pt").is_file() and not (run / "run.lock").exists()
    assert pretrain.main([*PT, "--out", str(run), "--resume"]) == 0
    assert "resumed at epoch 2, step 0" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["training/linear_eval.py", "training/sweep.py", "training/plots.py",
                                    "training/practice/__main__.py", "training/pretrain.py",
                                    "benchmarks/bench_train_step.py", "benchmarks/bench_loader.py"])
def test_every_entry_point_runs_through_run_main(module):
    """The command line of each entry point is wrapped by clop.util.cli.run_main (Ctrl-C: one line, exit 130; a
    failed write: one line, exit 1); pretrain's and practice's through their ``cli``, which do so."""
    source = (REPO / module).read_text()
    main_block = source[source.rindex("raise SystemExit("):]
    assert "run_main(" in main_block or "cli()" in main_block, module
    if "cli()" in main_block:
        owner = pretrain if "pretrain" in module else practice
        assert "run_main(" in Path(owner.__file__).read_text().split("def cli(")[1]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_sigint_to_a_pretraining_prints_one_line_and_exits_130(tmp_path):
    """Ctrl-C during training: one line, exit 130, the last checkpoint kept. The run has far more epochs than it
    can finish before the signal. The child starts with SIGINT at its default, as under a terminal: a test run
    launched in the background of a non-interactive shell (``nohup ... &``) inherits SIGINT ignored, Python then
    keeps it ignored, and the signal would never arrive."""
    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "training.pretrain", *PT, "--epochs", "100000", "--out", str(run)],
                         cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=_default_sigint)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (run / "checkpoint.pt").exists():
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    try:
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130 and err.splitlines()[-1] == pretrain.INTERRUPTED and "Traceback" not in err, err
    assert (run / "checkpoint.pt").exists()


# ------------------------------------------------------------------------------------- full disk, limits


def _limited(limit: int):
    def preexec() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


@pytest.mark.slow
def test_a_file_size_limit_is_one_line_and_exit_1(tmp_path):
    p = subprocess.run([sys.executable, "-m", "training.pretrain", *PT, "--hidden-dim", "512", "--out", "x"],
                       cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300, preexec_fn=_limited(100_000))
    assert p.returncode == 1, p.stderr
    assert p.stderr.splitlines()[-1].startswith("error: cannot write 'x/checkpoint.pt': File too large")
    assert "Traceback" not in p.stderr and "is intact" in p.stderr
    assert sorted(f.name for f in (tmp_path / "x").iterdir()) == ["config.json", "labeled_indices.npy", "metrics.csv",
                                                                  "train.log"]

    (tmp_path / "r.csv").write_text(
        "dataset,loss,label_fraction,clop_lambda,prototypes,similarity,augmentation,batch_size,base_lr,seed,top1,top5\n"
        "cifar100,infonce,0.1,0,orthonormal,cosine,simclr,256,0.3,0,0.5,0.8\n")
    p = subprocess.run([sys.executable, "-m", "training.plots", "--results", "r.csv", "--out", "figs"], cwd=tmp_path,
                       env=ENV, capture_output=True, text=True, timeout=300, preexec_fn=_limited(20_000))
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.splitlines()[-1].startswith("error: cannot write") and "File too large" in p.stderr
    assert not (tmp_path / "figs").exists()  # every output or none: none, and no empty folder
