"""Several processes (GPUs, machines) for the pre-training: process group, batch split, gathering with gradients.

The pre-training runs under ``torchrun`` unchanged::

    torchrun --nproc-per-node 8 -m training.pretrain --dataset cifar100 --data-root DATA ...
    # two machines, 8 GPUs each (run on both; same endpoint):
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 --rdzv-id RUN \\
        -m training.pretrain ...

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`init` reads them, starts the process
group (NCCL on CUDA, gloo on the CPU) and pins each process to its GPU. ``--batch-size`` stays the
GLOBAL batch (the one the learning rate is scaled by, lr = base_lr x batch/256); each process loads
batch / world_size images.

The contrastive losses must see the global batch, as in SimCLR (Chen et al. 2020a, Sec. 2.2: negatives
are gathered across all cores). :func:`gather` concatenates the embeddings of all processes and lets
gradients flow back to each process's own rows. Every process then evaluates the same global loss L;
the backward of :func:`gather` sums the gradients that the W copies of L send to a process's rows
(W dL/dz), and DistributedDataParallel averages parameter gradients over the W processes, so each
process ends with exactly dL/dtheta of the single-process global batch (the tests check this against one
process holding the whole batch). :func:`collective` runs a step that may fail on one process so that every
process stops instead of waiting at the next barrier.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from clop.util.device import default_device

T = TypeVar("T")


class PeerFailedError(RuntimeError):
    """Under torchrun: another process failed (it printed the reason); this one stops too."""


@dataclasses.dataclass(frozen=True)
class Context:
    """Where this process sits: rank, world size, local rank and its device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """Only the main process (rank 0) writes logs, metrics and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def init(device: str | None = None) -> Context:
    """The process context; starts the process group when torchrun launched several processes.

    ``device``: None (CUDA when present, else CPU) or a device string; under torchrun with CUDA each
    process takes ``cuda:LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context(device=default_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = default_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=timedelta(minutes=30))
    return Context(rank=rank, world=world, local_rank=local_rank, device=dev)


def shutdown(ctx: Context) -> None:
    """Leave the process group (a no-op for a single process)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


class _Gather(torch.autograd.Function):
    """all_gather along dim 0 whose backward returns this process's rows of the summed gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rows = x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.clone(memory_format=torch.contiguous_format)  # never modify autograd's incoming gradient
        dist.all_reduce(grad)
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def gather(x: torch.Tensor, ctx: Context) -> torch.Tensor:
    """x: (n, ...) on every process -> (world * n, ...) in rank order; gradients reach each process's rows.

    The identity for a single process. Tensors without gradient (labels) are gathered the same way.
    """
    if not ctx.distributed:
        return x
    if x.requires_grad:
        return _Gather.apply(x)
    parts = [torch.empty_like(x) for _ in range(ctx.world)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def check_identical(tensor: torch.Tensor, name: str, ctx: Context) -> None:
    """Raise RuntimeError unless ``tensor`` is bit-identical on every process (e.g. the CLOP prototypes)."""
    if not ctx.distributed:
        return
    reference = tensor.detach().clone()
    dist.broadcast(reference, src=0)
    differs = torch.tensor([float(not torch.equal(reference, tensor.detach()))], device=tensor.device)
    dist.all_reduce(differs)
    if differs.item() > 0:
        raise RuntimeError(f"{name} differ between processes ({int(differs.item())} of {ctx.world} differ from rank 0)")


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()


def collective(ctx: Context, fn: Callable[[], T], *, main_only: bool = False) -> T | None:
    """``fn()`` on every process (on rank 0 only with ``main_only``); if it raises on any process, every
    process raises (the others :class:`PeerFailedError`) instead of waiting forever at the next barrier.
    One process: just ``fn()``.
    """
    result, error = None, None
    if ctx.main or not main_only:
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - re-raised below, after the other processes heard of it
            error = exc
    if ctx.distributed:
        flag = torch.tensor([0.0 if error is None else 1.0], device=ctx.device)
        dist.all_reduce(flag)
        if flag.item() > 0 and error is None:
            error = PeerFailedError(f"process {ctx.rank}: stopped because another process failed (see its message)")
    if error is not None:
        raise error
    return result
