"""Figure 4 of arXiv 2403.18699 (Sec. 3.2, Lemma 2): gradient descent on L_class ends at rank k - 1, not at a
simplex ETF; the work is in :mod:`simulations.lclass.figure4`.

Run: ``python simulations/dimensional_collapse.py [--ks 10 30] [--steps N] [--trials T] [--out DIR]`` or
``python -m simulations.dimensional_collapse``. Defaults: k = 10 and 30, m = 100, eta = 0.2 (Appendix D
units; the paper does not state its rate, see :mod:`simulations.lclass.figure4`), 300 steps, 10 trials,
the spectrum recorded every 5 steps.

Writes ``figure4.csv``, ``figure4_claims.csv`` (the claim records, :mod:`simulations.lclass.claims`) and
``figure4.png`` into ``--out`` (default ``paper_figures``), staged and renamed into place together
(:func:`clop.util.io.staged_outputs`): an interrupted run leaves the previous run's files as they were. Prints the statistics per k. Every flag, ``--out`` and the memory the run needs are
checked before any compute (exit status 2 and a message naming the flag).
"""

from __future__ import annotations

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
from simulations.lclass.claims import figure4_claims
from simulations.lclass.figure4 import draw, figure4_table, final_stats
from simulations.lclass.memory import simulate_bytes

OUTPUTS = ("figure4.csv", "figure4_claims.csv", "figure4.png")
"""The files the script writes into --out, replaced together."""

__all__ = ["build_parser", "main"]


def _memory(args: argparse.Namespace, dev: torch.device) -> tuple[int, int, str]:
    """Estimated (host, device) bytes: the largest k's simulation plus the long table of every k."""
    host = device = 0
    rows = 0
    for k in args.ks:
        h, d = simulate_bytes(k, args.m, 1, args.trials, args.steps, args.record_every, ("singular_values", "l_class"), dev)
        host, device = max(host, h), max(device, d)
        rows += args.trials * ((args.steps // args.record_every + 2) * min(k, args.m) + k * (k - 1) // 2 + 1)
    host += rows * 8 * 8 * 3  # eight columns; the per-k frames, their concatenation and the index grids
    settings = (f"--ks {min(args.ks)}..{max(args.ks)} ({len(args.ks)} values), --m {args.m}, --trials {args.trials}, "
                f"--steps {args.steps}, --record-every {args.record_every}")
    return host, device, settings


def build_parser() -> argparse.ArgumentParser:
    """The command line: the figure's settings and the flags of :func:`simulations.cli.add_run_args`."""
    parser = argparse.ArgumentParser(description="Figure 4 of the CLOP paper (dimensional collapse under L_class).")
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 30], help="k values (default 10 30)")
    parser.add_argument("--m", type=int, default=100, help="embedding dimension (default 100; needs m >= k)")
    parser.add_argument("--eta", type=float, default=0.2, help="learning rate, Appendix D units (default 0.2, stable)")
    parser.add_argument("--steps", type=int, default=300, help="gradient steps (default 300: the mean is at round-off by then)")
    parser.add_argument("--trials", type=int, default=10, help="independent starts per k (default 10)")
    parser.add_argument("--record-every", type=int, default=5, help="record the spectrum every this many steps (default 5)")
    add_run_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_int(parser, "--m", args.m, 3)
    check_unique(parser, "--ks", args.ks)
    if any(k < 3 or k > args.m for k in args.ks):
        parser.error(f"--ks must lie in [3, m={args.m}]; got {args.ks}")
    check_positive_float(parser, "--eta", args.eta)
    check_int(parser, "--steps", args.steps, 1)
    check_int(parser, "--trials", args.trials, 1)
    check_int(parser, "--record-every", args.record_every, 1)
    return run_script(parser, args, _run, memory=_memory, outputs=OUTPUTS)


def _run(args: argparse.Namespace, dev: torch.device, out: Path) -> int:
    start = time.perf_counter()
    df = figure4_table(args.ks, m=args.m, eta=args.eta, steps=args.steps, trials=args.trials, record_every=args.record_every,
             seed=args.seed, device=dev)
    claims = figure4_claims(df)
    with staged_outputs(out) as stage:  # the CSVs and the figure drawn from them replace the old ones together
        df.to_csv(stage("figure4.csv"), index=False)
        stage("figure4_claims.csv").write_text(claims_csv(claims))
        draw(df, stage("figure4.png"))
    png = out / "figure4.png"
    stats = final_stats(df)
    print(f"Figure 4: eta={args.eta}, m={args.m}, {args.steps} steps, {args.trials} trials per k")
    print(stats[["rank_min", "rank_max", "max_last_sv_ratio", "etf_cosine", "cos_mean", "cos_std", "cos_min",
                 "cos_max", "max_abs_lclass_plus_k"]].to_string(float_format=lambda v: f"{v:.4g}"))
    print(f"wrote {png}, {out / 'figure4.csv'}, {out / 'figure4_claims.csv'} in {time.perf_counter() - start:.1f} s on {dev}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
