"""Command-line plumbing shared by the figure scripts of simulations/."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch

from clop._device import default_device, torch_threads

THREADS_HELP = ("CPU threads for torch during this run (default 1: the per-step tensors are small, and on a "
                "small shared CPU OpenMP synchronisation per operation costs more than a second thread gains; "
                "restored afterwards)")


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """The flags every figure script takes: --seed, --device, --out, --threads."""
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if present, else cpu)")
    parser.add_argument("--out", default="paper_figures", help="output directory (default paper_figures)")
    parser.add_argument("--threads", type=int, default=1, help=THREADS_HELP)


def run_script(parser: argparse.ArgumentParser, args: argparse.Namespace,
               run: Callable[[argparse.Namespace, torch.device, Path], int]) -> int:
    """Check ``--threads``, resolve ``--device``, create ``--out``, and call ``run(args, device, out)``
    with torch limited to ``args.threads`` threads (restored afterwards)."""
    if args.threads < 1:
        parser.error(f"--threads must be >= 1; got {args.threads}")
    dev = default_device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with torch_threads(args.threads):
        return run(args, dev, out)
