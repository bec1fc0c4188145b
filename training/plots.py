"""``python -m training.plots --results CSV [CSV ...] [--out paper_figures] [--prefix ""]``: Figures 6-9 and
Tables 1-3 of the CLOP paper (arXiv 2403.18699, Sec. 5) from linear-probe results, beside the paper's numbers.

Input: results CSVs written by ``python -m training.linear_eval`` (columns
:data:`training.sweeps.results.REQUIRED_COLUMNS` at least, top-1 / top-5 as fractions), concatenated; the
outputs and the rows each uses: :mod:`training.sweeps.report`. Missing required columns are an error (exit 2)
naming them, as are an empty path and an ``--out`` in use by another run; 1: an output could not be written (a
full disk; the previous outputs are intact); 130: Ctrl-C (one line, :func:`clop.util.cli.run_main`).
"""

from __future__ import annotations

import argparse
import sys

from clop.util.cli import run_main
from clop.util.lock import FolderLockedError
from training import paper_results as PR
from training.sweeps.report import make_all
from training.sweeps.results import AUG_NAMES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.plots",
        description="Figures 6-9 and Tables 1-3 of the CLOP paper (Sec. 5) from linear-probe results CSVs, "
                    "beside the paper's printed numbers.",
    )
    p.add_argument("--results", nargs="+", required=True, metavar="CSV",
                   help="results CSV(s) written by training.linear_eval (concatenated)")
    p.add_argument("--out", default="paper_figures", help="output directory (default paper_figures)")
    p.add_argument("--prefix", default="", help="prefix of every output file name, e.g. 'smoke_' (default none)")
    p.add_argument("--base-lr", type=float, default=PR.BASE_LR,
                   help="base_lr of the rows used for Figure 6 and Tables 1-3 (default 0.3: lr = 0.3 x batch/256)")
    p.add_argument("--augmentation", default="simclr", choices=sorted(AUG_NAMES),
                   help="augmentation of the rows used for Figures 6-7 and Tables 1-2 (default simclr)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        make_all(args.results, args.out, prefix=args.prefix, base_lr=args.base_lr, augmentation=args.augmentation)
    except (ValueError, FolderLockedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
