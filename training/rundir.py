"""A run folder of training.pretrain: its files, its lock, and its checkpoints.

* **Files**: :data:`RUN_FILES` (see training.pretrain's docstring). Every one is written through a
  temporary file in the folder and an atomic rename (:mod:`clop.util.io`); only ``train.log`` is appended to.
* **Lock** (:class:`RunLock`): ``RUN/run.lock`` holds the process id, host and start time of the run that
  owns the folder. It is created with ``O_CREAT | O_EXCL``, so of two runs started together exactly one
  gets it; the other is refused with a message naming the owner. A lock whose owner is no longer running
  (killed, machine rebooted) is stale and is taken over, saying so. Under torchrun only rank 0 takes it.
* **Checkpoints** (:class:`Checkpoints`): ``checkpoint.pt`` and, from the second save on,
  ``checkpoint.prev.pt``, the one before it. A checkpoint that cannot be loaded (truncated, empty, not a
  checkpoint) raises :class:`CheckpointError` naming the file and what is wrong with it;
  :func:`load_for_resume` then falls back to the previous checkpoint, and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
import uuid
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import torch

from clop.util.io import atomic_path, fsync_dir

try:  # serialises the take-over of stale locks; absent on Windows, where the take-over is unguarded
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

CHECKPOINT = "checkpoint.pt"
PREV_CHECKPOINT = "checkpoint.prev.pt"
LAST_GOOD = "last_good.pt"
METRICS = "metrics.csv"
CONFIG = "config.json"
LABELED = "labeled_indices.npy"
PROBE_RESULT = "linear_eval.json"
"""Written by training.linear_eval into the run directory."""
LOG = "train.log"
LOCK = "run.lock"
GEOMETRY = "geometry.csv"
"""The held-out class means' Appendix D fits (training.evaluate.GeometryLog)."""
RUN_FILES = (CONFIG, LABELED, METRICS, CHECKPOINT, PREV_CHECKPOINT, LAST_GOOD, LOG, PROBE_RESULT, GEOMETRY)
"""The files of a run (the lock is not one of them: it belongs to the process using the folder)."""
CHECKPOINT_KEYS = ("model", "objective", "optimizer", "scheduler", "epoch", "step_in_epoch", "sums", "config")

T = TypeVar("T")


class RunLockedError(RuntimeError):
    """The run folder is in use by another live process."""


class CheckpointError(ValueError):
    """A checkpoint file cannot be loaded; the message names it and says what is wrong."""


class PeerFailedError(RuntimeError):
    """Under torchrun: another process failed (it printed the reason); this one stops too."""


# ----------------------------------------------------------------------------------------------------
# Lock
# ----------------------------------------------------------------------------------------------------


def _start_ticks(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux /proc), None where unknown."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # the command name in parentheses may hold spaces
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _process_state(pid: int) -> str | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text[text.rfind(")") + 2 :].split()
    return rest[0] if rest else None


def owner_alive(info: dict) -> bool | None:
    """Whether the process that wrote lock ``info`` still runs: True, False, or None (another host: unknown).

    A process id that now belongs to a process started at another time (reused id) or to a zombie counts
    as not running.
    """
    if info.get("host") != socket.gethostname():
        return None
    pid = info.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    except OSError:
        return False
    if _process_state(pid) in ("Z", "X"):
        return False
    start, recorded = _start_ticks(pid), info.get("start")
    if start is not None and recorded is not None and start != recorded:
        return False
    return True


def _describe(info: dict) -> str:
    since = f", started {info['since']}" if info.get("since") else ""
    return f"{info.get('program', 'a run')} (pid {info.get('pid', '?')} on host {info.get('host', '?')!r}{since})"


@contextmanager
def _guard(folder: Path):
    """An exclusive flock on the folder itself while a stale lock is judged and replaced (released when the
    process dies, so it never goes stale itself); a no-op where flock is unavailable."""
    fd = None
    if fcntl is not None:
        try:
            fd = os.open(folder, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            if fd is not None:
                os.close(fd)
            fd = None
    try:
        yield
    finally:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class RunLock:
    """Exclusive ownership of a folder by this process: ``RunLock.acquire(folder, program, flag)``.

    ``release()`` (or leaving the ``with`` block) removes the lock file if it is still this process's.
    """

    def __init__(self, path: Path, info: dict) -> None:
        self.path, self.info = path, info

    @classmethod
    def acquire(cls, folder: str | os.PathLike, program: str, flag: str = "--out", *,
                wait_s: float = 0.0, name: str = LOCK) -> RunLock:
        """Take the lock ``folder/name``; RunLockedError naming ``flag`` and the owner if a live process holds it.

        ``wait_s``: keep trying that long while the owner lives (0: refuse at once). A lock whose owner is
        no longer running is taken over, with a note on stderr.
        """
        folder = Path(folder)
        path = folder / name
        pid = os.getpid()
        me = {"pid": pid, "host": socket.gethostname(), "start": _start_ticks(pid), "program": program,
              "since": time.strftime("%Y-%m-%d %H:%M:%S"), "token": uuid.uuid4().hex}
        deadline = time.monotonic() + wait_s
        while True:
            if _create(path, me):
                return cls(path, me)
            with _guard(folder):
                info = _read(path)
                if info is None:  # released meanwhile
                    continue
                alive = owner_alive(info)
                if alive is False:
                    path.unlink(missing_ok=True)
                    if _create(path, me):
                        print(f"note: {flag} {str(folder)!r}: took over the lock {path} of {_describe(info)}, "
                              "which is no longer running", file=sys.stderr)
                        return cls(path, me)
                    continue
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            if alive is None:
                raise RunLockedError(
                    f"{flag} {str(folder)!r} is in use by {_describe(info)}; this host cannot tell whether that "
                    f"process still runs: wait for it, or if it is gone delete {path}, or choose another {flag}")
            raise RunLockedError(
                f"{flag} {str(folder)!r} is in use by {_describe(info)}: wait for it to finish or stop it, or choose "
                f"another {flag} (lock file {path})")

    def release(self) -> None:
        """Remove the lock file if it still holds this process's token (idempotent)."""
        info = _read(self.path, patience_s=0.0)
        if info is not None and info.get("token") == self.info["token"]:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _create(path: Path, info: dict) -> bool:
    """Create the lock file with O_CREAT | O_EXCL and write ``info``; False if it exists already."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, (json.dumps(info) + "\n").encode())
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)  # an empty lock file would block the folder until it is judged stale
        raise
    os.close(fd)
    return True


def _read(path: Path, patience_s: float = 1.0) -> dict | None:
    """The lock's content; None if the file is gone. A file still empty or unreadable after ``patience_s``
    (its writer died between creating and writing it) reads as a lock of no live process."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            info = json.loads(path.read_text())
            if isinstance(info, dict):
                return info
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            pass
        if time.monotonic() >= deadline:  # its writer died between creating and writing it: stale
            return {"pid": None, "host": socket.gethostname(), "program": "an unreadable lock file"}
        time.sleep(0.02)


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
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any failure to read the file is reported the same way
        reason = str(exc).splitlines()[0][:160] if str(exc) else ""
        raise CheckpointError(
            f"checkpoint {path} cannot be loaded: it is truncated or damaged ({type(exc).__name__}: {reason})"
        ) from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {path} is not a checkpoint of training.pretrain (it lacks {missing})")
    return ckpt


def load_for_resume(run: Path) -> tuple[dict | None, str | None]:
    """The checkpoint to resume ``run`` from, and a note when it is the previous one (None, None: neither
    exists). CheckpointError if neither the checkpoint nor the previous one loads."""
    current, previous = run / CHECKPOINT, run / PREV_CHECKPOINT
    if not current.exists() and not previous.exists():
        return None, None
    try:
        return read_checkpoint(current), None
    except CheckpointError as exc:
        problem = str(exc)
    if not previous.exists():
        raise CheckpointError(f"{problem}, and there is no {PREV_CHECKPOINT} to fall back on; pass --overwrite "
                              "to start the run again")
    try:
        ckpt = read_checkpoint(previous)
    except CheckpointError as exc:
        raise CheckpointError(f"{problem}, and {exc}; pass --overwrite to start the run again") from None
    return ckpt, (f"{problem}; resuming from the previous checkpoint {previous} (epoch {ckpt['epoch']}, step "
                  f"{ckpt['step_in_epoch']}) instead")


def load_finished(run: Path, finished: Callable[[dict], bool]) -> tuple[dict, str | None]:
    """The checkpoint of ``run`` for a probe, and a note when it is the previous one.

    The previous checkpoint stands in for a checkpoint that does not load only when ``finished(ckpt)``
    holds for it; otherwise CheckpointError naming both and saying how to repair the run.
    """
    current, previous = run / CHECKPOINT, run / PREV_CHECKPOINT
    try:
        return read_checkpoint(current), None
    except CheckpointError as exc:
        problem = str(exc)
    repair = (f"resume the run (python -m training.pretrain --out {run} --resume, with the run's settings; it "
              f"falls back to {PREV_CHECKPOINT} and trains the rest), then probe it")
    if not previous.exists():
        raise CheckpointError(f"{problem}, and there is no {PREV_CHECKPOINT} to fall back on; train the run again "
                              f"(python -m training.pretrain --out {run} --overwrite, with the run's settings)")
    try:
        ckpt = read_checkpoint(previous)
    except CheckpointError as exc:
        raise CheckpointError(f"{problem}, and {exc}; train the run again with --overwrite") from None
    if not finished(ckpt):
        raise CheckpointError(f"{problem}; the previous checkpoint {previous} holds epoch {ckpt['epoch']}, step "
                              f"{ckpt['step_in_epoch']}, not the finished run: {repair}")
    return ckpt, (f"{problem}; using the previous checkpoint {previous} (epoch {ckpt['epoch']}, step "
                  f"{ckpt['step_in_epoch']}) instead")


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


def remove_run_files(run: Path) -> None:
    """Delete the files of the run in ``run`` (at the moment a new run there writes its first file)."""
    for name in RUN_FILES:
        (run / name).unlink(missing_ok=True)
    fsync_dir(run)


def keep_metrics_until(run: Path, epoch: int) -> None:
    """Drop the rows of RUN/metrics.csv after ``epoch`` (they are redone after a resume); atomic."""
    path = run / METRICS
    if not path.exists():
        return
    m = pd.read_csv(path)
    if (m["epoch"] > epoch).any():
        with atomic_path(path) as tmp:
            m[m["epoch"] <= epoch].to_csv(tmp, index=False)


# ----------------------------------------------------------------------------------------------------
# Several processes
# ----------------------------------------------------------------------------------------------------


def collective(ctx: Any, fn: Callable[[], T], *, main_only: bool = False) -> T | None:
    """``fn()`` on every process (on rank 0 only with ``main_only``); if it raises on any process, every
    process raises (the others PeerFailedError) instead of waiting forever at the next barrier.

    ``ctx``: a training.distributed.Context. One process: just ``fn()``.
    """
    result, error = None, None
    if ctx.main or not main_only:
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - re-raised below, after the other processes heard of it
            error = exc
    if ctx.distributed:
        import torch.distributed as dist

        flag = torch.tensor([0.0 if error is None else 1.0], device=ctx.device)
        dist.all_reduce(flag)
        if flag.item() > 0 and error is None:
            error = PeerFailedError(f"process {ctx.rank}: stopped because another process failed (see its message)")
    if error is not None:
        raise error
    return result
