"""``python -m training.practice``: Section 5 of the CLOP paper in miniature, on real 8x8 digits and a CPU.

    python -m training.practice [--jobs 2] [--seeds 0 1 2] [--epochs 25] [--only lr batch lambda]
    python -m training.practice --report-only      # redraw the report from the finished runs (or its CSVs)

The grid: :mod:`training.practice.grid`; the runs: :mod:`training.practice.run` (under ``--runs``, default
runs/practice, ``RUNS/e<epochs>/<run>``, the probe rows also in ``RUNS/e<epochs>/results.csv``); the report
under ``--out`` (default paper_figures/practice): figures, their CSVs and practice.md
(:mod:`training.practice.report`, verdicts from :mod:`training.practice.claims`). Exit status: 0 done, 1 some
point failed (the report uses the others), 2 a refused setting or nothing to report, 130 after Ctrl-C (one
line; finished points are kept). While it runs, ``--out`` is locked (:func:`clop.util.io.output_folder`: the
temporaries a killed report left are removed first, and a folder it created is removed again when nothing was
written into it, e.g. when there is nothing to report).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from contextlib import ExitStack

from clop.util.cli import HelpFormatter, check_device, run_main
from clop.util.io import check_output_dir, check_path_text, output_folder
from clop.util.lock import FolderLockedError
from training.practice.grid import (
    AXES,
    EPOCHS,
    SEEDS,
    STUDY,
    Grid,
    make_launch,
    study_points,
)
from training.practice.report import REPORT_FILES, report
from training.practice.run import run_study
from training.sweeps.launch import pretrain_config

INTERRUPTED = "interrupted; finished points are kept: the same command continues (partial runs resume)"
"""What the command line prints after Ctrl-C."""


def build_parser(grid: Grid = STUDY) -> argparse.ArgumentParser:
    g = grid
    p = argparse.ArgumentParser(
        prog="python -m training.practice",
        description="CLOP paper Sec. 5 in miniature on 8x8 digits (arch small, CPU): learning rate x {LARS, SGD}, "
        "batch size and lambda, each with the six variants, several seeds; then figures and practice.md with "
        "a computed verdict per claim. Finished points are skipped, partial ones resumed.",
        formatter_class=HelpFormatter,
        epilog=f"Grid: lr {list(g.lrs)} x {list(g.optimizers)} at batch {g.lr_batch}; batch {list(g.batches)} at lr = "
        f"{g.batch_base_lr} x batch/256 (LARS); lambda {list(g.lambdas)} (LARS, batch {g.lr_batch}, lr "
        f"{g.batch_base_lr}); untrained reference at lr {g.reference_lr:g}. 'learning rate' = the rate used, "
        "base_lr x batch/256.",
    )
    p.add_argument("--out", default="paper_figures/practice", help="folder of the report (figures, CSVs, practice.md)")
    p.add_argument("--runs", default="runs/practice", help="folder of the run directories (RUNS/e<epochs>/<run>)")
    p.add_argument("--data-root", default=None, help="passed to training.pretrain; not used by digits (scikit-learn "
                   "ships them) (default: training.pretrain's)")
    p.add_argument("--jobs", type=int, default=None, help="points run at once, each a process with one torch thread "
                   f"(default: the CPU count, {os.cpu_count() or 1} here)")
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), metavar="S", help="seeds of every point")
    p.add_argument("--epochs", type=int, default=EPOCHS, help="pre-training epochs of every point (paper: 200)")
    p.add_argument("--only", nargs="+", choices=AXES, default=None, metavar="AXIS",
                   help=f"run only these axes, some of {list(AXES)} (default: all; the report covers what exists)")
    p.add_argument("--report-only", action="store_true", help="run nothing: redraw the report from the finished runs "
                   "(or, when --runs holds none, from the CSVs of a previous report in --out)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N for every run (default: CUDA when present, else CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one line per finished point is always printed)")
    return p


def main(argv: Sequence[str] | None = None, *, grid: Grid = STUDY) -> int:
    """Run the command line ``argv`` over ``grid`` (default: the study's)."""
    parser = build_parser(grid)
    args = parser.parse_args(argv)
    args.jobs = os.cpu_count() or 1 if args.jobs is None else args.jobs
    if args.jobs < 1:
        parser.error(f"--jobs must be an integer >= 1; got {args.jobs}")
    if args.epochs < 1:
        parser.error(f"--epochs must be an integer >= 1; got {args.epochs}")
    if any(s < 0 for s in args.seeds) or len(set(args.seeds)) < len(args.seeds):
        parser.error(f"--seeds must be distinct integers >= 0; got {args.seeds}")
    stack = ExitStack()
    try:
        for flag, path in (("--out", args.out), ("--runs", args.runs), ("--data-root", args.data_root)):
            if path is not None:
                check_path_text(path, flag)
        check_device(args.device, "--device")
        points = study_points(args.only, args.seeds, args.epochs, args.runs, grid)
        launch = make_launch(args.runs, args.epochs, args.device, args.data_root)
        for point in points:  # training.pretrain's own checks (device included), before anything runs
            pretrain_config(point, launch)
        if not args.report_only:
            check_output_dir(args.runs, "--runs")
        stack.enter_context(output_folder(args.out, "--out", program="training.practice", outputs=REPORT_FILES))
    except (ValueError, FolderLockedError) as exc:
        stack.close()
        parser.error(str(exc))
    with stack:
        failures = [] if args.report_only else run_study(points, launch, args.jobs, progress=not args.no_progress)
        status = _report(points, args.out, args.report_only, grid)
    if failures:
        print(f"{len(failures)} of {len(points)} points failed (the report uses the others):", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    return status


def _report(points, out: str, report_only: bool, grid: Grid) -> int:
    """Write the report; 0, or 2 after printing why there is nothing to report."""
    try:
        written = report(points, out, from_csv_if_empty=report_only, grid=grid)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"practice: report in {out} ({', '.join(sorted(p.name for p in written))})", file=sys.stderr)
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    """:func:`main` as the command line runs it (:func:`clop.util.cli.run_main`): Ctrl-C prints :data:`INTERRUPTED`
    (exit 130), a file that cannot be written one line (exit 1)."""
    return run_main(main, argv, interrupted=INTERRUPTED)


if __name__ == "__main__":
    raise SystemExit(cli())
