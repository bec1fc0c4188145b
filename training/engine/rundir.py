"""A run folder of training.pretrain: its files, its checkpoints and its growing CSV logs.

* **Files** (:data:`RUN_FILES`): ``config.json``, ``labeled_indices.npy``, ``metrics.csv``, ``geometry.csv``,
  ``checkpoint.pt``, ``checkpoint.prev.pt``, ``last_good.pt``, ``train.log``, ``linear_eval.json``
  (docs/training.md describes each). Every one is written through a temporary file in the folder and an atomic
  rename (:mod:`clop.util.io`); only ``train.log`` is appended to. The folder's lock is :mod:`clop.util.lock`.
* **Checkpoints** (:class:`Checkpoints`): ``checkpoint.pt`` and, from the second save on,
  ``checkpoint.prev.pt``, the one before it. A checkpoint that cannot be loaded (truncated, empty, not a
  checkpoint) raises :class:`CheckpointError` naming the file and what is wrong with it;
  :func:`load_checkpoint` then falls back to the previous checkpoint, and says so.
* **CSV logs** (:class:`CsvLog`): ``metrics.csv`` (one row per epoch) and ``geometry.csv`` (one row per logged
  interval) grow by whole rows, each addition an atomic rewrite that keeps the earlier lines byte for byte; a
  resumed run drops the rows after its checkpoint (:meth:`CsvLog.keep_until`) and redoes them. A file that is
  not such a log raises ValueError naming it (:meth:`CsvLog.keys`).
* **Untrusted content**: a checkpoint is read with ``torch.load(weights_only=True)``, which builds tensors,
  numbers, strings and containers only, so a crafted file cannot run code (:func:`read_checkpoint`); a state
  that does not fit the network is named, not dumped (:func:`load_state`). ``train.log`` is never opened
  through a symbolic link (:class:`RunLogHandler`).
* **The folder**: :func:`missing_folders` and :func:`remove_empty_folders` let a run that stops before its first
  write leave no folder behind; :func:`remove_stale_files` removes the temporaries a killed run left (called
  by the owner of the folder's lock).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import pickle
import re
import shutil
import uuid
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clop.util.io import atomic_path, fsync_dir, remove_stale_temporaries

__all__ = [
    "CHECKPOINT", "PREV_CHECKPOINT", "LAST_GOOD", "METRICS", "CONFIG", "LABELED", "PROBE_RESULT", "LOG", "GEOMETRY",
    "RUN_FILES", "CHECKPOINT_KEYS", "CheckpointError", "read_checkpoint", "load_checkpoint", "load_state",
    "Checkpoints", "save_state", "remove_run_files", "remove_stale_files", "missing_folders", "remove_empty_folders",
    "RunLogHandler", "CsvLog",
]

CHECKPOINT = "checkpoint.pt"
PREV_CHECKPOINT = "checkpoint.prev.pt"
LAST_GOOD = "last_good.pt"
METRICS = "metrics.csv"
CONFIG = "config.json"
LABELED = "labeled_indices.npy"
PROBE_RESULT = "linear_eval.json"
"""Written by training.linear_eval into the run directory."""
LOG = "train.log"
GEOMETRY = "geometry.csv"
"""The held-out class means' Appendix D fits (training.eval.evaluate.GeometryLog)."""
RUN_FILES = (CONFIG, LABELED, METRICS, CHECKPOINT, PREV_CHECKPOINT, LAST_GOOD, LOG, PROBE_RESULT, GEOMETRY)
"""The files of a run (the lock is not one of them: it belongs to the process using the folder)."""
CHECKPOINT_KEYS = ("model", "objective", "optimizer", "scheduler", "epoch", "step_in_epoch", "sums", "config")


class CheckpointError(ValueError):
    """A checkpoint file cannot be loaded; the message names it and says what is wrong."""


# ----------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------


def read_checkpoint(path: Path) -> dict:
    """The checkpoint at ``path`` on the CPU; CheckpointError naming the file if it cannot be loaded."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is missing")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} cannot be loaded: it is empty (0 bytes)")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            zip_start = f.read(2) == b"PK"
        what = "truncated or damaged" if zip_start else "not a torch checkpoint (not a zip archive)"
        raise CheckpointError(f"checkpoint {path} cannot be loaded: it is {what} ({size} bytes)")
    try:  # tensors, numbers, strings and containers only: a crafted file cannot run code while it is read
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(
            f"checkpoint {path} is refused: it holds objects other than tensors, numbers, strings and containers"
            f"{what}, which a checkpoint of training.pretrain never does; it was not loaded (nothing in it ran)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any failure to read the file is reported the same way
        reason = str(exc).splitlines()[0][:160] if str(exc) else ""
        raise CheckpointError(
            f"checkpoint {path} cannot be loaded: it is truncated or damaged ({type(exc).__name__}: {reason})"
        ) from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {path} is not a checkpoint of training.pretrain (it lacks {missing})")
    return ckpt



def load_state(module: torch.nn.Module, state: object, path: Path, what: str) -> None:
    """``module.load_state_dict(state)``; CheckpointError naming ``path`` and summing up what does not fit (a
    checkpoint of another architecture or head) instead of torch's list of every tensor."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, KeyError, AttributeError) as exc:
        own = module.state_dict()
        given = state if isinstance(state, dict) else {}
        missing = [k for k in own if k not in given]
        unexpected = [k for k in given if k not in own]
        shapes = [k for k in own if k in given and getattr(given[k], "shape", None) != own[k].shape]
        parts = [f"{len(v)} {label} (e.g. {v[0]})" for v, label in
                 ((missing, "missing"), (unexpected, "unexpected"), (shapes, "of another shape")) if v]
        detail = "; ".join(parts) or str(exc).splitlines()[0][:160]
        raise CheckpointError(
            f"checkpoint {path} does not fit the {what} of the run's settings ({detail}): it was written by a run "
            "with another --arch, --hidden-dim or --projection-dim, or copied from another run") from None


_REPAIR = {  # purpose: (what to do when no checkpoint loads, briefly when the previous one fails too, the verb)
    "resume": ("pass --overwrite to start the run again", "pass --overwrite to start the run again", "resuming from"),
    "probe": ("train the run again (python -m training.pretrain --out {run} --overwrite, with the run's settings)",
              "train the run again with --overwrite", "using"),
}


def load_checkpoint(run: Path, purpose: str = "resume", usable: Callable[[dict], bool] | None = None
                    ) -> tuple[dict | None, str | None]:
    """The checkpoint of ``run`` and a note when it is the previous one; (None, None) when neither exists.

    ``checkpoint.pt`` is read first. When it does not load, ``checkpoint.prev.pt`` stands in for it if it loads
    and ``usable(ckpt)`` holds (default: any). Otherwise CheckpointError naming both files and how to repair
    the run; ``purpose`` ("resume": training.pretrain --resume, "probe": training.linear_eval) words the
    remedies and the note.
    """
    again, again_short, verb = _REPAIR[purpose]
    current, previous = run / CHECKPOINT, run / PREV_CHECKPOINT
    if not current.exists() and not previous.exists():
        return None, None
    try:
        return read_checkpoint(current), None
    except CheckpointError as exc:
        problem = str(exc)
    if not previous.exists():
        raise CheckpointError(f"{problem}, and there is no {PREV_CHECKPOINT} to fall back on; {again.format(run=run)}")
    try:
        ckpt = read_checkpoint(previous)
    except CheckpointError as exc:
        raise CheckpointError(f"{problem}, and {exc}; {again_short}") from None
    at = f"epoch {ckpt['epoch']}, step {ckpt['step_in_epoch']}"
    if usable is not None and not usable(ckpt):
        raise CheckpointError(
            f"{problem}; the previous checkpoint {previous} holds {at}, not the finished run: resume the run (python "
            f"-m training.pretrain --out {run} --resume, with the run's settings; it falls back to {PREV_CHECKPOINT} "
            "and trains the rest), then probe it")
    return ckpt, f"{problem}; {verb} the previous checkpoint {previous} ({at}) instead"


def _keep_as_previous(current: Path, previous: Path) -> None:
    """Make ``previous`` a copy of ``current`` atomically; ``current`` stays in place throughout."""
    tmp = previous.with_name(f".{previous.name}.{uuid.uuid4().hex}.tmp")
    try:
        os.link(current, tmp)  # a second name for the same file: instant, no extra disk space
        os.replace(tmp, previous)
    except OSError:
        tmp.unlink(missing_ok=True)
        with atomic_path(previous) as copy:  # file systems without hard links
            shutil.copyfile(current, copy)


class Checkpoints:
    """Saves ``RUN/checkpoint.pt``, keeping the one it replaces as ``RUN/checkpoint.prev.pt``.

    ``current_good``: whether the checkpoint now in place loads; one that does not (the run resumed from
    the previous one) is replaced without being kept, so the good previous checkpoint survives.
    """

    def __init__(self, run: Path, current_good: bool = True) -> None:
        self.run, self.current_good = run, current_good

    def save(self, state: dict[str, Any]) -> None:
        current = self.run / CHECKPOINT
        with atomic_path(current) as tmp:
            torch.save(state, tmp)
            if self.current_good and current.exists():
                _keep_as_previous(current, self.run / PREV_CHECKPOINT)
        self.current_good = True


def save_state(state: dict[str, Any], path: Path) -> None:
    """torch.save through a temporary file and an atomic rename (e.g. ``last_good.pt``)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


# ----------------------------------------------------------------------------------------------------
# Run files
# ----------------------------------------------------------------------------------------------------


def remove_run_files(run: Path, keep: Sequence[str] = ()) -> None:
    """Delete the files of the run in ``run`` but ``keep`` (at the moment a new run there writes its first file)."""
    for name in RUN_FILES:
        if name not in keep:
            (run / name).unlink(missing_ok=True)
    fsync_dir(run)


_PREV_LINK = re.compile(rf"^\.{re.escape(PREV_CHECKPOINT)}\.[0-9a-f]{{32}}\.tmp$")
"""The temporary second name of a checkpoint on its way to becoming the previous one (:func:`_keep_as_previous`)."""


def remove_stale_files(run: Path) -> list[Path]:
    """Remove the temporary files that a killed run or probe left in ``run`` (those of :mod:`clop.util.io` for the
    run's files, and the links of :func:`_keep_as_previous`); returns them. Only under the folder's lock: a live
    writer's temporaries look the same."""
    removed = remove_stale_temporaries(run, RUN_FILES)
    for entry in run.iterdir() if run.is_dir() else ():
        if _PREV_LINK.match(entry.name) and entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def missing_folders(path: Path) -> list[Path]:
    """The folders of ``path`` (itself included) that do not exist yet, deepest first."""
    missing, p = [], Path(path)
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    return missing


def remove_empty_folders(folders: Sequence[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty: what a run created and never wrote into."""
    for d in folders:
        try:
            d.rmdir()
        except OSError:
            return


class RunLogHandler(logging.FileHandler):
    """``RUN/train.log``, appended to, never through a symbolic link (``O_NOFOLLOW``): a link planted in the run
    folder cannot make the run write elsewhere. Opening it raises OSError naming the file when it is a link."""

    def _open(self):  # noqa: ANN202 - logging.FileHandler's hook
        try:
            fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0),
                         0o666)
        except OSError:
            if os.path.islink(self.baseFilename):
                raise ValueError(f"{self.baseFilename} is a symbolic link (to {os.readlink(self.baseFilename)!r}); a "
                                 "run writes its log only inside its folder: remove the link") from None
            raise
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)


# ----------------------------------------------------------------------------------------------------
# CSV logs
# ----------------------------------------------------------------------------------------------------


def _cell(value: Any, as_int: bool) -> str:
    """A value as metrics.csv and geometry.csv write it: integers and booleans as text, floats in their
    shortest round-trip form (``repr``), NaN and None as an empty cell."""
    if value is None:
        return ""
    if as_int:
        return str(int(value))
    if isinstance(value, (bool, int, str, np.bool_, np.integer)):
        return str(value)
    value = float(value)
    return "" if math.isnan(value) else repr(value)


def _line(cells: Iterable[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(list(cells))
    return buf.getvalue()


class CsvLog:
    """A CSV file of a run that grows by whole rows: ``RUN/metrics.csv`` and ``RUN/geometry.csv``.

    ``key``: the column by which :meth:`keep_until` cuts (``epoch`` for metrics.csv, ``step`` for geometry.csv);
    ``columns``: the header of a new file (default: the keys of the first row appended); ``int_columns``:
    columns written as integers whatever their type. Each :meth:`append` rewrites the file atomically as its
    old text plus the new lines, so the lines already there stay byte for byte; a row with columns the file
    lacks widens the header, the earlier rows getting empty cells there.
    """

    def __init__(self, path: Path, key: str, columns: Sequence[str] | None = None,
                 int_columns: Sequence[str] = ()) -> None:
        self.path, self.key = Path(path), key
        self.columns = None if columns is None else tuple(columns)
        self.int_columns = frozenset(int_columns)

    def _read(self) -> tuple[list[str], str, list[str]]:
        """(column names, header line, data lines) of the file, lines with their newline; empty when it is
        missing or empty."""
        text = self.path.read_text() if self.path.exists() else ""
        if not text:
            return [], "", []
        head, *rows = text.splitlines(keepends=True)
        return next(csv.reader([head])), head, rows

    def append(self, rows: Sequence[dict]) -> None:
        """Add ``rows`` (dicts by column) at the end of the file, created with its header if missing (also without
        rows, when the columns are known)."""
        if not rows and (self.path.exists() or self.columns is None):
            return
        header, head, old = self._read()
        if not header:
            header = list(self.columns or rows[0])
            head = _line(header)
        new = [c for c in dict.fromkeys(c for row in rows for c in row) if c not in header]
        if new:
            old = [_line([*cells, *[""] * len(new)]) for cells in csv.reader(old)]
            header = [*header, *new]
            head = _line(header)
        lines = [_line(_cell(row.get(c), c in self.int_columns) for c in header) for row in rows]
        with atomic_path(self.path) as tmp:
            tmp.write_text(head + "".join(old) + "".join(lines))

    def keys(self) -> list[float]:
        """The :attr:`key` of every row (empty for a missing or empty file); ValueError naming the file when it is
        not a log of this kind (no such column, a value that is not a number)."""
        try:
            header, _, rows = self._read()
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise ValueError(f"{self.path} cannot be read: {exc}") from None
        if not header and not rows:
            return []
        if self.key not in header:
            raise ValueError(f"{self.path} is not a {self.path.name} of training.pretrain: its header {header[:6]} has "
                             f"no {self.key!r} column; restore the file, or pass --overwrite to start the run again")
        at, keys = header.index(self.key), []
        for n, cells in enumerate(csv.reader(rows), start=2):
            try:
                keys.append(float(cells[at]))
            except (IndexError, ValueError):
                raise ValueError(f"{self.path}, line {n}: {self.key!r} is not a number ({cells[:4]}...); restore the "
                                 "file, or pass --overwrite to start the run again") from None
        return keys

    def keep_until(self, value: float) -> None:
        """Drop the rows whose :attr:`key` is after ``value`` (a resumed run redoes them); the rows kept stay byte
        for byte as they were; atomic; nothing is written when no row goes. ValueError naming the file when it
        is not a log of this kind (:meth:`keys`)."""
        keys = self.keys()
        header, head, rows = self._read()
        if not rows:
            return
        keep = [line for line, key in zip(rows, keys) if key <= value]
        if len(keep) < len(rows):
            with atomic_path(self.path) as tmp:
                tmp.write_text(head + "".join(keep))
