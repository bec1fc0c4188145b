"""``python -m training.practice``: Section 5 of the CLOP paper in miniature, on real 8x8 digits and a CPU.

    python -m training.practice [--jobs 2] [--seeds 0 1 2] [--verdict-seeds 16] [--epochs 25] [--only lr batch lambda]
    python -m training.practice --report-only      # redraw the report from the finished runs (or its CSVs)
    python -m training.practice --seed-blocks 16   # the seed-block study: how many seeds the verdicts need

The grid: :mod:`training.practice.grid`; the runs: :mod:`training.practice.run` (under ``--runs``, default
runs/practice, ``RUNS/e<epochs>/<run>``, the probe rows also in ``RUNS/e<epochs>/results.csv``); the report
under ``--out`` (default paper_figures/practice): figures, their CSVs and practice.md
(:mod:`training.practice.report`, verdicts from :mod:`training.practice.claims`). ``--seed-blocks P`` runs (or
resumes) seeds 0..P-1 at the points that carry a verdict and writes seed_blocks.md/.csv to ``--out`` instead
(:mod:`training.practice.seeds`). Before anything runs, the expected time is printed
(:func:`training.practice.grid.estimate_seconds`). Exit status: 0 done, 1 some
point failed (the report uses the others), 2 a refused setting or nothing to report, 130 after Ctrl-C (one
line; finished points are kept). While it runs, ``--out`` is locked (:func:`clop.util.io.output_folder`: the
temporaries a killed report left are removed first, and a folder it created is removed again when nothing was
written into it, e.g. when there is nothing to report).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from clop.util.cli import HelpFormatter, check_device, run_main
from clop.util.io import check_output_dir, check_path_text, output_folder, staged_outputs
from clop.util.lock import FolderLockedError
from training.practice import claims as PC
from training.practice import seeds as PS
from training.practice.grid import (
    AXES,
    EPOCHS,
    SEEDS,
    STUDY,
    VERDICT_SEEDS,
    Grid,
    carries_verdict,
    make_launch,
    study_points,
)
from training.practice.report import REPORT_FILES, collect, report
from training.practice.run import run_study
from training.sweeps.launch import pretrain_config

INTERRUPTED = "interrupted; finished points are kept: the same command continues (partial runs resume)"
"""What the command line prints after Ctrl-C."""
BLOCK_SIZES = (6, 8, 12)
"""Block sizes of the seed-block study (those no larger than the pool)."""
BLOCK_BOOTS = 200


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
    p.add_argument("--verdict-seeds", type=int, default=VERDICT_SEEDS, metavar="N", help="the points that carry a "
                   "verdict also run seeds 0..N-1 (sixteen, chosen by the seed-block study; 0 adds none)")
    p.add_argument("--seed-blocks", type=int, default=None, metavar="P", help="instead of the study: run seeds "
                   "0..P-1 at the points that carry a verdict and write seed_blocks.md/.csv (how often verdicts move "
                   f"between disjoint blocks of {list(BLOCK_SIZES)} seeds) to --out (default: off)")
    p.add_argument("--epochs", type=int, default=EPOCHS, help="pre-training epochs of every point (paper: 200)")
    p.add_argument("--only", nargs="+", choices=AXES, default=None, metavar="AXIS",
                   help=f"run only these axes, some of {list(AXES)} (default: all; the report covers what exists)")
    p.add_argument("--report-only", action="store_true", help="run nothing: redraw the report from the finished runs "
                   "(or, when --runs holds none, from the CSVs of a previous report in --out)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N for every run (default: CUDA when present, else CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one line per finished point is always printed)")
    return p


def seed_blocks(points: Sequence, pool: int, out: str, grid: Grid = STUDY) -> list[Path]:
    """The seed-block study of the finished runs of ``points`` (seeds 0..pool-1): seed_blocks.csv and .md in ``out``."""
    runs, eta, counts = collect(points, grid)
    if counts["missing"]:
        raise ValueError(f"{counts['missing']} of the {counts['planned']} runs of the seed-block pool are not finished; "
                         "run them first (without --report-only)")
    start = time.perf_counter()
    sizes = [n for n in BLOCK_SIZES if n < pool]

    def judge(r, e):
        return PC.all_claims(r, e, lrs=grid.lrs, batches=grid.batches)

    table = PS.agreement(runs, eta, judge, list(range(pool)), sizes, BLOCK_BOOTS)
    with staged_outputs(out) as stage:
        table.to_csv(stage("seed_blocks.csv"), index=False)
        stage("seed_blocks.md").write_text(PS.markdown(table, list(range(pool)), sizes, BLOCK_BOOTS,
                                                       time.perf_counter() - start))
    return [Path(out) / "seed_blocks.csv", Path(out) / "seed_blocks.md"]


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
    if args.verdict_seeds < 0:
        parser.error(f"--verdict-seeds must be an integer >= 0; got {args.verdict_seeds}")
    if args.seed_blocks is not None and args.seed_blocks < 2 * min(BLOCK_SIZES):
        parser.error(f"--seed-blocks must be an integer >= {2 * min(BLOCK_SIZES)} (two blocks of {min(BLOCK_SIZES)}); "
                     f"got {args.seed_blocks}")
    stack = ExitStack()
    try:
        for flag, path in (("--out", args.out), ("--runs", args.runs), ("--data-root", args.data_root)):
            if path is not None:
                check_path_text(path, flag)
        check_device(args.device, "--device")
        if args.seed_blocks is None:
            points = study_points(args.only, args.seeds, args.epochs, args.runs, grid, args.verdict_seeds)
        else:
            pool = study_points(["lr", "batch"], [0], args.epochs, args.runs, grid, args.seed_blocks)
            points = [p for p in pool if carries_verdict(p)]
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
        status = _report(points, args.out, args.report_only, grid, args.seed_blocks)
    if failures:
        print(f"{len(failures)} of {len(points)} points failed (the report uses the others):", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    return status


def _report(points, out: str, report_only: bool, grid: Grid, blocks: int | None = None) -> int:
    """Write the report (or, with ``blocks``, the seed-block study); 0, or 2 after printing why there is nothing."""
    try:
        if blocks is not None:
            written = seed_blocks(points, blocks, out, grid)
        else:
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
