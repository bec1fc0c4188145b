"""CPLearn's collapse claims (Sansone et al. 2025, arXiv 2410.04959) on the synthetic 3-D data of the CLOP paper.

Run: python simulations/cplearn_synthetic.py [--seeds 40] [--losses ...] [--quick] [--out paper_figures/cplearn]
[--report-only]
(also as python -m simulations.cplearn_synthetic; --help lists every flag). Per data regime of Table 5 (separable
and overlapping) and seed: CPLearn and InfoNCE (and SupCon with ``--losses cplearn infonce supcon``), each
without and with CLOP, on the same data and starts
(:mod:`simulations.ffn.cplearn_study`); the four collapse measures, their verdicts for CPLearn, the covariance
spectra. ``--quick``: 6 seeds, 40 epochs, for a look.

Writes under --out, staged and put in place together: cplearn_runs.csv, cplearn_spectra.csv, cplearn_rules.csv,
claims.csv, cplearn.md, cplearn.png. ``--report-only`` redraws them from the runs and spectra CSVs already
there. A bad flag fails at once with one line (exit status 2).
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pandas as pd

if __package__ in (None, ""):  # run as `python simulations/cplearn_synthetic.py`: make the packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clop.util.alloc import retain_freed_memory  # noqa: E402
from clop.util.cli import check_int, check_unique, run_main  # noqa: E402
from clop.util.device import torch_threads  # noqa: E402
from clop.util.io import staged_outputs  # noqa: E402
from simulations.cli import open_output  # noqa: E402
from simulations.ffn.cplearn_study import (  # noqa: E402
    DEFAULT_LOSSES,
    DISPLAY,
    OUTPUTS,
    RUN_COLUMNS,
    run_regime,
    write_outputs,
)
from simulations.ffn.data import REGIMES  # noqa: E402
from simulations.ffn.train import EPOCHS  # noqa: E402

__all__ = ["build_parser", "main"]

SEEDS = 40
QUICK = {"seeds": 6, "epochs": 40}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python simulations/cplearn_synthetic.py",
        description="CPLearn (arXiv 2410.04959) on the synthetic 3-D data of the CLOP paper: representation, "
        "dimensional, cluster and intracluster collapse beside InfoNCE (and SupCon on request), with and without CLOP.")
    p.add_argument("--out", default="paper_figures/cplearn", help="output folder (default paper_figures/cplearn)")
    p.add_argument("--seeds", type=int, default=None, help=f"seeds per configuration, >= 6 to decide (default {SEEDS})")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--epochs", type=int, default=None, help=f"training epochs (default {EPOCHS}, Table 5's)")
    p.add_argument("--losses", nargs="+", choices=tuple(DISPLAY), default=list(DEFAULT_LOSSES),
                   help=f"methods, cplearn among them (default {' '.join(DEFAULT_LOSSES)})")
    p.add_argument("--regimes", nargs="+", choices=tuple(REGIMES), default=list(REGIMES),
                   help="data regimes (default both)")
    p.add_argument("--quick", action="store_true", help=f"{QUICK['seeds']} seeds, {QUICK['epochs']} epochs")
    p.add_argument("--report-only", action="store_true", help="redraw the outputs from the CSVs in --out")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress lines")
    return p


def _read(parser: argparse.ArgumentParser, out: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    frames = []
    for name in ("cplearn_runs.csv", "cplearn_spectra.csv"):
        try:
            frames.append(pd.read_csv(Path(out) / name))
        except (OSError, ValueError) as exc:
            parser.error(f"--report-only: cannot read {Path(out) / name}: {exc}")
    if list(frames[0].columns) != list(RUN_COLUMNS):
        parser.error(f"--report-only: {Path(out) / 'cplearn_runs.csv'} is not a runs file of this script")
    return frames[0], frames[1]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    seeds_n = args.seeds if args.seeds is not None else (QUICK["seeds"] if args.quick else SEEDS)
    epochs = args.epochs if args.epochs is not None else (QUICK["epochs"] if args.quick else EPOCHS)
    for flag, value, low in (("--seeds", seeds_n, 1), ("--seed", args.seed, 0), ("--epochs", epochs, 1),
                             ("--threads", args.threads, 1)):
        check_int(parser, flag, value, low)
    check_unique(parser, "--regimes", args.regimes)
    check_unique(parser, "--losses", args.losses)
    if "cplearn" not in args.losses:
        parser.error(f"--losses must include cplearn (the method under test); got {' '.join(args.losses)}")
    loaded = _read(parser, args.out) if args.report_only else None
    retain_freed_memory()
    with ExitStack() as stack:
        out = open_output(parser, stack, args.out, OUTPUTS, owns=lambda i: i.startswith("CPL-"))
        start = time.perf_counter()
        if loaded is None:
            seeds = list(range(args.seed, args.seed + seeds_n))
            say = None if args.no_progress else (lambda line: print(line, file=sys.stderr, flush=True))
            rows, spectra = [], []
            with torch_threads(args.threads):
                for regime in args.regimes:
                    r, s = run_regime(regime, seeds, epochs, tuple(args.losses), say)
                    rows += r
                    spectra += s
            runs, spec = pd.DataFrame(rows, columns=list(RUN_COLUMNS)), pd.DataFrame(spectra)
            settings = {"seeds": f"{seeds_n} (from {args.seed})", "epochs": epochs, "regimes": ", ".join(args.regimes),
                        "methods": ", ".join(DISPLAY[name] for name in args.losses)}
            runtime = time.perf_counter() - start
        else:
            runs, spec = loaded
            settings, runtime = {"redrawn from": "cplearn_runs.csv"}, None
        with staged_outputs(out) as stage:
            claims = write_outputs(stage, runs, spec, settings, runtime)
    for c in claims:
        print(f"{c.id}: {c.verdict}")
    print("wrote " + ", ".join(str(Path(args.out) / name) for name in OUTPUTS))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
