"""Command-line plumbing shared by the L_class figure scripts (``lr_bound.py``, ``dimensional_collapse.py``)
and ``benchmarks/bench_lclass.py``.

Every setting is checked before any compute, and a bad one ends the script through ``parser.error``
(exit status 2, one line naming the flag, the value received and what is accepted), never a traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

import torch

from clop.claims import check_claims_owner
from clop.util.cli import check_int, parse_device
from clop.util.device import torch_threads
from clop.util.io import output_folder
from clop.util.lock import FolderLockedError
from clop.util.memory import check_fits

__all__ = ["THREADS_HELP", "MemoryEstimate", "add_run_args", "check_memory", "open_output", "run_script"]

THREADS_HELP = ("CPU threads for torch during this run (default 1: the per-step tensors are small, and on a "
                "small shared CPU OpenMP synchronisation per operation costs more than a second thread gains; "
                "restored afterwards)")

MemoryEstimate = Callable[[argparse.Namespace, torch.device], tuple[int, int, str]]
"""(args, device) -> (host bytes, device bytes, the flags that set the size, for the message)."""


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """The flags every figure script takes: --seed, --device, --out, --threads."""
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if present, else cpu)")
    parser.add_argument("--out", default="paper_figures", help="output directory (default paper_figures)")
    parser.add_argument("--threads", type=int, default=1, help=THREADS_HELP)


def check_memory(parser: argparse.ArgumentParser, args: argparse.Namespace, dev: torch.device,
                 memory: MemoryEstimate) -> None:
    """``parser.error`` when the run's estimated memory (:mod:`simulations.lclass.memory`) exceeds what is
    available (:func:`clop.util.memory.check_fits`)."""
    host, device, settings = memory(args, dev)
    msg = check_fits(host, device, dev, settings)
    if msg is not None:
        parser.error(msg)


def open_output(parser: argparse.ArgumentParser, stack: ExitStack, out: str, outputs: Sequence[str] = (),
                flag: str = "--out", owns: Callable[[str], bool] | None = None) -> Path:
    """Enter :func:`clop.util.io.output_folder` for ``out`` on ``stack`` (checked, created, locked, stale
    temporaries of ``outputs`` removed; removed again at exit if nothing was written), or ``parser.error``.
    With ``owns`` (which claim ids are the script's), a ``claims.csv`` there of another study is refused too
    (:func:`clop.claims.check_claims_owner`)."""
    try:
        folder = stack.enter_context(output_folder(out, flag, program=parser.prog, outputs=outputs))
        if owns is not None:
            check_claims_owner(folder, owns, parser.prog, flag)
        return folder
    except (ValueError, FolderLockedError) as exc:
        parser.error(str(exc))


def run_script(parser: argparse.ArgumentParser, args: argparse.Namespace,
               run: Callable[[argparse.Namespace, torch.device, Path], int],
               memory: MemoryEstimate | None = None, outputs: Sequence[str] = ()) -> int:
    """Check ``--threads``, ``--seed``, ``--device``, the memory the run needs and ``--out`` (all before any
    compute; ``--out`` last, so a refused setting creates no folder), then call ``run(args, device, out)``
    with ``--out`` locked (:func:`open_output`) and torch limited to ``args.threads`` threads."""
    check_int(parser, "--threads", args.threads, 1)
    check_int(parser, "--seed", args.seed, 0)
    dev = parse_device(parser, args.device)
    if memory is not None:
        check_memory(parser, args, dev, memory)
    with ExitStack() as stack:
        out = open_output(parser, stack, args.out, outputs)
        with torch_threads(args.threads):
            return run(args, dev, out)
