"""Where a point of a sweep stands, read from its run directory: done, trained, partial or new."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from training.engine.rundir import CHECKPOINT, CONFIG, METRICS, PROBE_RESULT, RUN_FILES

__all__ = ["STATES", "status"]

STATES = ("done", "trained", "partial", "new")


def _finished_training(run: Path) -> bool:
    """RUN/metrics.csv reaches the epochs of RUN/config.json and RUN/checkpoint.pt is not older than it.

    The pre-training appends an epoch's metrics row, then writes that epoch's checkpoint; a run killed
    between the two has every row but an older checkpoint, and is not finished. (The checkpoint itself is
    not opened: a ResNet-50 checkpoint with its optimiser state is hundreds of MB.)
    """
    if not (run / CHECKPOINT).is_file() or not (run / METRICS).is_file():
        return False
    try:
        if (run / CHECKPOINT).stat().st_mtime_ns < (run / METRICS).stat().st_mtime_ns:
            return False
        epochs = int(json.loads((run / CONFIG).read_text())["epochs"])
        with open(run / METRICS, newline="") as f:
            rows = list(csv.DictReader(f))
        last = max((int(float(r["epoch"])) for r in rows), default=0) if rows and "epoch" in rows[0] else len(rows)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return last >= epochs


def status(run_dir: str | Path) -> str:
    """``"done"`` (probe result written), ``"trained"`` (pre-training finished, no probe yet), ``"partial"``
    (some pre-training files, not finished) or ``"new"`` (none)."""
    run = Path(run_dir)
    if (run / PROBE_RESULT).is_file():
        return "done"
    if _finished_training(run):
        return "trained"
    if any((run / f).exists() for f in RUN_FILES):
        return "partial"
    return "new"
