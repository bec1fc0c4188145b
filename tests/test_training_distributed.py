"""Distributed pre-training on the CPU (gloo): a 2-process step equals one process holding the whole batch.

The CPU has no SyncBatchNorm, so the equivalence test puts BatchNorm in eval mode (per-sample outputs);
everything else is the training code path: ``forward_loss`` with the gathered embeddings and labels, the
CLOP objective, DistributedDataParallel's gradient averaging and a LARS step. Budget: about 30 s.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

from training import distributed, pretrain
from training.model import ContrastiveModel
from training.optim import LARS, param_groups

REPO = Path(__file__).resolve().parent.parent
GLOBAL_BATCH, CLASSES, DIM = 8, 4, 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = ContrastiveModel("resnet18", small_images=True, projection_dim=DIM, hidden_dim=32).eval()
    cfg = pretrain.PretrainConfig(dataset="synthetic", loss="infonce", projection_dim=DIM, seed=seed, device="cpu")
    objective = pretrain.build_objective(cfg.resolved(), torch.device("cpu"))
    g = torch.Generator().manual_seed(123)
    v1, v2 = torch.randn(2, GLOBAL_BATCH, 3, 8, 8, generator=g)
    labels = torch.tensor([0, -1, 2, 1, -1, 3, -1, 2])
    return model, objective, v1, v2, labels


def _step(model, objective, v1, v2, labels, ctx):
    optimizer = LARS(param_groups(model, 1e-6), lr=0.5)
    out = pretrain.forward_loss(model, objective, v1, v2, labels, ctx)
    optimizer.zero_grad()
    out["loss"].backward()
    grads = {name.removeprefix("module."): p.grad.clone() for name, p in model.named_parameters()}
    optimizer.step()
    return {k: float(v.detach()) for k, v in out.items()}, grads


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    ctx = distributed.init("cpu")
    model, objective, v1, v2, labels = _setup()
    distributed.check_identical(objective.clop.prototypes, "prototypes", ctx)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    ddp.eval()
    rows = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
    parts, grads = _step(ddp, objective, v1[rows], v2[rows], labels[rows], ctx)
    try:
        distributed.check_identical(torch.full((3,), float(rank)), "a rank-dependent tensor", ctx)
        mismatch_caught = False
    except RuntimeError:
        mismatch_caught = True
    torch.save({"parts": parts, "grads": grads, "state": model.state_dict(), "mismatch_caught": mismatch_caught},
               Path(out_dir) / f"rank{rank}.pt")
    distributed.shutdown(ctx)


def test_two_process_step_equals_one_process_with_the_whole_batch(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, objective, v1, v2, labels = _setup()
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        parts, grads = _step(model, objective, v1, v2, labels, distributed.Context())
    finally:
        torch.set_num_threads(before)

    for r in ranks:
        for k in parts:
            assert r["parts"][k] == pytest.approx(parts[k], rel=1e-6, abs=1e-7), k
        assert r["mismatch_caught"], "check_identical must raise for a tensor that differs between ranks"
        for name, g in grads.items():  # the gradient itself, before LARS's scale-free trust ratio
            torch.testing.assert_close(r["grads"][name], g, rtol=1e-5, atol=1e-8, msg=name)
    moved = 0
    for name, value in model.state_dict().items():
        for r in ranks:
            torch.testing.assert_close(r["state"][name], value, rtol=1e-5, atol=1e-7, msg=name)
        moved += int(not torch.equal(value, initial[name]))
    assert moved > 10, "the step must change the parameters for the comparison to mean anything"
    assert parts["clop"] > 0 and parts["contrastive"] > 0


def test_gather_is_the_identity_for_one_process():
    x = torch.randn(3, 2, requires_grad=True)
    assert distributed.gather(x, distributed.Context()) is x


def test_torchrun_smoke_run_two_processes_writes_one_run(tmp_path):
    """The command line under torchrun (2 CPU processes, gloo): one metrics.csv, one checkpoint, rank 0 only."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this Python")
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "training.pretrain", "--smoke",
           "--arch", "resnet18", "--epochs", "1", "--warmup-epochs", "0", "--no-progress", "--out", str(run),
           "--data-root", str(tmp_path / "data")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = pd.read_csv(run / "metrics.csv")
    assert len(m) == 1 and m.loc[0, "step"] == 3
    # the learning rate follows the GLOBAL batch of 16 (8 per process): 0.3 x 16/256, cosine at the last step
    from training.optim import warmup_cosine

    assert m.loc[0, "lr"] == pytest.approx(0.3 * 16 / 256 * warmup_cosine(2, 3, 0), rel=1e-12)
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 1 and not any(k.startswith("module.") for k in ckpt["model"])
    assert proc.stderr.count("epoch 1/1: loss") == 1, "only rank 0 logs"
