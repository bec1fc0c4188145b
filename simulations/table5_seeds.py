"""How many seeds does Table 5 need? The study behind synthetic_ffn.py's default (arXiv 2403.18699, Table 5).

The method is in :mod:`simulations.ffn.seeds`: a pool of ``--pool`` seeds per data regime, every loss with
and without CLOP; for each block size n of ``--sizes``, the verdicts of disjoint blocks of n seeds and of
``--bootstrap`` bootstrap samples of n seeds against the pool's; the recommended n.

Run: ``python simulations/table5_seeds.py [--pool 400] [--sizes 10 20 40 60 100 200] [--out paper_figures]``
or ``python -m simulations.table5_seeds``. Writes into ``--out``: table5_seed_study_runs_<regime>.csv (the
pool, saved after every configuration: a killed study resumes where it stopped, and a complete pool is
read back instead of trained again, so the report can be redrawn from the committed runs files),
table5_seed_study.csv (agreement per regime, loss, claim and n) and table5_seed_study.md (the two put in
place together). Every flag, ``--device`` and ``--out`` are checked before any training (exit status 2 and
a message naming the flag).
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
import torch

if __package__ in (None, ""):  # run as `python simulations/table5_seeds.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clop.util.alloc import retain_freed_memory  # noqa: E402
from clop.util.cli import check_int, check_unique, parse_device, run_main  # noqa: E402
from clop.util.device import torch_threads  # noqa: E402
from clop.util.io import staged_outputs  # noqa: E402
from simulations.cli import open_output  # noqa: E402
from simulations.ffn.data import REGIMES  # noqa: E402
from simulations.ffn.seeds import agreement, markdown, pool_results  # noqa: E402
from simulations.ffn.train import CHUNK  # noqa: E402

__all__ = ["build_parser", "main"]


OUTPUTS = ("table5_seed_study.csv", "table5_seed_study.md", *(f"table5_seed_study_runs_{r}.csv" for r in REGIMES))
"""The files the study writes into --out (the runs files as each regime's pool finishes)."""

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pool", type=int, default=400, help="seeds in the pool per regime (default 400)")
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 40, 60, 100, 200],
                   help="block sizes n to judge (default 10 20 40 60 100 200)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap samples per n (default 2000)")
    p.add_argument("--regimes", nargs="+", choices=tuple(REGIMES), default=list(REGIMES),
                   help="data regimes (default both)")
    p.add_argument("--out", default="paper_figures", help="output directory (default paper_figures/)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if present, else cpu)")
    p.add_argument("--chunk", type=int, default=None,
                   help=f"runs trained together (default {CHUNK} on a CPU, all on CUDA, as in synthetic_ffn.py)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress lines")
    return p


def _validate(p: argparse.ArgumentParser, args: argparse.Namespace) -> torch.device:
    """Every check that can fail before training: ranges, repeats, the device (the output folder is checked
    last, by :func:`main`)."""
    check_int(p, "--pool", args.pool, 2)
    check_unique(p, "--sizes", args.sizes)
    check_unique(p, "--regimes", args.regimes)
    if any(n < 2 or n > args.pool for n in args.sizes):
        p.error(f"--sizes must be integers in [2, --pool={args.pool}]; got {args.sizes}")
    check_int(p, "--bootstrap", args.bootstrap, 1)
    check_int(p, "--threads", args.threads, 1)
    if args.chunk is not None:
        check_int(p, "--chunk", args.chunk, 1)
    return parse_device(p, args.device)


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    device = _validate(p, args)
    retain_freed_memory()
    with ExitStack() as stack, torch_threads(args.threads):
        out = open_output(p, stack, args.out, OUTPUTS)
        tables = [
            pool_results(r, args.pool, out, device=device, chunk=args.chunk, show_progress=not args.no_progress)
            for r in args.regimes
        ]
        start = time.perf_counter()
        table = pd.concat([agreement(t, r, sorted(args.sizes), args.bootstrap) for t, r in zip(tables, args.regimes)],
                          ignore_index=True)
        text = markdown(table, args.pool, args.bootstrap, time.perf_counter() - start)
        with staged_outputs(out) as stage:
            table.to_csv(stage("table5_seed_study.csv"), index=False)
            stage("table5_seed_study.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    raise SystemExit(run_main(main))
