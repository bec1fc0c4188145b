"""Killed pre-training runs resume to exactly the numbers of an uninterrupted run.

Smoke runs (ResNet-18, 8 px, batch 16, 3 epochs of 2 steps) are interrupted at a fixed step in-process,
and once with SIGKILL in a subprocess (stopped at a fixed step first, so the kill lands at a known point);
``--resume`` then finishes them. Bit-exact comparisons hold on one device kind only, so every run here is on
the CPU (``--device cpu``; on CUDA, cudnn.benchmark picks kernels per run). Budget: about 60 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.helpers import REPO, Killed, dies_at
from training import linear_eval, pretrain
from training.engine.steps import forward_loss

ARGS = ("--smoke", "--arch", "resnet18", "--image-size", "8", "--epochs", "3", "--steps-per-epoch", "2",
        "--warmup-epochs", "1", "--eval-batch", "16", "--no-progress", "--device", "cpu")
TIME_COLUMNS = ["images_per_s", "epoch_seconds"]

pytestmark = pytest.mark.slow  # every test shares the uninterrupted run of the module fixture (tens of seconds)


def _run(out: Path, data: Path, *extra: str, step=forward_loss) -> int:
    return pretrain.main([*ARGS, "--out", str(out), "--data-root", str(data), *extra], step=step)


def _final(run: Path) -> tuple[dict, pd.DataFrame]:
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    return ckpt, pd.read_csv(run / "metrics.csv").drop(columns=TIME_COLUMNS)


def _assert_same_run(a: Path, b: Path) -> None:
    ca, ma = _final(a)
    cb, mb = _final(b)
    assert (ca["epoch"], ca["step_in_epoch"]) == (cb["epoch"], cb["step_in_epoch"]) == (3, 0)
    for name, value in ca["model"].items():
        assert torch.equal(value, cb["model"][name]), name
    for group_a, group_b in zip(ca["optimizer"]["state"].values(), cb["optimizer"]["state"].values()):
        assert torch.equal(group_a["momentum_buffer"], group_b["momentum_buffer"])
    pd.testing.assert_frame_equal(ma, mb, check_exact=True)


@pytest.fixture(scope="module")
def data(synthetic_data) -> Path:
    return synthetic_data


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data) -> Path:
    run = tmp_path_factory.mktemp("runs") / "whole"
    assert _run(run, data) == 0
    return run



@pytest.mark.parametrize(
    "kill_at, every, resumes_from",
    [
        (4, "3", (1, 1)),  # killed at epoch 2's 2nd step; its mid-epoch checkpoint came after global step 3
        (5, None, (2, 0)),  # killed at epoch 3's 1st step; the last checkpoint is epoch 2's end
    ],
)
def test_interrupted_run_resumes_to_the_uninterrupted_numbers(
    kill_at, every, resumes_from, uninterrupted, data, tmp_path, capsys
):
    run = tmp_path / "killed"
    extra = () if every is None else ("--checkpoint-every", every)
    with pytest.raises(Killed):
        _run(run, data, *extra, step=dies_at(kill_at, forward_loss))
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert (ckpt["epoch"], ckpt["step_in_epoch"]) == resumes_from
    assert linear_eval.main(["--run", str(run), "--no-progress", "--workers", "0", "--device", "cpu"]) == 2
    assert "is not finished" in capsys.readouterr().err, "an unfinished run is not probed unless asked"

    assert _run(run, data, *extra) == 2, "an existing run needs --resume (or --overwrite)"
    assert _run(run, data, *extra, "--resume") == 0
    _assert_same_run(run, uninterrupted)


def _wait_until_stopped(proc: subprocess.Popen, timeout: float = 300.0) -> None:
    """Block until the child is stopped by a signal; fail if it exits (or neither happens) first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status = os.waitpid(proc.pid, os.WNOHANG | os.WUNTRACED)
        if pid == proc.pid:
            assert os.WIFSTOPPED(status), f"the child ended (wait status {status}) before it stopped itself"
            return
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    pytest.fail(f"the child neither stopped nor ended within {timeout:.0f} s")


def test_sigkilled_subprocess_resumes_to_the_uninterrupted_numbers(uninterrupted, data, tmp_path):
    run = tmp_path / "sigkill"
    args = [*ARGS, "--checkpoint-every", "1", "--out", str(run), "--data-root", str(data)]
    # the same thread count as the in-process uninterrupted run: CPU results are bit-exact only for equal counts
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "CLOP_TEST_STOP_AT": "4"}
    # the child: training.pretrain's command line whose step stops the process before its 4th call
    proc = subprocess.Popen([sys.executable, "-m", "tests.training.engine.stopping_pretrain", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_until_stopped(proc)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    # stopped before global step 4 (epoch 2's 2nd step): the last checkpoint came after global step 3
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert (ckpt["epoch"], ckpt["step_in_epoch"]) == (1, 1)
    assert list(pd.read_csv(run / "metrics.csv")["epoch"]) == [1]
    resumed = subprocess.run([sys.executable, "-m", "training.pretrain", *args, "--resume"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed at epoch 2, step 1" in resumed.stderr
    _assert_same_run(run, uninterrupted)


def test_resume_of_a_finished_run_does_nothing(uninterrupted, data, capsys):
    before = (uninterrupted / "checkpoint.pt").stat().st_mtime_ns
    assert _run(uninterrupted, data, "--resume") == 0
    assert "already finished" in capsys.readouterr().err
    assert (uninterrupted / "checkpoint.pt").stat().st_mtime_ns == before


def test_resume_with_other_settings_is_refused(uninterrupted, data, capsys):
    assert _run(uninterrupted, data, "--resume", "--base-lr", "0.5") == 2
    err = capsys.readouterr().err
    assert "base_lr" in err and "--overwrite" in err
