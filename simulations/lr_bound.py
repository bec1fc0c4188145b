"""Figure 3 of arXiv 2403.18699 (Sec. 3.1, Theorem 1): the largest learning rate that avoids complete
collapse of L_class, per k, against the Theorem 1 bound; the work is in :mod:`simulations.lclass.figure3`.

Run: ``python simulations/lr_bound.py [--ks 3 4 ...] [--steps N] [--out DIR]`` or
``python -m simulations.lr_bound``. Defaults: k = 3..100, m = 100, 5 trials (as in the paper), 2000 steps
per run, resolution 1e-3 in eta; spectra at k = min(30, m) over 1000 steps. A horizon of ``--steps`` N
measures a threshold slightly above the infinite-horizon one (by about K/(s N), K ~ 7-9,
s = (k-2)^2/(k(k-1)): :mod:`simulations.lclass.figure3`); doubling N halves that excess.

Writes into ``--out`` (default ``paper_figures``): ``figure3.png``, ``figure3.pdf``, ``figure3_max_lr.csv``,
``figure3_spectra.csv`` (columns in :mod:`simulations.lclass.figure3`) and ``figure3_claims.csv`` (the claim
records, :mod:`simulations.lclass.claims`), staged and renamed into place
together once all are complete (:func:`clop.util.io.staged_outputs`), so an interrupted run leaves the
previous run's files as they were; prints the first collapse step of each spectrum and a summary table.

Every flag is checked before any compute, and so are ``--out`` and the memory the run needs
(:mod:`simulations.lclass.memory`); a bad value ends the script with exit status 2 and a message naming
the flag.
"""

from __future__ import annotations

if __name__ == "__main__":  # a command-line run: no cyclic garbage collection while the libraries import
    import gc

    gc.disable()
if __name__ == "__main__" and __package__ in (None, ""):  # run as a file: make the repo root importable
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import argparse
import time
from pathlib import Path

import torch

from clop.claims import claims_csv
from clop.util.cli import check_int, check_positive_float, check_unique, run_main
from clop.util.io import staged_outputs
from simulations.cli import add_run_args, run_script
from simulations.lclass.claims import figure3_claims
from simulations.lclass.figure3 import (
    OUTPUTS,
    SEARCH_HI,
    SEARCH_LO,
    SPECTRA_ETAS,
    SPECTRA_K,
    draw,
    max_lr_table,
    spectra_table,
    summary,
)
from simulations.lclass.memory import search_bytes, simulate_bytes

__all__ = ["build_parser", "main"]


def _memory(args: argparse.Namespace, dev: torch.device) -> tuple[int, int, str]:
    """Estimated (host, device) bytes of the spectra run, its table, and the search."""
    sk = args.spectra_k
    sh, sd = simulate_bytes(sk, args.m, len(SPECTRA_ETAS), 1, args.spectra_steps, args.spectra_every,
                            ("singular_values", "mean_norm"), dev)
    rows = (args.spectra_steps // args.spectra_every + 2) * len(SPECTRA_ETAS) * min(sk, args.m)
    sh += rows * 6 * 8 * 4  # six columns, index grids and the CSV text buffer
    qh, qd = search_bytes(args.ks, args.m, args.trials, 7 if dev.type == "cuda" else 1, dev)
    settings = (f"--ks {min(args.ks)}..{max(args.ks)} ({len(args.ks)} values), --m {args.m}, --trials {args.trials}, "
                f"--spectra-steps {args.spectra_steps}, --spectra-every {args.spectra_every}")
    return sh + qh, max(sd, qd), settings


def build_parser() -> argparse.ArgumentParser:
    """The command line: the figure's settings and the flags of :func:`simulations.cli.add_run_args`."""
    parser = argparse.ArgumentParser(description="Figure 3 of the CLOP paper (Theorem 1 tightness).")
    parser.add_argument("--ks", type=int, nargs="+", default=list(range(3, 101)), help="k values (default 3..100; each in [3, m])")
    parser.add_argument("--m", type=int, default=100, help="embedding dimension (default 100; needs m >= every k)")
    parser.add_argument("--trials", type=int, default=5, help="trials per k (default 5, as in the paper)")
    parser.add_argument("--steps", type=int, default=2000, help="gradient steps per run (default 2000; see module doc)")
    parser.add_argument("--resolution", type=float, default=1e-3, help="search resolution in eta (default 1e-3)")
    parser.add_argument("--spectra-k", type=int, default=None, help=f"k of the spectra panels (default min({SPECTRA_K}, m))")
    parser.add_argument("--spectra-steps", type=int, default=1000, help="steps shown in the spectra panels (default 1000)")
    parser.add_argument("--spectra-every", type=int, default=20, help="record the spectrum every this many steps (default 20)")
    add_run_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_int(parser, "--m", args.m, 3)
    check_unique(parser, "--ks", args.ks)
    if any(k < 3 or k > args.m for k in args.ks):
        parser.error(f"--ks must all lie in [3, m={args.m}] (k unit vectors in R^m, m >= k); got {args.ks}")
    check_int(parser, "--trials", args.trials, 1)
    check_int(parser, "--steps", args.steps, 1)
    check_positive_float(parser, "--resolution", args.resolution, below=SEARCH_HI - SEARCH_LO,
                         why=f" (the width of the searched range eta in [{SEARCH_LO:g}, {SEARCH_HI:g}])")
    if args.spectra_k is None:
        args.spectra_k = min(SPECTRA_K, args.m)
    elif not 3 <= args.spectra_k <= args.m:
        parser.error(f"--spectra-k must lie in [3, m={args.m}]; got {args.spectra_k}")
    check_int(parser, "--spectra-steps", args.spectra_steps, 1)
    check_int(parser, "--spectra-every", args.spectra_every, 1)
    return run_script(parser, args, _run, memory=_memory, outputs=OUTPUTS)


def _run(args: argparse.Namespace, dev: torch.device, out: Path) -> int:
    start = time.perf_counter()
    sp = spectra_table(k=args.spectra_k, m=args.m, steps=args.spectra_steps, record_every=args.spectra_every,
                       seed=args.seed, device=dev)
    t_sp = time.perf_counter() - start
    ml = max_lr_table(args.ks, m=args.m, trials=args.trials, steps=args.steps, resolution=args.resolution,
                      seed=args.seed, device=dev)
    t_ml = time.perf_counter() - start - t_sp
    claims = figure3_claims(sp, ml)
    with staged_outputs(out) as stage:  # all five files replace the previous ones together, or none does
        sp.to_csv(stage("figure3_spectra.csv"), index=False)
        ml.to_csv(stage("figure3_max_lr.csv"), index=False)
        stage("figure3_claims.csv").write_text(claims_csv(claims))
        draw(sp, ml, stage("figure3.png"), stage("figure3.pdf"))
    total = time.perf_counter() - start
    cs = sp.attrs["collapse_step"]
    print(f"Figure 3 spectra (k={args.spectra_k}, m={args.m}, {args.spectra_steps} steps, seed {args.seed}): "
          "first complete-collapse step "
          + ", ".join(f"eta={e}: {c if c >= 0 else 'none'}" for e, c in zip(SPECTRA_ETAS, cs)))
    print(f"non-monotone brackets: {ml.attrs['non_monotone']}")
    print(summary(ml))
    print("claims: " + "; ".join(f"{c.id} {c.verdict}" for c in claims))
    print("wrote " + ", ".join(str(out / name) for name in OUTPUTS))
    print(f"time: spectra {t_sp:.1f} s, search {t_ml:.1f} s, total {total:.1f} s on {dev}")
    return 0


if __name__ == "__main__":
    gc.freeze()  # the imported libraries live as long as the process: keep their objects out of every collection
    gc.enable()
    raise SystemExit(run_main(main))
