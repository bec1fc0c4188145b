"""``python -m training.linear_eval --run RUN_DIR [--all-labels] [--results CSV]``: the linear probe of a
pre-trained run (CLOP paper, arXiv 2403.18699, Sec. 5): top-1 / top-5 into ``RUN/linear_eval.json`` and one row
of the results CSV.

The flags and their defaults are the fields of :class:`training.config.ProbeConfig`; the probe is
:func:`training.eval.linear.linear_eval`. Exit status: 0 done, 2 a refused setting, run or results file (one
line on stderr), 1 when the result was printed but a file could not be written, 130 after Ctrl-C (one line,
no traceback: :func:`clop.util.cli.run_main`).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from clop.util.cli import run_main
from clop.util.lock import FolderLockedError
from training.config import ProbeConfig, probe_parser
from training.engine.rundir import PROBE_RESULT
from training.eval.linear import ResultNotSavedError, linear_eval


def main(argv: Sequence[str] | None = None) -> int:
    args = probe_parser().parse_args(argv)
    cfg = ProbeConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ProbeConfig)})
    try:
        linear_eval(cfg, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, FolderLockedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ResultNotSavedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"saved in {Path(cfg.run) / PROBE_RESULT}; appended to {cfg.resolved().results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
