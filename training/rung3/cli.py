"""``python -m training.rung3``: the ladder's rung 3, the digits CNN at large learning rates with and without
BatchNorm, and its report; ``python -m training.rung4``: the same for rung 4, ResNet-50 on CIFAR-100 (a GPU and
the data).

    python -m training.rung3 [--jobs 2] [--epochs 25] [--lrs 30 100 300 1000] [--context-lrs 3 10]
                             [--seeds 0 1 2 3 4 5]
    python -m training.rung3 --report-only     # redraw the report from the finished runs
    python -m training.rung4 --data-root DATA --device cuda [--epochs 100] [--batch-size 1024]
    python -m training.rung4 --smoke --data-root DIR --epochs 1 --batch-size 16   # the code path, on a CPU

The grid: :mod:`training.rung3.grid` (:data:`~training.rung3.grid.RUNG3`, :data:`~training.rung3.grid.RUNG4`;
runs under ``--runs``, default runs/ladder_rung3 or runs/ladder_rung4); the runs go through the practice study's
machinery (:func:`training.practice.run.run_study`: a killed run resumes where it stopped, the same command
continues); the measurements: :mod:`training.rung3.measure`; the report under ``--out`` (default
paper_figures/ladder/rung3 or rung4): :mod:`training.rung3.report`, verdicts :mod:`training.rung3.verdicts`.
Exit status: 0 done, 1 some point failed (the report uses the others), 2 a refused flag (one line naming it) or
nothing to report, 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from clop.claims import check_claims_owner
from clop.util.cli import HelpFormatter, check_device, run_main
from clop.util.device import torch_threads
from clop.util.io import check_output_dir, check_path_text, output_folder
from clop.util.lock import FolderLockedError
from training.config import SMOKE
from training.practice.run import diverged, run_study
from training.rung3.grid import OPTIMIZERS, RUNG3, SEEDS, NetworkRung, make_launch, points
from training.rung3.measure import run_row
from training.rung3.report import report_files, write_report
from training.sweeps.state import status

__all__ = ["build_parser", "cli", "collect", "main"]


def build_parser(rung: NetworkRung = RUNG3) -> argparse.ArgumentParser:
    n = rung.number
    norms = ", ".join(f"{k} ({v.label})" for k, v in rung.norms.items())
    p = argparse.ArgumentParser(prog=rung.command,
                                description=f"the ladder's rung {n}: the {rung.model} at large learning rates, "
                                            f"{rung.compared}", formatter_class=HelpFormatter)
    p.add_argument("--runs", default=rung.runs, help="folder of the run directories")
    p.add_argument("--out", default=rung.out, help="report folder")
    p.add_argument("--ladder-rows", default=rung.rows,
                   help=f"the ladder's rows of rung {n} (read by python simulations/ladder.py --report-only); '' for none")
    if len(rung.datasets) > 1:
        p.add_argument("--dataset", default=rung.dataset, choices=rung.datasets, help="dataset of every run")
        p.add_argument("--data-root", default=None, help="folder that holds the dataset (training.pretrain's)")
        p.add_argument("--batch-size", type=int, default=rung.batch,
                       help="batch of every run (the lrs are the optimiser's rate: base lr = lr x 256 / batch)")
        p.add_argument("--smoke", action="store_true", help="every run with training.pretrain --smoke (a few "
                       "ResNet-50 steps on 16 px generated images; --dataset synthetic): the code path on a CPU")
    p.add_argument("--epochs", type=int, default=rung.epochs, help="epochs of every run")
    p.add_argument("--lrs", type=float, nargs="+", default=list(rung.lrs), help=f"learning rates (batch {rung.batch})")
    if "nobn" in rung.norms:
        p.add_argument("--context-lrs", type=float, nargs="*", default=list(rung.context_lrs),
                       help="lower lrs run for nobn only, where its collapse may start (none: pass the flag alone)")
    p.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=OPTIMIZERS, help="optimisers")
    p.add_argument("--norms", nargs="+", default=list(rung.norms), choices=list(rung.norms),
                   help=f"normalisations: {norms}")
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="seeds (six pairs for a verdict)")
    p.add_argument("--jobs", type=int, default=2 if rung.cpu_study else 1,
                   help="runs at a time" + (" (one torch thread each)" if rung.cpu_study else ""))
    p.add_argument("--device", default="cpu" if rung.cpu_study else None,
                   help="cpu or cuda" + ("" if rung.cpu_study else " (default: training.pretrain's, cuda if there is one)"))
    p.add_argument("--report-only", action="store_true", help="only redraw the report from the finished runs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _rung(args: argparse.Namespace, rung: NetworkRung) -> NetworkRung:
    """``rung`` with the dataset, batch and smoke setting of the command line (rung 4)."""
    if not hasattr(args, "dataset"):
        return rung
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be an integer >= 1; got {args.batch_size}")
    if args.smoke and args.dataset != "synthetic":
        raise ValueError(f"--smoke runs on generated images: it needs --dataset synthetic; got --dataset {args.dataset}")
    if args.data_root is not None:
        check_path_text(args.data_root, "--data-root")
    model = rung.model if args.dataset == rung.dataset else f"{rung.model.split(' on ')[0]} on {args.dataset}"
    return dataclasses.replace(rung, dataset=args.dataset, batch=args.batch_size, smoke=args.smoke, model=model,
                               heldout=str(SMOKE["geometry_images"]) if args.smoke else rung.heldout)


def collect(pts) -> pd.DataFrame:
    """The per-run table of the finished and diverged runs of ``pts`` ((norm, point) pairs)."""
    rows = []
    for norm, p in pts:
        if not diverged(p.run_dir) and status(p.run_dir) != "done":
            continue
        rows.append({"run": p.name, "norm": norm, "optimizer": p.settings["optimizer"], "lr": p.value,
                     "seed": p.seed, **run_row(p.run_dir)})
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None, rung: NetworkRung = RUNG3) -> int:
    parser = build_parser(rung)
    args = parser.parse_args(argv)
    context = getattr(args, "context_lrs", [])
    try:
        check_path_text(args.runs, "--runs")
        check_path_text(args.out, "--out")
        rows_path = None
        if args.ladder_rows:
            if Path(args.ladder_rows).is_dir():
                raise ValueError(f"--ladder-rows must name a CSV file; {args.ladder_rows!r} is a folder")
            rows_path = check_output_dir(Path(args.ladder_rows).parent, "--ladder-rows") / Path(args.ladder_rows).name
        if args.device is not None:
            check_device(args.device, "--device")
        if args.jobs < 1:
            raise ValueError(f"--jobs must be an integer >= 1; got {args.jobs}")
        rung = dataclasses.replace(_rung(args, rung), runs=args.runs)
        pts = points(args.runs, args.epochs, args.lrs, args.optimizers, args.norms, args.seeds, context, rung)
    except ValueError as exc:
        parser.error(str(exc))
    stack = contextlib.ExitStack()  # --out checked, created and locked; removed again if nothing is written
    try:
        out = stack.enter_context(output_folder(args.out, "--out", program=rung.command, outputs=report_files(rung)))
        check_claims_owner(out, lambda i: i.startswith(f"LAD-R{rung.number}-"), rung.command)
    except (ValueError, FolderLockedError) as exc:
        stack.close()
        parser.error(str(exc))
    with stack:
        return _study(args, rung, pts, out, rows_path)


def _study(args: argparse.Namespace, rung: NetworkRung, pts, out: Path, rows_path: Path | None) -> int:
    """Run the unfinished points of ``pts`` (unless ``--report-only``), then write the report into ``out``."""
    start = time.perf_counter()
    failures = []
    if not args.report_only:
        main_lrs = set(args.lrs)  # the main grid, norm by norm, then the context points of nobn
        groups = [(norm, [p for n, p in pts if n == norm and p.value in main_lrs]) for norm in args.norms]
        groups.append(("nobn", [p for n, p in pts if p.value not in main_lrs]))
        for norm, group in groups:
            if group:
                launch = make_launch(norm, args.runs, args.epochs, args.device, rung, getattr(args, "data_root", None))
                failures += run_study(group, launch, args.jobs, progress=not args.no_progress,
                                      threads=1 if rung.cpu_study else None)
    with torch_threads(1) if rung.cpu_study else contextlib.nullcontext():  # rung 4: every core embeds
        tab = collect(pts)
    if tab.empty:
        for f in failures:
            print(f"FAILED: {f}", file=sys.stderr)
        hint = "run without --report-only first" if args.report_only else "every run failed (above)"
        print(f"error: no finished run under {args.runs}; {hint}", file=sys.stderr)
        return 2
    claims = write_report(tab, out, seconds=None if args.report_only else time.perf_counter() - start,
                          epochs=args.epochs, rows_path=rows_path, rung=rung)
    for c in claims:
        print(f"{c.id}: {c.verdict}")
    print(f"rung{rung.number}: {len(tab)} of {len(pts)} runs; wrote {out} in {time.perf_counter() - start:.0f} s")
    for f in failures:
        print(f"FAILED: {f}", file=sys.stderr)
    return 1 if failures else 0


def cli(argv: Sequence[str] | None = None, rung: NetworkRung = RUNG3) -> int:
    return run_main(lambda a: main(a, rung), argv)
