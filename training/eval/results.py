"""The results CSV of linear probes: one row per probe of a run (:data:`RESULT_COLUMNS`), appended safely.

Before any compute, :func:`check_results` checks ``--results``: its folder must be writable, and an existing
file must be a CSV with exactly these columns (any other CSV is refused, never rewritten). :func:`append_result`
adds the row as one more line, so the existing rows stay byte for byte as they were; the file is replaced
atomically, under a short lock (``.results.csv.lock``, :class:`clop.util.lock.FolderLock`) against
concurrent probes, which also removes the temporaries of the file that a killed probe left.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

from clop.util.io import atomic_path, check_output_file, remove_stale_temporaries
from clop.util.lock import FolderLock
from training.config import RUN_SETTINGS
from training.eval.evaluate import GEOM_COLUMNS

__all__ = ["RESULT_COLUMNS", "check_results", "append_result"]

RESULT_COLUMNS = (
    "run", *RUN_SETTINGS, "trained_epochs", "probe_labels", "probe_train_images", "test_images", "probe_epochs",
    "probe_lr", "probe_weight_decay", "probe_seed", "top1", "top5", "stable_rank", "entropy_rank",
    "feature_stable_rank", "feature_entropy_rank", *GEOM_COLUMNS,
)
"""The columns of a results CSV, in the order they are written: the run, its settings
(:data:`training.config.RUN_SETTINGS`), the probe's settings, top-1 / top-5, the collapse metrics of the test
embeddings z and of the features h, and the class geometry of the test embeddings."""


def check_results(path: str | Path) -> list[str]:
    """Before any compute: ``--results`` can take a row. Returns the column order to write in.

    ``path``'s folder must be writable (it is created if missing); an existing ``path`` must be a CSV whose
    header holds exactly :data:`RESULT_COLUMNS` (in any order). ValueError naming --results otherwise.
    """
    path = check_output_file(path, "--results")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"--results {str(path)!r} is read-only; make it writable or give another --results")
    if not path.exists() or path.stat().st_size == 0:
        return list(RESULT_COLUMNS)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"--results {str(path)!r} cannot be read as a CSV: {exc}") from None
    unexpected = [c for c in header if c not in RESULT_COLUMNS]
    missing = [c for c in RESULT_COLUMNS if c not in header]
    if unexpected or missing or len(set(header)) != len(header):
        raise ValueError(
            f"--results {str(path)!r} is a CSV with other columns than training.linear_eval writes (unexpected: "
            f"{_some(unexpected)}; missing: {_some(missing)}"
            f"{'; repeated columns' if len(set(header)) != len(header) else ''}); it is left as it is: give another "
            "--results"
        )
    return header


def _some(names: list[str], n: int = 6) -> str:
    return str(names) if len(names) <= n else f"{names[:n]} and {len(names) - n} more"


def _csv_line(values: Sequence[object]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(["" if v is None else v for v in values])
    return buf.getvalue()


def append_result(path: str | Path, row: dict) -> None:
    """Append ``row`` to the results CSV ``path`` as one more line (a header first for a new file).

    The existing lines are copied unchanged; the file is replaced atomically, under a lock beside it that
    concurrent probes wait for. ValueError (see :func:`check_results`) if ``path`` is not a results CSV.
    """
    path = Path(path)
    with FolderLock.acquire(path.parent, "training.linear_eval", "--results", wait_s=120.0,
                                name=f".{path.name}.lock"):
        columns = check_results(path)
        remove_stale_temporaries(path.parent, [path.name])
        old = path.read_bytes() if path.exists() else b""
        if old and not old.endswith(b"\n"):
            old += b"\n"
        head = b"" if old else _csv_line(columns).encode()
        with atomic_path(path) as tmp:
            tmp.write_bytes(old + head + _csv_line([row[c] for c in columns]).encode())
