"""Benchmark: one pre-training step (not a test) and what the CLOP term and mixed precision cost.

The step is the training code path: ``training.engine.steps.forward_loss`` (both views through ResNet-50, the
objective on the batch), backward, and a LARS step. Timed in one process, on random images:

* InfoNCE alone against InfoNCE + CLOP (lambda 1, 100 classes, 10 % of the batch labeled): the CLOP
  term's overhead (the aim: under 3 %);
* on CUDA only: fp32 against bf16 autocast + channels-last (the pre-training's default there).

Configurations alternate in rounds (A B A B ...) so that drift in the machine's speed hits both; each
configuration's time per step is the median over rounds. Prints images/s (one image = two views) and the
ratios. Run: ``python benchmarks/bench_train_step.py [--device cpu] [--image-size 16] [--batch 16]``.

Before anything is allocated, the memory of the configurations held together (each network's weights,
gradients and momentum, each one's two view batches, and one step's activations:
:func:`training.engine.memory.step_bytes`) is compared with the memory available; a size that cannot fit is
refused with one line (exit 2), as is any bad flag value.
"""

from __future__ import annotations

if __name__ == "__main__" and __package__ in (None, ""):  # run as a file: make the repo root importable
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import argparse
import statistics
import time

import torch

from clop.util.cli import check_int, parse_device, run_main
from clop.util.memory import check_fits
from clop.util.progress import progress_bar
from training.config import PretrainConfig
from training.engine import distributed
from training.engine.build import build_objective
from training.engine.memory import step_bytes
from training.engine.model import ContrastiveModel
from training.engine.steps import forward_loss
from training.optim import LARS, param_groups


def make_step(arch: str, image_size: int, batch: int, clop: bool, fast: bool, device: torch.device, seed: int = 0):
    """A closure running one full training step on fixed random data; returns the loss (synchronised)."""
    torch.manual_seed(seed)
    model = ContrastiveModel(arch, small_images=image_size <= 64).to(device)
    if fast:
        model = model.to(memory_format=torch.channels_last)
    cfg = PretrainConfig(dataset="cifar100", clop_lambda=1.0 if clop else 0.0, device=str(device)).resolved()
    objective = build_objective(cfg, device)
    optimizer = LARS(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    g = torch.Generator().manual_seed(seed)
    v1, v2 = torch.randn(2, batch, 3, image_size, image_size, generator=g)
    labels = torch.full((batch,), -1)
    labeled = max(1, batch // 10)
    labels[:labeled] = torch.randint(0, 100, (labeled,), generator=g)
    if device.type == "cuda":
        v1, v2 = v1.pin_memory(), v2.pin_memory()
    ctx = distributed.Context(device=device)

    def step() -> float:
        out = forward_loss(model, objective, v1, v2, labels, ctx, fast=fast)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        return float(out["loss"].detach())  # synchronises the device

    return step


def loss_only_seconds(batch: int, clop: bool, device: torch.device, reps: int = 200) -> float:
    """Median seconds of the objective alone (forward + backward on random (batch, 128) embeddings)."""
    cfg = PretrainConfig(dataset="cifar100", clop_lambda=1.0 if clop else 0.0, device=str(device)).resolved()
    objective = build_objective(cfg, device)
    g = torch.Generator().manual_seed(0)
    z1, z2 = (t.to(device).requires_grad_() for t in torch.randn(2, batch, cfg.projection_dim, generator=g))
    labels = torch.full((batch,), -1)
    labels[: max(1, batch // 10)] = torch.randint(0, 100, (max(1, batch // 10),), generator=g)
    labels = labels.to(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        out = objective(z1, z2, labels)
        out["loss"].backward()
        float(out["loss"].detach())
        times.append(time.perf_counter() - start)
    return statistics.median(times[reps // 10:])


def measure(configs: dict[str, dict], *, rounds: int, steps: int, warmup: int, arch: str, image_size: int,
            batch: int, device: torch.device) -> dict[str, float]:
    """Median seconds per step of each configuration, measured in alternating rounds."""
    runners = {name: make_step(arch, image_size, batch, device=device, **kw) for name, kw in configs.items()}
    for run in runners.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in progress_bar(range(rounds), desc="rounds", unit="round"):
        for name, run in runners.items():
            start = time.perf_counter()
            for _ in range(steps):
                run()
            times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(t) for name, t in times.items()}


def memory_need(configs: dict[str, dict], arch: str, image_size: int, batch: int) -> int:
    """Bytes the configurations need together (module docstring): every network's state and views, and the
    largest step's activations."""
    parts = [step_bytes(lambda: ContrastiveModel(arch, small_images=image_size <= 64), image_size, batch,
                        autocast=kw["fast"]) for kw in configs.values()]
    return sum(p.state + p.views for p in parts) + max(p.activations for p in parts)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: CUDA when present)")
    p.add_argument("--arch", default="resnet50", choices=("resnet50", "resnet18"))
    p.add_argument("--image-size", type=int, default=None, help="default: 32 on CUDA (CIFAR), 16 on the CPU")
    p.add_argument("--batch", type=int, default=None, help="images per step (default: 512 on CUDA, 16 on the CPU)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=None, help="steps per round (default: 20 on CUDA, 3 on the CPU)")
    p.add_argument("--warmup", type=int, default=2)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    checks = (("--image-size", args.image_size, 8), ("--batch", args.batch, 2), ("--steps", args.steps, 1),
              ("--rounds", args.rounds, 1), ("--warmup", args.warmup, 0))
    for flag, value, minimum in checks:
        if value is not None:
            check_int(p, flag, value, minimum)
    device = parse_device(p, args.device)
    cuda = device.type == "cuda"
    image_size = args.image_size if args.image_size is not None else (32 if cuda else 16)
    batch = args.batch if args.batch is not None else (512 if cuda else 16)
    steps = args.steps if args.steps is not None else (20 if cuda else 3)
    configs = {"infonce": {"clop": False, "fast": cuda}, "infonce+clop": {"clop": True, "fast": cuda}}
    if cuda:
        configs["infonce fp32"] = {"clop": False, "fast": False}
    problem = check_fits(0, memory_need(configs, args.arch, image_size, batch), device,
                         f"--arch {args.arch}, --image-size {image_size}, --batch {batch}", dtype="float32")
    if problem is not None:
        p.error(problem)
    print(f"{args.arch}, {image_size} px, batch {batch} (x2 views), device {device}, "
          f"{args.rounds} rounds x {steps} steps, threads {torch.get_num_threads()}")
    t = measure(configs, rounds=args.rounds, steps=steps, warmup=args.warmup, arch=args.arch,
                image_size=image_size, batch=batch, device=device)
    for name, seconds in t.items():
        print(f"  {name:14s} {seconds * 1e3:9.1f} ms/step  {batch / seconds:9.1f} images/s")
    print(f"CLOP overhead: {100 * (t['infonce+clop'] / t['infonce'] - 1):+.2f} % of the InfoNCE step (whole steps)")
    extra = loss_only_seconds(batch, True, device) - loss_only_seconds(batch, False, device)
    print(f"CLOP term alone: +{extra * 1e6:.0f} us per step (objective forward + backward, median), "
          f"{100 * extra / t['infonce']:.3f} % of the InfoNCE step")
    if cuda:
        print(f"bf16 + channels_last speed-up over fp32: {t['infonce fp32'] / t['infonce']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
