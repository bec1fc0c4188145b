"""Distributed pre-training on the CPU (gloo): a 2-process step equals one process holding the whole batch.

The CPU has no SyncBatchNorm, so the equivalence test puts BatchNorm in eval mode (per-sample outputs);
everything else is the training code path: ``forward_loss`` with the gathered embeddings and labels, the
CLOP objective, DistributedDataParallel's gradient averaging and a LARS step. The equivalence is exact
mathematics, so it is tested in float64, where summation order (CPU kernels, thread count) moves the
gradients by ~1e-15 relative and a tolerance of 1e-10 cannot be crossed by rounding; two broken variants
(no DDP averaging, a gather whose backward skips its all-reduce) run beside it and must miss that
tolerance by orders of magnitude. Budget: about 30 s.
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

from tests.helpers import REPO
from training.config import PretrainConfig
from training.engine import distributed
from training.engine.build import build_objective
from training.engine.model import ContrastiveModel
from training.engine.steps import forward_loss
from training.optim import LARS, param_groups

GLOBAL_BATCH, CLASSES, DIM = 8, 4, 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TOL = 1e-10
"""float64: |2-process - 1-process| <= TOL x (largest |entry| of that tensor); rounding gives ~1e-15."""


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = ContrastiveModel("resnet18", small_images=True, projection_dim=DIM, hidden_dim=32).eval().double()
    cfg = PretrainConfig(dataset="synthetic", loss="infonce", projection_dim=DIM, seed=seed, device="cpu")
    objective = build_objective(cfg.resolved(), torch.device("cpu")).double()
    g = torch.Generator().manual_seed(123)
    v1, v2 = torch.randn(2, GLOBAL_BATCH, 3, 8, 8, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, -1, 2, 1, -1, 3, -1, 2])
    return model, objective, v1, v2, labels


def _step(model, objective, v1, v2, labels, ctx):
    optimizer = LARS(param_groups(model, 1e-6), lr=0.5)
    out = forward_loss(model, objective, v1, v2, labels, ctx)
    assert out["loss"].dtype == torch.float64, "the float64 comparison must not be evaluated in float32"
    optimizer.zero_grad()
    out["loss"].backward()
    grads = {name.removeprefix("module."): p.grad.clone() for name, p in model.named_parameters()}
    optimizer.step()
    return {k: float(v.detach()) for k, v in out.items()}, grads


class _GatherWithoutAllReduce(torch.autograd.Function):
    """A broken gather (the mutation): forward as training.engine.distributed's, backward keeps only this process's
    rows of its own gradient, without summing the other processes' contributions."""

    @staticmethod
    def forward(ctx, x):
        parts = [torch.empty_like(x) for _ in range(torch.distributed.get_world_size())]
        torch.distributed.all_gather(parts, x.contiguous())
        ctx.rows = x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        start = torch.distributed.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def _broken_gather(x, ctx):
    if x.requires_grad:
        return _GatherWithoutAllReduce.apply(x)
    parts = [torch.empty_like(x) for _ in range(ctx.world)]
    torch.distributed.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)  # two processes on a small CPU; float64 makes the numbers independent of it
    ctx = distributed.init("cpu")
    rows = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)

    model, objective, v1, v2, labels = _setup()
    distributed.check_identical(objective.clop.prototypes, "prototypes", ctx)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    ddp.eval()
    parts, grads = _step(ddp, objective, v1[rows], v2[rows], labels[rows], ctx)

    # mutation 1: no DDP, so no averaging of the parameter gradients over the processes
    local_model, objective2, *_ = _setup()
    _, local_grads = _step(local_model, objective2, v1[rows], v2[rows], labels[rows], ctx)
    # mutation 2: DDP, but the gather's backward skips its all-reduce
    broken_model, objective3, *_ = _setup()
    broken = torch.nn.parallel.DistributedDataParallel(broken_model)
    broken.eval()
    real_gather = distributed.gather
    distributed.gather = _broken_gather
    try:
        _, broken_grads = _step(broken, objective3, v1[rows], v2[rows], labels[rows], ctx)
    finally:
        distributed.gather = real_gather

    try:
        distributed.check_identical(torch.full((3,), float(rank)), "a rank-dependent tensor", ctx)
        mismatch_caught = False
    except RuntimeError:
        mismatch_caught = True
    torch.save({"parts": parts, "grads": grads, "state": model.state_dict(), "mismatch_caught": mismatch_caught,
                "local_grads": local_grads, "broken_grads": broken_grads}, Path(out_dir) / f"rank{rank}.pt")
    distributed.shutdown(ctx)


def _max_rel_error(got: dict, want: dict) -> dict:
    """Per tensor: max |got - want| / max |want| (want's largest entry sets the scale)."""
    return {k: float((got[k] - w).abs().max() / w.abs().max().clamp_min(1e-300)) for k, w in want.items()}


@pytest.mark.slow
def test_two_process_step_equals_one_process_with_the_whole_batch(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]

    model, objective, v1, v2, labels = _setup()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    parts, grads = _step(model, objective, v1, v2, labels, distributed.Context())
    assert all(g.dtype == torch.float64 for g in grads.values())
    assert all(float(g.abs().max()) > 0 for g in grads.values()), "every parameter must get a gradient"

    for r in ranks:
        for k in parts:
            assert r["parts"][k] == pytest.approx(parts[k], rel=TOL, abs=0), k
        assert r["mismatch_caught"], "check_identical must raise for a tensor that differs between ranks"
        # the gradient itself, before LARS's scale-free trust ratio
        errors = _max_rel_error(r["grads"], grads)
        assert max(errors.values()) <= TOL, {k: e for k, e in errors.items() if e > TOL}
        # the mutations: the same comparison must fail, by orders of magnitude, for every tensor
        for mutation in ("local_grads", "broken_grads"):
            missed = _max_rel_error(r[mutation], grads)
            assert min(missed.values()) > 1e6 * TOL, (mutation, min(missed.items(), key=lambda kv: kv[1]))
    # what the mutations computed is what the maths predicts: the mean over the processes of the un-averaged
    # gradients is the whole-batch gradient, and the gather without all-reduce gives 1/world of it
    mean_local = {k: sum(r["local_grads"][k] for r in ranks) / len(ranks) for k in grads}
    assert max(_max_rel_error(mean_local, grads).values()) <= TOL
    half = {k: 2 * ranks[0]["broken_grads"][k] for k in grads}
    assert max(_max_rel_error(half, grads).values()) <= TOL

    moved = 0
    for name, value in model.state_dict().items():
        for r in ranks:
            scale = float(value.abs().max()) if value.is_floating_point() else 1.0
            assert float((r["state"][name] - value).abs().max()) <= TOL * max(scale, 1e-300), name
        moved += int(not torch.equal(value, initial[name]))
    assert moved > 10, "the step must change the parameters for the comparison to mean anything"
    assert parts["clop"] > 0 and parts["contrastive"] > 0


def test_gather_is_the_identity_for_one_process():
    x = torch.randn(3, 2, requires_grad=True)
    assert distributed.gather(x, distributed.Context()) is x


@pytest.mark.slow
def test_torchrun_smoke_run_two_processes_writes_one_run(tmp_path):
    """The command line under torchrun (2 CPU processes, gloo): one metrics.csv, one checkpoint, rank 0 only."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this Python")
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # --device cpu: with CUDA present each process would take cuda:LOCAL_RANK, and a one-GPU machine has no cuda:1
    cmd = [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "training.pretrain", "--smoke",
           "--arch", "resnet18", "--epochs", "1", "--warmup-epochs", "0", "--no-progress", "--device", "cpu",
           "--out", str(run), "--data-root", str(tmp_path / "data")]
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
