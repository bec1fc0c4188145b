"""Benchmark: Table 5's FFN training, the fused engines against the plain baseline, in one process (not a test).

The plain baseline is the autograd engine of simulations/ffn/train.py (autograd, vmap and torch.optim.Adam on
chunks of 64 stacked runs, one worker): the code Table 5 ran on before the fused training. Against it, in the
same process and in ``--rounds`` alternating rounds (medians printed):

1. per loss of ``--losses`` (with the CLOP term, the dearer configuration): ``--seeds`` runs with the
   baseline, with ``--engine`` (default auto: the native kernel on a CPU) on one worker at every chunk size of
   ``--chunks``, and with ``--workers`` workers (default: every usable core), each at ``--epochs`` and at twice
   as many epochs: the difference is the cost per run-epoch, the rest the set-up of a run;
2. per regime: the training of all 8 configurations of Table 5 (4 losses, with and without CLOP) on
   ``--regime-seeds`` runs, the baseline against the new engine on one worker and on ``--workers``, at
   ``--regime-epochs`` and twice as many; and the full regime (100 seeds x 200 epochs) projected from the cost
   per run-epoch, the set-up per run, the data and the evaluation (the same for every engine): the per-regime
   speed-up of synthetic_ffn.py.

It prints the estimated floating-point operations per run-epoch of each loss and the compute limit of one core
(a large float32 matrix product timed here), so the gap of each engine to that limit; the time per run-epoch
(CPU and wall); the speed-ups over the baseline; and how far the outputs lie from the baseline's (the fused
engines sum in another order, which training amplifies: they agree in exact arithmetic, not bit for bit).
``--no-retain`` leaves glibc's malloc at its defaults (clop/util/alloc.py).

Run: python benchmarks/bench_ffn.py [--seeds 64] [--epochs 5] [--rounds 3] [--workers N] [--device cpu]
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

from clop.util.alloc import retain_freed_memory
from clop.util.cli import check_int, parse_device
from clop.util.device import torch_threads
from simulations import native_build
from simulations.ffn import data as ffn_data
from simulations.ffn import train as ffn_train

BASELINE = dict(engine="autograd", chunk=None, workers=1)
"""The plain baseline: the autograd engine as Table 5 ran it before (chunks of 64 runs on a CPU, all runs at once
on CUDA; one worker)."""


def flops_per_run_epoch(loss: str, use_clop: bool, *, n_points: int = ffn_data.N_POINTS,
                        batch: int = ffn_train.BATCH_SIZE, hidden: int = ffn_train.HIDDEN,
                        dim: int = ffn_data.DIM) -> float:
    """Floating-point operations of one run-epoch (forward, loss gradient, backward, Adam), counting a
    multiply-add as 2 and an exponential as 20."""
    steps = -(-n_points // batch)
    rows = 2 * min(batch, n_points)
    macs = rows * (dim * hidden + hidden * hidden + hidden * dim)  # forward
    macs += rows * (hidden * dim + hidden * hidden) + rows * (hidden * dim + hidden * hidden + dim * hidden)  # back
    flops = 2.0 * macs
    if loss in ("infonce", "dcl"):
        flops += rows * rows * (2 * dim + 20 + 2 * 2 * dim + 1)  # similarities, exp, two products, row sums
    else:
        flops += rows * dim * dim * 2 * 4  # cross-correlation / covariance and their gradients
    if use_clop:
        flops += rows * dim * 6
    params = dim * hidden + hidden + hidden * hidden + hidden + hidden * dim + dim
    return steps * (flops + 10.0 * params)


def core_gflops(seconds: float = 0.5) -> float:
    """The float32 rate of one core on a large matrix product (torch, one thread): the compute limit."""
    a = torch.randn(768, 768)
    b = torch.randn(768, 768)
    with torch_threads(1):
        torch.mm(a, b)
        n, start = 0, time.process_time()
        while time.process_time() - start < seconds:
            torch.mm(a, b)
            n += 1
        return n * 2 * 768**3 / (time.process_time() - start) / 1e9


def _timed(fn):
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    return time.process_time() - cpu, time.perf_counter() - wall, out


def time_training(loss: str, data, epochs: int, device, **engine) -> tuple[float, float, torch.Tensor]:
    """(CPU seconds, wall seconds, outputs) of training every run of ``data`` with the CLOP term."""
    def run():
        out = ffn_train.train_runs(loss, True, data, epochs=epochs, device=device, **engine)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out
    return _timed(run)


def build_parser() -> argparse.ArgumentParser:
    """The command line (every flag has a default)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=64, help="runs per configuration (default 64)")
    p.add_argument("--epochs", type=int, default=5, help="epochs per run (default 5)")
    p.add_argument("--chunks", type=int, nargs="+", default=[8, 16, 32, 64],
                   help="chunk sizes at which the new engine is timed on one worker (default 8 16 32 64)")
    p.add_argument("--losses", nargs="+", choices=ffn_train.LOSSES, default=["infonce", "vicreg"],
                   help="losses timed one by one, with the CLOP term (default infonce vicreg)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if present, else cpu)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--no-retain", action="store_true", help="leave glibc malloc's thresholds at their defaults")
    p.add_argument("--engine", choices=ffn_train.ENGINES, default="auto",
                   help="the engine compared with the baseline (default auto: native on a CPU, else fused)")
    p.add_argument("--workers", type=int, default=None, help="workers of the parallel runs (default: every core)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds, medians printed (default 3)")
    p.add_argument("--regime-seeds", type=int, default=64,
                   help="runs per configuration in the per-regime part (default 64: the baseline's chunk)")
    p.add_argument("--regime-epochs", type=int, default=5,
                   help="epochs in the per-regime part, timed also at twice as many (default 5)")
    return p


def _check(p: argparse.ArgumentParser, args: argparse.Namespace) -> torch.device:
    for name in ("seeds", "epochs", "threads", "rounds", "regime_seeds", "regime_epochs"):
        check_int(p, f"--{name.replace('_', '-')}", getattr(args, name), 1)
    if args.workers is not None:
        check_int(p, "--workers", args.workers, 1)
    if any(c < 1 for c in args.chunks):
        p.error(f"--chunks must be integers >= 1; got {args.chunks}")
    device = parse_device(p, args.device)
    try:
        args.engine = ffn_train.resolve_engine(args.engine, device)
    except (ValueError, RuntimeError) as exc:
        p.error(f"--engine {args.engine}: {exc}")
    return device


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def _marginal(t1: float, t2: float, runs: int, epochs: int) -> tuple[float, float]:
    """(seconds per run-epoch, set-up seconds per run) from the times of ``epochs`` and of 2 x ``epochs``."""
    per = max(t2 - t1, 0.0) / (runs * epochs)
    return per, max(t1 - per * runs * epochs, 0.0) / runs


def per_loss(args, device, peak: float) -> None:
    """Part 1: each loss of --losses, the baseline against the new engine (medians of --rounds rounds). Each
    variant trains --epochs and 2 x --epochs epochs; the difference is the cost of --epochs epochs alone
    (without the set-up of a run: initial weights, prototypes, the first calls)."""
    data = ffn_data.stack_data([ffn_data.make_data(s, **ffn_data.REGIMES["overlapping"]) for s in range(args.seeds)])
    workers = args.workers or native_build.default_threads()
    variants = [("baseline (autograd, 1 worker)", BASELINE)]
    variants += [(f"{args.engine}, chunk {c}, 1 worker", dict(engine=args.engine, chunk=c, workers=1))
                 for c in args.chunks]
    variants.append((f"{args.engine}, default chunk, {workers} workers", dict(engine=args.engine, workers=workers)))
    for loss in args.losses:
        for _, engine in variants:  # warm-up (first calls, kernel build)
            ffn_train.train_runs(loss, True, data.select(slice(0, 2)), epochs=1, device=device, **engine)
        times: dict[tuple[str, int], list[tuple[float, float]]] = {}
        outs: dict[str, torch.Tensor] = {}
        for _ in range(args.rounds):
            for label, engine in variants:
                for epochs in (args.epochs, 2 * args.epochs):
                    c, w, outs[label] = time_training(loss, data, epochs, device, **engine)
                    times.setdefault((label, epochs), []).append((c, w))
        flops = flops_per_run_epoch(loss, True)
        limit_ms = flops / (peak * 1e9) * 1e3
        print(f"\n{ffn_train.DISPLAY[loss]} + CLOP: about {flops / 1e6:.1f} MFLOP per run-epoch, "
              f"{limit_ms:.3f} ms at the compute limit of one core ({peak:.0f} GFLOP/s)")
        costs = {}
        for label, _ in variants:
            med = [tuple(_median([t[i] for t in times[(label, e)]]) for i in (0, 1))
                   for e in (args.epochs, 2 * args.epochs)]
            cpu, setup = _marginal(med[0][0], med[1][0], args.seeds, args.epochs)
            wall, _ = _marginal(med[0][1], med[1][1], args.seeds, args.epochs)
            costs[label] = (cpu * 1e3, wall * 1e3, setup * 1e3)
        base_label = variants[0][0]
        for label, _ in variants:
            c, w, setup = costs[label]
            line = (f"  {label:<38}: {c:6.3f} ms CPU, {w:6.3f} ms wall per run-epoch (set-up {setup:4.1f} ms CPU a "
                    f"run); {c / limit_ms:4.1f}x the compute limit")
            if label != base_label:
                diff = float((outs[label] - outs[base_label]).abs().max())
                line += (f"; speed-up {costs[base_label][0] / c:4.1f}x CPU, {costs[base_label][1] / w:4.1f}x wall; "
                         f"max |output - baseline| {diff:.1e}")
            print(line)


def per_regime(args, device) -> None:
    """Part 2: the training of all 8 configurations of Table 5 on --regime-seeds runs, the baseline against the new
    engine on one worker and on every worker (medians of --rounds alternating rounds), at --regime-epochs and at
    twice as many epochs; then the full regime (100 seeds x 200 epochs) projected from the cost per run-epoch,
    the set-up per run, and the data and the evaluation, which every engine shares."""
    opts = ffn_data.REGIMES["overlapping"]
    n, e1 = args.regime_seeds, args.regime_epochs
    t0 = time.perf_counter()
    data = ffn_data.stack_data([ffn_data.make_data(s, **opts) for s in range(n)])
    t_data = time.perf_counter() - t0
    workers = args.workers or native_build.default_threads()
    sides = [("baseline (autograd, 1 worker)", BASELINE), (f"{args.engine}, 1 worker", dict(engine=args.engine, workers=1)),
             (f"{args.engine}, {workers} workers", dict(engine=args.engine, workers=workers))]
    configs = [(loss, c) for loss in ffn_train.LOSSES for c in (False, True)]
    times: dict[tuple[str, int], list[float]] = {}
    outputs = {}
    for _ in range(args.rounds):
        for label, engine in sides:
            for epochs in (e1, 2 * e1):
                start = time.perf_counter()
                for loss, c in configs:
                    outputs[(loss, c)] = ffn_train.train_runs(loss, c, data, epochs=epochs, device=device, **engine)
                times.setdefault((label, epochs), []).append(time.perf_counter() - start)
    start = time.perf_counter()
    for loss, c in configs:
        ffn_train.evaluate(loss, outputs[(loss, c)], data)
    t_eval = time.perf_counter() - start
    print(f"\nPer regime: training of the 8 configurations of Table 5 on {n} runs at {e1} and {2 * e1} epochs, wall "
          f"seconds (median of {args.rounds}); data {t_data:.2f} s and evaluation {t_eval:.2f} s (shared by every "
          "engine); projected to the full regime (100 seeds x 200 epochs), data and evaluation included")
    full = {}
    for label, _ in sides:
        t1, t2 = (_median(times[(label, e)]) for e in (e1, 2 * e1))
        per, setup = _marginal(t1, t2, 8 * n, e1)
        full[label] = (t_data + t_eval) * 100 / n + 8 * 100 * (setup + 200 * per)
        print(f"  {label:<32}: {t1:6.2f} s / {t2:6.2f} s, {per * 1e3:.3f} ms per run-epoch, set-up {setup * 1e3:.1f} ms "
              f"a run; full regime about {full[label]:6.1f} s, per-regime speed-up {full[sides[0][0]] / full[label]:4.1f}x")


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    device = _check(p, args)
    retained = False if args.no_retain else retain_freed_memory()
    peak = core_gflops()
    print(f"{args.seeds} runs x {args.epochs} epochs on {device}, {args.threads} torch thread(s), "
          f"{native_build.usable_cores()} usable cores, freed memory "
          f"{'kept' if retained else 'returned to the OS (glibc defaults)'}; engine {args.engine} "
          f"({ffn_train.engine_status(args.engine, device)}); {args.rounds} alternating rounds, medians")
    with torch_threads(args.threads):
        per_loss(args, device, peak)
        per_regime(args, device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
