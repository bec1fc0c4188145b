"""The memory of a pre-training run is estimated before anything is allocated, and a run that cannot fit is
refused with one line (exit 2), never by the allocator or the system's out-of-memory killer.

Tested through the estimate: the activations counted on the meta device are checked against a count by hand,
and the command of the issue (digits at 3000 px) is shown to need far more than the 24 GB it grew to before it
was killed. Only sizes whose first allocation would fail at once are run.
"""

from __future__ import annotations

import pytest
import torch

from training import pretrain
from training.config import PretrainConfig
from training.engine.memory import FLOAT_BYTES, activation_bytes, run_bytes, step_bytes
from training.engine.model import ContrastiveModel

pytestmark = pytest.mark.usefixtures("one_thread")

PT = ["--dataset", "digits", "--arch", "small", "--batch-size", "128", "--device", "cpu", "--no-progress"]
"""The issue's pre-training command (without --out and the size)."""


def test_activations_are_counted_on_the_meta_device_without_counting_in_place_outputs_twice():
    with torch.device("meta"):
        model = ContrastiveModel("small", projection_dim=16, hidden_dim=16)
    # conv and BatchNorm outputs of the three layers (the in-place ReLUs share them), the pooled and flattened
    # features, the head's Linear, BatchNorm and Linear
    by_hand = 2 * (32 * 8 * 8 + 64 * 4 * 4 + 128 * 2 * 2) + 128 + 128 + 16 + 16 + 16
    assert activation_bytes(model.eval(), 8) == by_hand * FLOAT_BYTES
    assert all(p.device.type == "meta" for p in model.parameters())  # nothing was allocated


def test_a_step_counts_state_views_and_both_views_activations():
    step = step_bytes(lambda: ContrastiveModel("small", projection_dim=16, hidden_dim=16), 8, 4)
    params = 93_472 + 128 * 16 + 2 * 16 + 16 * 16 + 16  # encoder; Linear, BatchNorm1d, Linear of the head
    assert step.state == 3 * params * FLOAT_BYTES
    assert step.views == 2 * 4 * 3 * 8 * 8 * FLOAT_BYTES
    assert step.activations == 2 * 4 * 7472 * FLOAT_BYTES
    half = step_bytes(lambda: ContrastiveModel("small", projection_dim=16, hidden_dim=16), 8, 4, autocast=True)
    assert half.activations == step.activations // 2 and half.state == step.state


def test_the_issue_run_at_3000_px_is_estimated_far_above_what_it_reached_before_it_was_killed():
    cfg = PretrainConfig(dataset="digits", arch="small", batch_size=128, epochs=2, image_size=3000,
                         device="cpu").resolved()
    host, device = run_bytes(cfg, 128, 1438, 359, torch.device("cpu"))
    assert host + device > 24e9  # it grew to 24 GB before the out-of-memory killer ended it
    # the images the device loader prepares alone: 1,438 digits as float at 3000 x 3000
    assert device > 1438 * 3000 * 3000 * FLOAT_BYTES


def test_pretrain_refuses_a_run_that_cannot_fit_before_out_is_made(tmp_path, capsys):
    out = tmp_path / "runs" / "x"
    assert pretrain.main([*PT, "--epochs", "2", "--image-size", "100000", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: this run (--arch small, --image-size 100000, --batch-size 128")
    assert err.count("\n") == 1
    assert "needs about" in err and "is available" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_a_run_that_fits_is_not_refused():
    cfg = PretrainConfig(dataset="cifar100", arch="resnet50", batch_size=1024, device="cpu").resolved()
    host, device = run_bytes(cfg, 1024, 50_000, 1024, torch.device("cuda"))
    assert device < 40 * 2**30  # the paper's CIFAR-100 setting on one GPU of 80 GB (bf16 activations)
    assert host < 2**30
