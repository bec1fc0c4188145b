"""SSEM's class-collapse boundary checked on free embeddings (Lee et al. 2025, arXiv 2503.08203).

Run: python simulations/ssem_grid.py [--quick] [--out paper_figures/ssem] [--report-only]
(also as python -m simulations.ssem_grid; --help lists every flag). Trains free unit embeddings by the
normalised step on the SSEM loss of both conventions over an (alpha, tau) grid (:mod:`simulations.ssem.grid`;
``--quick``: a small grid for a look) and compares the end states with the boundary alpha*(tau, k, n) and
the optimal spread derived in :mod:`theory.ssem` (:mod:`simulations.ssem.report`).

Writes under --out, staged and put in place together: ssem_runs.csv, ssem_cells.csv, ssem_boundary.csv,
claims.csv (the grid's claims and the derivation's, SSEM-...), ssem.md, ssem.png. ``--report-only`` redraws them
from the ssem_runs.csv already there. A bad flag fails at once with one line (exit status 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pandas as pd

if __package__ in (None, ""):  # run as `python simulations/ssem_grid.py`: make the packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clop.losses.ssem_loss import SSEM_CONVENTIONS  # noqa: E402
from clop.util.cli import check_int, check_unique, run_main  # noqa: E402
from clop.util.device import torch_threads  # noqa: E402
from clop.util.io import staged_outputs  # noqa: E402
from simulations.cli import open_output  # noqa: E402
from simulations.ssem.grid import FULL, QUICK, RUN_COLUMNS, run_grid  # noqa: E402
from simulations.ssem.report import OUTPUTS, write_report  # noqa: E402

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python simulations/ssem_grid.py",
        description="SSEM (arXiv 2503.08203): free embeddings trained by the normalised step over an (alpha, tau) "
        "grid, their within-class variance against the derived class-collapse boundary and optimal spread.")
    p.add_argument("--out", default="paper_figures/ssem", help="output folder (default paper_figures/ssem)")
    p.add_argument("--quick", action="store_true",
                   help=f"a small grid (k = n = {QUICK.k}, tau {list(QUICK.taus)}, {len(QUICK.alphas)} alphas, "
                   f"{QUICK.steps} steps)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"normalised steps per run (default {FULL.steps}; --quick {QUICK.steps})")
    p.add_argument("--trials", type=int, default=None,
                   help=f"starts per (alpha, tau) cell, >= 6 to decide a verdict (default {FULL.trials})")
    p.add_argument("--conventions", nargs="+", choices=SSEM_CONVENTIONS, default=list(SSEM_CONVENTIONS),
                   help="loss conventions (default both)")
    p.add_argument("--report-only", action="store_true", help="redraw the outputs from --out/ssem_runs.csv")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    return p


def _settings(parser: argparse.ArgumentParser, args: argparse.Namespace):
    base = QUICK if args.quick else FULL
    check_unique(parser, "--conventions", args.conventions)  # a repeated convention would count its runs twice
    for flag, value, low in (("--steps", args.steps, 1), ("--trials", args.trials, 1), ("--threads", args.threads, 1)):
        if value is not None:
            check_int(parser, flag, value, low)
    changes = {k: v for k, v in (("steps", args.steps), ("trials", args.trials)) if v is not None}
    if "steps" in changes:
        changes["drift_steps"] = max(1, min(base.drift_steps, changes["steps"] // 10))
    return dataclasses.replace(base, **changes)


def _read_runs(parser: argparse.ArgumentParser, out: str) -> pd.DataFrame:
    path = Path(out) / "ssem_runs.csv"
    try:
        runs = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        parser.error(f"--report-only: cannot read {path}: {exc}")
    if list(runs.columns) != list(RUN_COLUMNS) or runs.empty:
        parser.error(f"--report-only: {path} is not a runs file of this script (columns {list(RUN_COLUMNS)})")
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = _settings(parser, args)
    runs = _read_runs(parser, args.out) if args.report_only else None
    with ExitStack() as stack:
        out = open_output(parser, stack, args.out, OUTPUTS, owns=lambda i: i.startswith("SSEM-"))
        start = time.perf_counter()
        if runs is None:
            with torch_threads(args.threads):
                runs = run_grid(settings, tuple(args.conventions))
        runtime = None if args.report_only else time.perf_counter() - start
        shown = {"taus": list(settings.taus), "alphas": f"{len(settings.alphas)} from {min(settings.alphas):g} to "
                 f"{max(settings.alphas):g}", "starts per cell": settings.trials, "steps": settings.steps,
                 "device": f"cpu, float64, {args.threads} thread(s)"}
        if args.report_only:
            shown = {"redrawn from": "ssem_runs.csv"}
        with staged_outputs(out) as stage:
            _, claims = write_report(stage, runs, shown, runtime)
    for c in claims:
        print(f"{c.id}: {c.verdict} — {c.result}")
    print("wrote " + ", ".join(str(Path(args.out) / name) for name in OUTPUTS))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
