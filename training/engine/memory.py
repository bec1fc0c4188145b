"""The memory a pre-training step needs, estimated before anything is allocated, and the check that refuses a
run that cannot fit (:func:`check_run_memory`; ``benchmarks/bench_train_step.py`` uses :func:`step_bytes`).

What is counted, in bytes (float32 unless said otherwise):

* the network's parameters three times: the weights, their gradients and the momentum buffer of LARS / SGD;
* the activations the backward pass keeps, for the two views of every image of this process's batch: the
  outputs of the network's leaf modules for one image of ``image_size`` pixels, found by running the network
  on torch's ``meta`` device (shapes only, nothing allocated; an output that is its own input, such as an
  in-place ReLU's, counted once), times 2 x batch. Under bf16 autocast (CUDA) they count half;
* the two views of the batch, (2, B, 3, S, S);
* ``--loader device``: the training images kept on the device (digits: prepared as float (N, 1, S, S);
  CIFAR-format sets: uint8 at their native 32 px);
* on the host: the fixed evaluation batch (``--eval-batch`` images) and the held-out images of the class
  geometry (at most ``--geometry-images``), both (N, 3, S, S), made once when the run starts.

The estimate is a floor, not a bound: workspace of the convolutions, the allocator's caching and the
library's own memory come on top, so a run refused here cannot fit, and a run accepted may still be tight.
The check compares it with the memory available (:func:`clop.util.memory.check_fits`: ``MemAvailable`` of
the host; the free memory of a CUDA device), right after the training split is read and before the images are
prepared, the network built or a view computed.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from clop.util.memory import check_fits
from training.config import PretrainConfig
from training.engine.build import build_model

__all__ = ["FLOAT_BYTES", "InsufficientMemoryError", "StepBytes", "activation_bytes", "step_bytes", "run_bytes",
           "check_run_memory"]

FLOAT_BYTES = 4
"""float32."""


class InsufficientMemoryError(ValueError):
    """The estimated need of a run exceeds the memory available; the message names the settings that set it."""


@dataclasses.dataclass(frozen=True)
class StepBytes:
    """The parts of one training step's memory, in bytes: ``state`` (weights, gradients, momentum),
    ``activations`` (kept for the backward pass, both views), ``views`` (the two input batches)."""

    state: int
    activations: int
    views: int

    @property
    def total(self) -> int:
        return self.state + self.activations + self.views


def activation_bytes(model: nn.Module, image_size: int) -> int:
    """Bytes of the outputs of ``model``'s leaf modules for one (1, 3, S, S) float32 image, measured on a copy of
    the network's structure on the ``meta`` device (nothing is allocated; ``model`` itself is not run).

    An output that is one of its module's inputs (an in-place operation) is not counted again.
    """
    total = 0

    def count(module: nn.Module, inputs: tuple, output: object) -> None:
        nonlocal total
        for out in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(out, torch.Tensor) and not any(out is x for x in inputs):
                total += out.numel() * out.element_size()

    handles = [m.register_forward_hook(count) for m in model.modules() if not any(True for _ in m.children())]
    try:
        with torch.no_grad():
            model(torch.empty(1, 3, image_size, image_size, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return total


def step_bytes(model_factory, image_size: int, batch: int, *, autocast: bool = False) -> StepBytes:
    """The memory of one training step of the network ``model_factory()`` (built on the ``meta`` device) on
    ``batch`` images of ``image_size`` pixels, two views each; ``autocast``: bf16 activations (half)."""
    with torch.device("meta"):
        model = model_factory()
    params = sum(p.numel() for p in model.parameters()) * FLOAT_BYTES
    per_image = activation_bytes(model.eval(), image_size)  # the shapes of training mode; BatchNorm needs no batch
    activations = 2 * batch * per_image // (2 if autocast else 1)
    views = 2 * batch * 3 * image_size**2 * FLOAT_BYTES
    return StepBytes(3 * params, activations, views)


def run_bytes(cfg: PretrainConfig, batch: int, n_train: int, n_heldout: int, device: torch.device,
              main: bool = True) -> tuple[int, int]:
    """(host bytes, device bytes) of a resolved pre-training config: one step at this process's ``batch``
    (:func:`step_bytes`), the images of ``--loader device`` (``n_train`` of them) on the device, and, on the
    ``main`` process, the evaluation batch and ``n_heldout`` held-out images on the host (module docstring)."""
    s = cfg.image_size
    step = step_bytes(lambda: build_model(cfg), s, batch, autocast=device.type == "cuda")
    stored = 0
    if cfg.loader == "device":
        stored = n_train * s * s * FLOAT_BYTES if cfg.dataset == "digits" else n_train * 3 * 32 * 32
    fixed_images = (min(cfg.eval_batch, n_train) + n_heldout) * 3 * s * s * FLOAT_BYTES if main else 0
    return fixed_images, step.total + stored


def check_run_memory(cfg: PretrainConfig, world: int, n_train: int, n_heldout: int, device: torch.device,
                     main: bool = True) -> None:
    """InsufficientMemoryError (a ValueError, one line) when the estimate of :func:`run_bytes` exceeds the memory
    available on the host or ``device``."""
    host, dev = run_bytes(cfg, cfg.batch_size // world, n_train, n_heldout, device, main)
    settings = (f"--arch {cfg.arch}, --image-size {cfg.image_size}, --batch-size {cfg.batch_size}"
                f"{f' over {world} processes' if world > 1 else ''}, --eval-batch {cfg.eval_batch}, "
                f"--geometry-images {cfg.geometry_images}, --loader {cfg.loader}")
    problem = check_fits(host, dev, device, settings, dtype="float32")
    if problem is not None:
        raise InsufficientMemoryError(problem)
