"""The ladder from Theorem 1 to training: on which model does the critical learning rate stop predicting collapse?

Paper: CLOP, arXiv 2403.18699, Sec. 3.1 (Theorem 1, Lemma 1, Figure 3) and Appendices C-D. Rung 0 is Figure 3
(L_class on free class embeddings, ``paper_figures/figure3_max_lr.csv``, read here); rung 1 trains free
instance embeddings with the normalised step (:mod:`simulations.rungs.free`); rung 2 a linear encoder and a
2-layer MLP on fixed inputs with GD, momentum and LARS (:mod:`simulations.rungs.encoder`). On every rung the
study predicts the critical step by linearisation and measures, by bisection, the steps at which runs end in
complete collapse and at which they fail to train (:mod:`simulations.rungs.study`).

Writes into ``--out`` (default ``paper_figures/ladder``): the CSVs of every part, ``parts.json`` (which parts
are done, with which settings: a relaunch skips them), ``ladder_rows.csv`` (one row per rung and loss for the
ladder figure; later rungs add their own ``ladder_rows_*.csv``), ``claims.csv`` (:mod:`clop.claims`),
``ladder.md`` and the figures ``ladder_a_critical_vs_k.png``, ``ladder_b_phase.png``, ``ladder_c_ladder.png``.

Run: ``python simulations/ladder.py [--quick] [--out DIR] [--seed S] [--device cpu]`` or
``python -m simulations.ladder``. Every flag is checked before any compute (a bad value exits with status 2
and a one-line message naming the flag), the output folder is proven writable, and the memory of the largest
batch is estimated and compared with the machine's before the first run. ``--report-only`` redraws the report
and figures from existing CSVs.
"""

from __future__ import annotations

if __name__ == "__main__" and __package__ in (None, ""):  # run as a file: make the repo root importable
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import argparse
import os
import sys
import time
from pathlib import Path

from clop.claims import check_claims_owner
from clop.util.cli import HelpFormatter, parse_device
from clop.util.device import torch_threads
from clop.util.io import check_output_dir
from simulations.rungs.encoder import MODELS, OPTIMISERS
from simulations.rungs.figures import draw_figures
from simulations.rungs.problem import LOSSES
from simulations.rungs.report import write_report
from simulations.rungs.settings import check_settings, default_settings
from simulations.rungs.study import PARTS, estimate_bytes, run_study

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    p.add_argument("--out", default="paper_figures/ladder", help="output folder")
    p.add_argument("--device", default="cpu", help="torch device: cpu (the study is float64 and small) or cuda")
    p.add_argument("--seed", type=int, default=0, help="seed of every start, view noise and prototype draw")
    p.add_argument("--quick", action="store_true", help="the short version: smaller grids and horizons, every part")
    p.add_argument("--fresh", action="store_true", help="recompute the selected parts (all, or --only), ignoring finished ones")
    p.add_argument("--only", nargs="+", choices=list(PARTS), help="run only these parts (default: all)")
    p.add_argument("--report-only", action="store_true", help="only redraw the report and figures from the CSVs")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--steps", type=int, help="horizon of the rung-1 searches (default 1000; quick 300)")
    p.add_argument("--horizon-steps", type=int, help="the longer horizon that measures the excess (default 2000)")
    p.add_argument("--trials", type=int, help="trials of the base and rung-2 searches (default 6)")
    p.add_argument("--sweep-trials", type=int, help="trials of the k, tau and B sweeps (default 3)")
    p.add_argument("--resolution", type=float, help="final bracket hi/lo - 1 of every bisection (default 0.02)")
    p.add_argument("--k", type=int, help="classes of the base setting (default 4)")
    p.add_argument("--n", type=int, help="instances per class of the base setting (default 2)")
    p.add_argument("--d", type=int, help="dimension of the base setting (default 17)")
    p.add_argument("--losses", nargs="+", choices=LOSSES, help="losses of the base setting (default: all)")
    p.add_argument("--ks", nargs="+", type=int, help="k values of the k sweep (default 3 5 10 20)")
    p.add_argument("--k-losses", nargs="+", choices=LOSSES, help="losses of the k sweep")
    p.add_argument("--taus", nargs="+", type=float, help="temperatures of the tau sweep")
    p.add_argument("--tau-losses", nargs="+", choices=LOSSES, help="losses of the tau sweep")
    p.add_argument("--batches", nargs="+", type=int, help="minibatch sizes B (instances) of the B sweep")
    p.add_argument("--batch-losses", nargs="+", choices=LOSSES, help="losses of the B sweep")
    p.add_argument("--r2-losses", nargs="+", choices=LOSSES, help="losses of rung 2")
    p.add_argument("--r2-models", nargs="+", choices=MODELS, help="models of rung 2")
    p.add_argument("--r2-optimisers", nargs="+", choices=OPTIMISERS, help="optimisers of rung 2")
    p.add_argument("--r2-steps", type=int, help="horizon of the rung-2 searches (default 1000)")
    p.add_argument("--no-progress", action="store_true", help="print only the part headers")
    return p


_FIELDS = ("steps", "horizon_steps", "trials", "sweep_trials", "resolution", "k", "n", "d", "losses", "ks",
           "k_losses", "taus", "tau_losses", "batches", "batch_losses", "r2_losses", "r2_models", "r2_optimisers",
           "r2_steps")


def _available_bytes() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    device = parse_device(parser, args.device)
    if args.threads < 1:
        parser.error(f"--threads must be an integer >= 1; got {args.threads}")
    overrides = {f: (tuple(v) if isinstance(v, list) else v) for f in _FIELDS
                 if (v := getattr(args, f)) is not None}
    settings = default_settings(args.quick, seed=args.seed, **overrides)
    if args.report_only and not (Path(args.out) / "parts.json").is_file():
        parser.error(f"--report-only: {args.out!r} holds no ladder study (no parts.json); run without --report-only "
                     "first")
    try:
        check_settings(settings)
        out = check_output_dir(args.out, "--out")
        check_claims_owner(out, lambda i: i.startswith("LAD-") and not i.startswith(("LAD-R3-", "LAD-R4-")),
                           "ladder.py")  # rungs 3 and 4 write their own claims.csv in folders of their own
    except ValueError as exc:
        parser.error(str(exc))
    need = estimate_bytes(settings)
    avail = _available_bytes()
    if avail is not None and need > avail:
        parser.error(f"the study needs about {need / 2**30:.1f} GiB of memory and {avail / 2**30:.1f} GiB are free; "
                     "lower --trials, --ks or --d")
    if device.type != "cpu":
        print(f"note: --device {device} is accepted, but the ladder's runs are float64 and small; they run on the CPU",
              file=sys.stderr)
    start = time.perf_counter()
    say = (lambda msg: None) if args.no_progress else (lambda msg: print(msg, flush=True))
    with torch_threads(args.threads):
        if not args.report_only:
            run_study(settings, out, fresh=args.fresh, only=tuple(args.only) if args.only else None,
                      progress=lambda msg: print(msg, flush=True) if not msg.startswith("  ") else say(msg))
        write_report(out, settings)
        draw_figures(out)
    print(f"ladder: wrote {out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
