"""Crash-safe file output shared by every script of the suite.

Two rules make an interrupted run harmless (Ctrl-C, SIGKILL, a full disk, an exception half-way):

* a file is never written at its final path: it is written to a temporary file in the same folder, flushed
  to disk, and renamed over the final path (``os.replace`` is atomic on POSIX and Windows), so a reader sees
  the old file or the new one, never half of one;
* a script that writes several files that belong together (a CSV and the figure drawn from it) stages all of
  them first and renames them only when every one is complete (:func:`staged_outputs`), so an interrupted
  run leaves the previous run's complete set untouched instead of one run's CSV beside another run's figure.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> with staged_outputs(d) as stage:
...     _ = stage("a.txt").write_text("new a")
...     _ = stage("b.txt").write_text("new b")
>>> sorted(p.name for p in d.iterdir()), (d / "a.txt").read_text()
(['a.txt', 'b.txt'], 'new a')
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

_UMASK = os.umask(0o022)
os.umask(_UMASK)

__all__ = ["atomic_path", "atomic_write_text", "staged_outputs", "check_output_dir", "check_output_file", "fsync_dir",
           "WriteFailedError", "remove_stale_temporaries", "check_path_text", "output_folder", "OUTPUT_LOCK"]

OUTPUT_LOCK = ".output.lock"
"""The lock file :func:`output_folder` keeps in an output folder while a script writes into it."""

LOW_SPACE_BYTES = 1 << 20
"""A write that fails while its file system has less than this free is reported as a full disk."""


class WriteFailedError(OSError):
    """Writing an output file failed for a reason outside the program (a full disk, a file-size limit); the
    file it would have replaced is intact. ``str()`` is a one-line message naming the file."""


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable where the platform allows it (no-op elsewhere)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_for(path: Path) -> Path:
    """A fresh, unused temporary path beside ``path`` that keeps its suffix (matplotlib reads the format
    from it) and starts with a dot (hidden, and never matched by the final name)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the final file gets the usual permissions
    return Path(tmp)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _size_limit_hit(tmp: Path) -> int | None:
    """The file-size limit (RLIMIT_FSIZE) when ``tmp`` has reached it, else None."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY and tmp.exists() and tmp.stat().st_size >= limit:
            return int(limit)
    except (ImportError, OSError, ValueError):
        pass
    return None


def _write_failure(path: Path, tmp: Path, exc: BaseException, *, blame: bool = True) -> WriteFailedError | None:
    """A :class:`WriteFailedError` when ``exc``, raised while writing ``tmp`` (for ``path``), came from a full
    disk or a file-size limit (whatever the writer made of it: an OSError, or a library's own error such as
    matplotlib's or torch's); None for any other failure. ``blame=False``: only when ``tmp`` itself reached the
    file-size limit (used to find which of several staged files failed)."""
    if isinstance(exc, WriteFailedError):
        return exc
    code, reason = None, None
    limit = _size_limit_hit(tmp)
    if limit is not None:
        code, reason = errno.EFBIG, os.strerror(errno.EFBIG) + f" (the limit is {limit} bytes)"
    elif not blame:
        return None
    elif isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        code, reason = exc.errno, os.strerror(exc.errno)
    else:
        try:
            if shutil.disk_usage(path.parent).free < LOW_SPACE_BYTES:
                code, reason = errno.ENOSPC, os.strerror(errno.ENOSPC)
        except OSError:
            pass
    if reason is None:
        return None
    err = WriteFailedError(code, f"cannot write {str(path)!r}: {reason}; the previous file, if any, is intact")
    err.filename = str(path)
    return err


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the body returns, move it over ``path`` atomically.

    The body writes the temporary file by any means (``df.to_csv(tmp)``, ``fig.savefig(tmp)``,
    ``torch.save(obj, tmp)``). If the body raises (KeyboardInterrupt included), the temporary file is
    removed and ``path`` is left as it was; a failure caused by a full disk or a file-size limit is raised
    as :class:`WriteFailedError` whatever library raised it.
    """
    path = Path(path)
    tmp = _temp_for(path)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        failure = _write_failure(path, tmp, exc) if isinstance(exc, Exception) else None
        tmp.unlink(missing_ok=True)
        if failure is not None:
            raise failure from exc
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


@contextmanager
def staged_outputs(folder: str | os.PathLike) -> Iterator[Callable[[str], Path]]:
    """Stage several output files in ``folder`` and put them in place together, or not at all.

    Yields ``stage(name) -> Path``: a temporary path in ``folder`` for the output file ``name``. When the
    body returns, every staged file is flushed and renamed to ``folder/name``; if the body raises, every
    staged file is removed and the files already in ``folder`` are untouched. The renames at the end take
    microseconds; only a kill inside that window can leave a mixed set.
    """
    folder = Path(folder)
    staged: dict[str, Path] = {}

    def stage(name: str) -> Path:
        if name in staged:
            raise ValueError(f"output {name!r} is staged twice")
        if Path(name).name != name:
            raise ValueError(f"output name must be a file name without folders; got {name!r}")
        staged[name] = _temp_for(folder / name)
        return staged[name]

    try:
        yield stage
        for tmp in staged.values():
            _fsync_file(tmp)
    except BaseException as exc:
        failure = None
        if isinstance(exc, Exception) and staged:
            # the file that reached the size limit, else the one the error names, else the last one staged
            named = [n for n, t in staged.items() if getattr(exc, "filename", None) in (str(t), t)]
            for name, tmp in staged.items():
                failure = failure or _write_failure(folder / name, tmp, exc, blame=False)
            if failure is None:
                name = named[0] if named else list(staged)[-1]
                failure = _write_failure(folder / name, staged[name], exc)
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        if failure is not None:
            raise failure from exc
        raise
    for name, tmp in staged.items():
        os.replace(tmp, folder / name)
    fsync_dir(folder)


def _prove_writable(folder: Path) -> None:
    """Create ``folder`` if needed and write and remove a probe file in it; raises OSError if that fails."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test.")
    os.close(fd)
    os.unlink(probe)


def check_path_text(path: str | os.PathLike, flag: str) -> Path:
    """``path`` as a Path; ``ValueError`` naming ``flag`` when it is empty or blank (an unset shell variable:
    ``Path('')`` would silently mean the current folder)."""
    if path is None or (isinstance(path, str) and not path.strip()):
        raise ValueError(f"{flag} must not be empty; got {path!r} (an unset shell variable?): give a path")
    return Path(path)


def check_output_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Create the output folder ``path`` if needed and prove it writable, before any compute.

    Raises ``ValueError`` naming ``flag`` when ``path`` is empty, a file, cannot be created, or cannot be
    written.
    """
    path = check_path_text(path, flag)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {str(path)!r} is a file; expected a folder (it is created if missing)")
    try:
        _prove_writable(path)
    except OSError as exc:
        raise ValueError(f"{flag} {str(path)!r} cannot be written: {exc.strerror or exc}") from exc
    return path


def check_output_file(path: str | os.PathLike, flag: str) -> Path:
    """Prove that the output file ``path`` can be written (atomically, beside its final name), before any compute.

    Creates the parent folder if needed. Raises ``ValueError`` naming ``flag`` and ``path`` when ``path`` is
    empty or an existing folder, or when its folder is a file, cannot be created or cannot be written.
    """
    path = check_path_text(path, flag)
    folder = path.parent
    if path.is_dir():
        raise ValueError(f"{flag} {str(path)!r} is a folder; expected a file path")
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{flag} {str(path)!r} cannot be written: {str(folder)!r} is a file, not a folder")
    try:
        _prove_writable(folder)
    except OSError as exc:
        raise ValueError(f"{flag} {str(path)!r} cannot be written in {str(folder)!r}: {exc.strerror or exc}") from exc
    return path


def remove_stale_temporaries(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Remove the temporary files that :func:`atomic_path` / :func:`staged_outputs` left in ``folder`` for the
    output files ``names`` when a run was killed (``.<stem>.<8 random characters>.tmp<suffix>``); returns them.

    Call it only while this process owns ``folder`` (under its lock): another live writer's temporaries look
    the same. Files of any other name are never touched.
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    patterns = [re.compile(rf"^\.{re.escape(Path(n).stem)}\.[a-z0-9_]{{8}}\.tmp{re.escape(Path(n).suffix)}$") for n in names]
    for entry in folder.iterdir():
        if entry.is_file() and not entry.is_symlink() and any(p.match(entry.name) for p in patterns):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


@contextmanager
def output_folder(path: str | os.PathLike, flag: str = "--out", *, program: str,
                  outputs: Iterable[str] = ()) -> Iterator[Path]:
    """An output folder for one script run: checked and created (:func:`check_output_dir`), locked against a
    second run on the same folder (:class:`clop.util.lock.FolderLock`, file :data:`OUTPUT_LOCK`; a live
    owner's run is refused with ``FolderLockedError``), with the temporaries that killed runs left for
    ``outputs`` removed (:func:`remove_stale_temporaries`). On exit the lock is released, and the folders
    this call created are removed again if nothing was written into them (a run that stopped before
    writing leaves no empty folder behind)."""
    from clop.util.lock import FolderLock

    path = check_path_text(path, flag)
    created, p = [], path
    while not p.exists() and p != p.parent:
        created.append(p)
        p = p.parent
    folder = check_output_dir(path, flag)
    try:
        with FolderLock.acquire(folder, program, flag, name=OUTPUT_LOCK):
            remove_stale_temporaries(folder, outputs)
            yield folder
    finally:
        for d in created:  # deepest first; rmdir refuses a folder that holds anything
            try:
                d.rmdir()
            except OSError:
                break
