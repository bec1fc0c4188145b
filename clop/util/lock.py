"""A folder owned by one process at a time: ``FolderLock.acquire(folder, program, flag)``.

``<folder>/<name>`` (default ``run.lock``) holds the process id, host, start time and a random token of the
process that owns the folder. It is created with ``O_CREAT | O_EXCL``, so of two processes started together
exactly one gets it; the other is refused with :class:`FolderLockedError` naming the owner. A lock whose
owner is no longer running (killed, machine rebooted, a zombie, a reused process id) is stale and is taken
over, with a note on stderr; the take-over itself is serialised by an ``flock`` on the folder. A lock
written on another host cannot be judged and is never taken over.

Used by the training runs (the run folder) and by every script that writes into an output folder, so two
runs on one folder cannot silently overwrite each other's files.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

try:  # serialises the take-over of stale locks; absent on Windows, where the take-over is unguarded
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK", "FolderLock", "FolderLockedError", "owner_alive", "start_ticks"]

LOCK = "run.lock"


class FolderLockedError(RuntimeError):
    """The folder is in use by another live process."""


def start_ticks(pid: int) -> int | None:
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
    start, recorded = start_ticks(pid), info.get("start")
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


class FolderLock:
    """Exclusive ownership of a folder by this process: ``FolderLock.acquire(folder, program, flag)``.

    ``release()`` (or leaving the ``with`` block) removes the lock file if it is still this process's.
    """

    def __init__(self, path: Path, info: dict) -> None:
        self.path, self.info = path, info

    @classmethod
    def acquire(cls, folder: str | os.PathLike, program: str, flag: str = "--out", *,
                wait_s: float = 0.0, name: str = LOCK) -> FolderLock:
        """Take the lock ``folder/name``; FolderLockedError naming ``flag`` and the owner if a live process holds it.

        ``wait_s``: keep trying that long while the owner lives (0: refuse at once). A lock whose owner is
        no longer running is taken over, with a note on stderr.
        """
        folder = Path(folder)
        path = folder / name
        pid = os.getpid()
        me = {"pid": pid, "host": socket.gethostname(), "start": start_ticks(pid), "program": program,
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
                raise FolderLockedError(
                    f"{flag} {str(folder)!r} is in use by {_describe(info)}; this host cannot tell whether that "
                    f"process still runs: wait for it, or if it is gone delete {path}, or choose another {flag}")
            raise FolderLockedError(
                f"{flag} {str(folder)!r} is in use by {_describe(info)}: wait for it to finish or stop it, or choose "
                f"another {flag} (lock file {path})")

    def release(self) -> None:
        """Remove the lock file if it still holds this process's token (idempotent)."""
        info = _read(self.path, patience_s=0.0)
        if info is not None and info.get("token") == self.info["token"]:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> FolderLock:
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
