"""``python -m training.rung3``: the ladder's rung 3, the digits CNN at large learning rates with and without
BatchNorm, and its report.

    python -m training.rung3 [--jobs 2] [--epochs 25] [--lrs 30 100 300 1000] [--context-lrs 3 10]
                             [--seeds 0 1 2 3 4 5]
    python -m training.rung3 --report-only     # redraw the report from the finished runs

The grid: :mod:`training.rung3.grid` (runs under ``--runs``, default runs/ladder_rung3); the runs go through the
practice study's machinery (:func:`training.practice.run.run_study`: a killed run resumes where it stopped, the
same command continues); the measurements: :mod:`training.rung3.measure`; the report under ``--out`` (default
paper_figures/ladder/rung3): :mod:`training.rung3.report`, verdicts :mod:`training.rung3.verdicts`. Exit status:
0 done, 1 some point failed (the report uses the others), 2 a refused flag (one line naming it) or nothing to
report, 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from clop.util.cli import HelpFormatter, check_device, run_main
from clop.util.device import torch_threads
from clop.util.io import check_output_dir, check_path_text
from training.practice.run import diverged, run_study
from training.rung3.grid import CONTEXT_LRS, EPOCHS, LRS, NORMS, OPTIMIZERS, RUNS, SEEDS, make_launch, points
from training.rung3.measure import run_row
from training.rung3.report import write_report
from training.sweeps.state import status

__all__ = ["build_parser", "cli", "collect", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.rung3", description="the ladder's rung 3: the digits CNN at large learning rates with and without BatchNorm",
                                formatter_class=HelpFormatter)
    p.add_argument("--runs", default=RUNS, help="folder of the run directories")
    p.add_argument("--out", default="paper_figures/ladder/rung3", help="report folder")
    p.add_argument("--ladder-rows", default="paper_figures/ladder/ladder_rows_rung3.csv",
                   help="the ladder's rows of rung 3 (read by python simulations/ladder.py --report-only); '' for none")
    p.add_argument("--epochs", type=int, default=EPOCHS, help="epochs of every run")
    p.add_argument("--lrs", type=float, nargs="+", default=list(LRS), help="learning rates (batch 256)")
    p.add_argument("--context-lrs", type=float, nargs="*", default=list(CONTEXT_LRS),
                   help="lower lrs run for nobn only, where its collapse may start (none: pass the flag alone)")
    p.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=OPTIMIZERS, help="optimisers")
    p.add_argument("--norms", nargs="+", default=list(NORMS), choices=list(NORMS),
                   help="normalisations: bn (as trained), nobn (--arch small-nobn), fixed (--hold-weight-norms)")
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="seeds (six pair for a verdict)")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time (one torch thread each)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--report-only", action="store_true", help="only redraw the report from the finished runs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def collect(pts) -> pd.DataFrame:
    """The per-run table of the finished and diverged runs of ``pts`` ((norm, point) pairs)."""
    rows = []
    for norm, p in pts:
        if not diverged(p.run_dir) and status(p.run_dir) != "done":
            continue
        rows.append({"run": p.name, "norm": norm, "optimizer": p.settings["optimizer"], "lr": p.value,
                     "seed": p.seed, **run_row(p.run_dir)})
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_path_text(args.runs, "--runs")
        out = check_output_dir(args.out, "--out")
        rows_path = None
        if args.ladder_rows:
            rows_path = check_output_dir(Path(args.ladder_rows).parent, "--ladder-rows") / Path(args.ladder_rows).name
        check_device(args.device, "--device")
        if args.jobs < 1:
            raise ValueError(f"--jobs must be an integer >= 1; got {args.jobs}")
        pts = points(args.runs, args.epochs, args.lrs, args.optimizers, args.norms, args.seeds, args.context_lrs)
    except ValueError as exc:
        parser.error(str(exc))
    start = time.perf_counter()
    failures = []
    if not args.report_only:
        main_lrs = set(args.lrs)  # the main grid, norm by norm, then the context points of nobn
        groups = [(norm, [p for n, p in pts if n == norm and p.value in main_lrs]) for norm in args.norms]
        groups.append(("nobn", [p for n, p in pts if p.value not in main_lrs]))
        for norm, group in groups:
            if group:
                launch = make_launch(norm, args.runs, args.epochs, args.device)
                failures += run_study(group, launch, args.jobs, progress=not args.no_progress)
    with torch_threads(1):
        tab = collect(pts)
    if tab.empty:
        print(f"error: no finished run under {args.runs}; run without --report-only first", file=sys.stderr)
        return 2
    claims = write_report(tab, out, seconds=None if args.report_only else time.perf_counter() - start,
                          epochs=args.epochs, rows_path=rows_path)
    for c in claims:
        print(f"{c.id}: {c.verdict}")
    print(f"rung3: {len(tab)} of {len(pts)} runs; wrote {out} in {time.perf_counter() - start:.0f} s")
    for f in failures:
        print(f"FAILED: {f}", file=sys.stderr)
    return 1 if failures else 0


def cli(argv: Sequence[str] | None = None) -> int:
    return run_main(main, argv)
