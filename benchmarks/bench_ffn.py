"""Benchmark: the synthetic FFN experiment (Table 5) trained in chunks against one run at a time (not a test).

Workload: ``--seeds`` runs of one configuration (default InfoNCE + CLOP and VICReg + CLOP, the dearest and
the cheapest per step) for ``--epochs`` epochs, trained

* one run at a time (chunk 1): the plain loop over seeds;
* in chunks of c runs, for every c of ``--chunks``: the engine of simulations/ffn/train.py.

Every variant trains the same runs; their outputs are compared (they agree to float32 rounding of the
batched products). Prints CPU time and wall time per run-epoch and the speed-up of each chunk size over
chunk 1, measured in this process. ``--no-retain`` leaves glibc's malloc at its defaults (clop/util/alloc.py),
to measure what keeping freed memory gains.

Run: python benchmarks/bench_ffn.py [--seeds 64] [--epochs 5] [--chunks 8 16 32 64] [--device cpu]
"""

from __future__ import annotations

if __name__ == "__main__" and __package__ in (None, ""):  # run as a file: make the repo root importable
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import argparse
import time

import torch

from clop.util.alloc import retain_freed_memory
from clop.util.cli import check_int, parse_device
from clop.util.device import torch_threads
from simulations.ffn import data as ffn_data
from simulations.ffn import train as ffn_train


def time_chunk(loss: str, data, epochs: int, chunk: int, device) -> tuple[float, float, torch.Tensor]:
    """(CPU seconds, wall seconds, outputs) of training every run of ``data`` in chunks of ``chunk``."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    cpu, wall = time.process_time(), time.perf_counter()
    out = ffn_train.train_runs(loss, True, data, epochs=epochs, chunk=chunk, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.process_time() - cpu, time.perf_counter() - wall, out


def build_parser() -> argparse.ArgumentParser:
    """The command line (every flag has a default)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=64, help="runs per configuration (default 64)")
    p.add_argument("--epochs", type=int, default=5, help="epochs per run (default 5)")
    p.add_argument("--chunks", type=int, nargs="+", default=[8, 16, 32, 64], help="chunk sizes (default 8 16 32 64)")
    p.add_argument("--losses", nargs="+", choices=ffn_train.LOSSES, default=["infonce", "vicreg"])
    p.add_argument("--device", default=None, help="torch device (default: cuda if present, else cpu)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--no-retain", action="store_true", help="leave glibc malloc's thresholds at their defaults")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    for name in ("seeds", "epochs", "threads"):
        check_int(p, f"--{name}", getattr(args, name), 1)
    if any(c < 1 for c in args.chunks):
        p.error(f"--chunks must be integers >= 1; got {args.chunks}")
    device = parse_device(p, args.device)
    retained = False if args.no_retain else retain_freed_memory()
    data = ffn_data.stack_data([ffn_data.make_data(s, **ffn_data.REGIMES["overlapping"]) for s in range(args.seeds)])
    print(f"{args.seeds} runs x {args.epochs} epochs on {device}, {args.threads} thread(s), freed memory "
          f"{'kept' if retained else 'returned to the OS (glibc defaults)'}")
    with torch_threads(args.threads):
        for loss in args.losses:
            ffn_train.train_runs(loss, True, data.select(slice(0, 2)), epochs=1, device=device)  # warm-up
            base_cpu, base_wall, base_out = time_chunk(loss, data, args.epochs, 1, device)
            per = 1e3 / (args.seeds * args.epochs)
            print(f"{ffn_train.DISPLAY[loss]} + CLOP, chunk 1 (one run at a time): {base_cpu * per:.2f} ms CPU, "
                  f"{base_wall * per:.2f} ms wall per run-epoch")
            for c in args.chunks:
                cpu, wall, out = time_chunk(loss, data, args.epochs, c, device)
                diff = float((out - base_out).abs().max())
                print(f"  chunk {c:4d}: {cpu * per:.2f} ms CPU, {wall * per:.2f} ms wall per run-epoch; "
                      f"speed-up {base_cpu / cpu:.1f}x CPU, {base_wall / wall:.1f}x wall; "
                      f"max |output - chunk 1| = {diff:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
