"""One training step of the pre-training: which images a process loads (:class:`BatchOrder`) and the loss
of a step on the global batch (:func:`forward_loss`, the default ``step`` of
:func:`training.engine.loop.pretrain`: a caller may pass another function with its signature).
"""

from __future__ import annotations

import torch

from clop.losses.clop_objective import CLOPObjective
from training.engine import distributed

__all__ = ["BatchOrder", "forward_loss"]


class BatchOrder(torch.utils.data.Sampler):
    """The indices this process loads in one epoch, from a given step on.

    Epoch e shuffles all N images with a generator seeded from (seed, e); global batch b is positions
    [b G, (b + 1) G) of that order (G the global batch, the tail dropped), and process r of W takes the
    r-th slice of B = G / W of it. So the global batches do not depend on W, and a resumed run continues
    at ``start_step`` with exactly the batches an uninterrupted run would have drawn.
    """

    def __init__(self, n: int, global_batch: int, steps: int, seed: int, ctx: distributed.Context) -> None:
        self.n, self.global_batch, self.steps, self.seed = n, global_batch, steps, seed
        self.local = global_batch // ctx.world
        self.offset = ctx.rank * self.local
        self.epoch, self.start_step = 1, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = epoch, start_step

    def __iter__(self):
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch))
        for b in range(self.start_step, self.steps):
            first = b * self.global_batch + self.offset
            yield from order[first : first + self.local].tolist()

    def __len__(self) -> int:
        return (self.steps - self.start_step) * self.local


def forward_loss(
    model: torch.nn.Module, objective: CLOPObjective, v1: torch.Tensor, v2: torch.Tensor, labels: torch.Tensor,
    ctx: distributed.Context, *, fast: bool | None = None,
) -> dict[str, torch.Tensor]:
    """The loss parts of one step on the global batch: this process's views v1, v2: (B, 3, S, S), labels: (B,).

    Both views go through the network in one batch (BatchNorm sees both); the embeddings and labels of all
    processes are gathered (gradients flow back, :func:`training.engine.distributed.gather`) and the objective is
    evaluated in float32 (float64 for a float64 model) on the global batch, identically on every process.
    ``fast`` (default: on CUDA) runs the network under bf16 autocast on channels-last input (the model should
    be channels-last too).
    """
    fast = ctx.device.type == "cuda" if fast is None else fast
    x = torch.cat([v1.to(ctx.device, non_blocking=True), v2.to(ctx.device, non_blocking=True)])
    if fast:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=fast):
        _, z = model(x)
    z1, z2 = z.to(torch.promote_types(z.dtype, torch.float32)).chunk(2)  # bf16 -> float32; float64 stays
    labels = labels.to(ctx.device, non_blocking=True)
    return objective(distributed.gather(z1, ctx), distributed.gather(z2, ctx), distributed.gather(labels, ctx))
