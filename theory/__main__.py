"""``python -m theory``: run every theory check of the CLOP paper and print the verdicts.

Options: ``--json`` (JSON list of {id, claim, method, verdict, detail}), ``--markdown PATH`` (report with
the exact expressions), ``--claims PATH`` (the suite's claim records, :mod:`clop.claims`), ``--figure PATH``
(Theorem 1 bound vs k; CSV theorem1_bound.csv written beside it; :mod:`theory.figure`), ``--fast`` (smaller
Monte Carlo).  See :mod:`theory.report`.

Every output path is checked before any computation (a folder, an unwritable folder or a figure suffix
matplotlib cannot write ends the command with exit status 2 and a message naming the flag). Every file
is written to a temporary file beside its final name and renamed into place; the figure and its CSV are
put in place together, so an interrupted run leaves the previous outputs as they were.
"""

from __future__ import annotations

import argparse
import sys
import time

from clop.util.cli import run_main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m theory", description="Verdicts on the CLOP paper's theory claims.")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of the table")
    parser.add_argument("--markdown", metavar="PATH", help="write a Markdown report to PATH")
    parser.add_argument("--figure", metavar="PATH", help="write the Theorem 1 bound figure to PATH (CSV beside it)")
    parser.add_argument("--claims", metavar="PATH", help="write the claims as the suite's claim records (CSV) to PATH")
    parser.add_argument("--fast", action="store_true", help="smaller Monte Carlo and Jacobian checks")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = parser.parse_args(argv)

    from clop.claims import claims_csv
    from clop.util.io import atomic_write_text, check_output_file
    from theory import figure, report

    try:  # before any computation
        if args.markdown is not None:
            check_output_file(args.markdown, "--markdown")
        if args.figure is not None:
            check_output_file(args.figure, "--figure")
            figure.figure_format(args.figure, "--figure")
        if args.claims is not None:
            check_output_file(args.claims, "--claims")
    except ValueError as exc:
        parser.error(str(exc))
    start = time.perf_counter()
    claims = report.all_claims(fast=args.fast, progress=not args.no_progress)
    if args.figure is not None:
        csv_path = figure.write_figure(args.figure)
        print(f"wrote {args.figure} and {csv_path}", file=sys.stderr)
    elapsed = time.perf_counter() - start
    texts = {}  # rendered before either is written, so the two renames follow each other at once
    if args.markdown is not None:
        texts[args.markdown] = report.to_markdown(claims, runtime_s=elapsed)
    if args.claims is not None:
        texts[args.claims] = claims_csv(report.records(claims))
    for path, text in texts.items():
        atomic_write_text(path, text)
        print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(report.to_json(claims))
    else:
        print(report.format_table(claims))
        print(f"\n{len(claims)} claims checked in {elapsed:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
