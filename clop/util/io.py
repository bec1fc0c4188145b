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

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

_UMASK = os.umask(0o022)
os.umask(_UMASK)

__all__ = ["atomic_path", "atomic_write_text", "staged_outputs", "check_output_dir", "check_output_file", "fsync_dir"]


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


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the body returns, move it over ``path`` atomically.

    The body writes the temporary file by any means (``df.to_csv(tmp)``, ``fig.savefig(tmp)``,
    ``torch.save(obj, tmp)``). If the body raises (KeyboardInterrupt included), the temporary file is
    removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = _temp_for(path)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
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
    except BaseException:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
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


def check_output_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Create the output folder ``path`` if needed and prove it writable, before any compute.

    Raises ``ValueError`` naming ``flag`` when ``path`` is a file, cannot be created, or cannot be written.
    """
    path = Path(path)
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
    an existing folder, or when its folder is a file, cannot be created or cannot be written.
    """
    path = Path(path)
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
