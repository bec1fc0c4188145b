"""Regenerate every paper figure, table and report this suite has into paper_figures/.

Run: python reproduce.py [--out DIR] [--device DEVICE] [--only NAME ...] [--report-only]
The default runs every step but the long ones (:data:`LONG_STEPS`: the study behind Table 5's seeds, Sec. 5 in
miniature on digits, the ladder from Theorem 1 to training, SSEM and CPLearn; their costs are in the README);
``--only NAME`` runs any step, long ones included. The last step writes ``REPORT.md`` from every study's claim
files (``*claims.csv``); ``--report-only`` runs only that step, from the files already in ``--out``.
Each step is one of the suite's own scripts, run in this process. A step fails when it returns a
non-zero status, raises, or exits (an argument error is a SystemExit with status 2); a failed step is
reported and the later steps still run. A summary of every step (ok / FAILED with its status, time) is
printed at the end, and the exit status is 1 if any step failed. Ctrl-C (KeyboardInterrupt) stops
everything, after printing the summary of the steps that finished; the exit status is then 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback

from clop.util.cli import check_device
from clop.util.io import check_output_dir

# (name, module, argv builder) — each module exposes main(argv).
STEPS = [
    ("theory", "theory.__main__", lambda out, dev: ["--markdown", f"{out}/theory_report.md", "--claims",
                                                    f"{out}/theory_claims.csv", "--figure", f"{out}/theorem1_bound.png"]),
    ("figure3", "simulations.lr_bound", lambda out, dev: ["--out", out] + (["--device", dev] if dev else [])),
    ("figure4", "simulations.dimensional_collapse", lambda out, dev: ["--out", out] + (["--device", dev] if dev else [])),
    ("table5", "simulations.synthetic_ffn", lambda out, dev: ["--out", out] + (["--device", dev] if dev else [])),
    # The same experiment on classes whose lines meet at the origin (raw-input KNN ~62 %), where the
    # baselines do not saturate; see paper_figures/table5.md for why both regimes are reported.
    ("table5-overlap", "simulations.synthetic_ffn",
     lambda out, dev: ["--magnitudes", "normal", "--min-angle", "0", "--out", f"{out}/table5_overlap"]
     + (["--device", dev] if dev else [])),
    # The study behind table5's default number of seeds: 400 seeds x 8 configurations x 2 regimes.
    ("table5-seeds", "simulations.table5_seeds", lambda out, dev: ["--out", out] + (["--device", dev] if dev else [])),
    # Sec. 5 in miniature on 8x8 digits (834 runs in runs/practice; resumable).
    ("practice", "training.practice.cli", lambda out, dev: ["--out", f"{out}/practice"] + (["--device", dev] if dev else [])),
]
# The ladder's rung 3: the digits CNN with and without BatchNorm (168 runs in runs/ladder_rung3; resumable); it writes
# its row of the ladder, which the ladder step below folds into ladder.md and figure (c).
STEPS.append(("ladder-rung3", "training.rung3", lambda out, dev: ["--out", f"{out}/ladder/rung3", "--ladder-rows",
                                                                   f"{out}/ladder/ladder_rows_rung3.csv"]
              + (["--device", dev] if dev else [])))
# The ladder from Theorem 1 to training (rungs 0-2); rung 0 reads figure3_max_lr.csv.
STEPS.append(("ladder", "simulations.ladder", lambda out, dev: ["--out", f"{out}/ladder"] + (["--device", dev] if dev else [])))
# The other remedies: SSEM's derived class-collapse boundary over an (alpha, tau) grid of free embeddings, and
# CPLearn's four collapse claims on the 3-D data of Table 5.
# Both run on the CPU (small float64 problems): --device does not reach them.
STEPS.append(("ssem", "simulations.ssem_grid", lambda out, dev: ["--out", f"{out}/ssem"]))
STEPS.append(("cplearn", "simulations.cplearn_synthetic", lambda out, dev: ["--out", f"{out}/cplearn"]))
STEPS.append(("report", "clop.claims_report", lambda out, dev: ["--root", out]))  # last: reads every study's claims
LONG_STEPS = {"table5-seeds", "practice", "ladder-rung3", "ladder", "ssem", "cplearn"}  # not in the default run
REPORT_STEPS = {"report"}  # what --report-only runs: rebuilt from the claim files already in --out


def _exit_status(exc: SystemExit) -> int:
    """The status a SystemExit carries: None and 0 are success, an int is itself, anything else (a message) is 1."""
    if exc.code is None:
        return 0
    return exc.code if isinstance(exc.code, int) else 1


def _run_step(module: str, argv: list[str]) -> int:
    """Run one step's ``main(argv)`` and return its exit status; only KeyboardInterrupt escapes."""
    try:
        rc = importlib.import_module(module).main(argv)
    except KeyboardInterrupt:
        raise
    except SystemExit as exc:  # argparse errors (status 2) and explicit exits
        rc = _exit_status(exc)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    except BaseException:  # any other failure: report it and go on with the other steps
        traceback.print_exc()
        rc = 1
    return 0 if rc is None else int(rc) if isinstance(rc, int) else 1


def _summary(results: list[tuple[str, int, float]], interrupted: str | None) -> str:
    lines = ["== summary"]
    for name, rc, seconds in results:
        lines.append(f"   {name:<16} {'ok' if rc == 0 else f'FAILED (status {rc})':<20} {seconds:8.1f} s")
    if interrupted:
        lines.append(f"   {interrupted:<16} {'INTERRUPTED':<20}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="paper_figures", help="output directory (default: paper_figures)")
    parser.add_argument("--device", default=None, help="torch device for the simulations (default: cuda if present, else cpu)")
    parser.add_argument("--only", nargs="+", choices=[s[0] for s in STEPS],
                        help=f"run only these steps (default: all but {', '.join(sorted(LONG_STEPS))})")
    parser.add_argument("--report-only", action="store_true",
                        help="only rebuild REPORT.md from the claim files already in --out (seconds)")
    args = parser.parse_args(argv)
    if args.report_only and args.only:
        parser.error("--report-only and --only exclude each other; pass one of them")
    try:  # settings every step shares, checked once before the first step
        check_device(args.device, "--device")
        check_output_dir(args.out, "--out")
    except ValueError as exc:
        parser.error(str(exc))
    results: list[tuple[str, int, float]] = []
    current = None
    try:
        for name, module, build in STEPS:
            if args.report_only:
                if name not in REPORT_STEPS:
                    continue
            elif (args.only and name not in args.only) or (not args.only and name in LONG_STEPS):
                continue
            current = name
            start = time.perf_counter()
            step_argv = build(args.out, args.device)
            print(f"== {name}: python -m {module.removesuffix('.__main__')} {' '.join(step_argv)}", flush=True)
            rc = _run_step(module, step_argv)
            results.append((name, rc, time.perf_counter() - start))
            current = None
            print(f"== {name}: {'ok' if not rc else 'FAILED'} in {results[-1][2]:.1f} s", flush=True)
    except KeyboardInterrupt:
        print(_summary(results, current), flush=True)
        print(f"interrupted during step {current}" if current else "interrupted", file=sys.stderr)
        return 130
    print(_summary(results, None), flush=True)
    failed = [name for name, rc, _ in results if rc]
    if failed:
        print(f"failed steps: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
