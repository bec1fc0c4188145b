"""Compile, cache and load the native C kernels of the simulations, trusting nothing found in the cache.

The kernels (``simulations/lclass/kernel.c``, ``simulations/ffn/kernel.c``) are compiled on first use with the
system C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``) and the shared library is cached under
:func:`cache_dir`, named by a key that hashes the source, the flags, the compiler's version and the CPU
(``/proc/cpuinfo``), so a library built for one CPU is never loaded on another.

Trust. A cached file is loaded only when all of these hold (:func:`check_library`); otherwise it is refused
with a note on stderr and rebuilt (and where the rebuild fails, the caller falls back to its torch code):

* beside the library lies its record ``<library>.sha256`` (written by this module after the build: the
  SHA-256 and the size in bytes), and the library's size and SHA-256 match it, so a truncated or replaced
  file is never handed to the dynamic loader (a truncated library crashes the process with a bus error; a
  planted one would run its constructor before any check of its interface);
* the library and its record are regular files (not links), owned by the user running the process, and
  not writable by the group or by others;
* the cache folder itself is owned by the user and not writable by the group or others; where it is not
  (or cannot be created), a fresh private temporary folder is used instead, so no other account can swap a
  file between the check and the load.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

__all__ = [
    "ENV_CACHE", "LEGACY_ENV_CACHE", "RECORD_SUFFIX", "UntrustedLibrary", "find_compiler", "compiler_version",
    "cpu_fingerprint", "cache_dir", "private_dir", "library_key", "check_library", "record_library",
    "build_library", "compile_cached", "load_library", "default_out_dir", "note", "usable_cores", "default_threads", "ENV_THREADS",
]

ENV_THREADS = "CLOP_NATIVE_THREADS"
"""Environment variable: threads of the native kernels and workers of the FFN training (default: every usable
core, :func:`usable_cores`). Their results do not depend on it."""
ENV_CACHE = "CLOP_NATIVE_CACHE"
"""Environment variable: folder for the compiled kernels (default ``$XDG_CACHE_HOME/clop-verify``)."""
LEGACY_ENV_CACHE = "CLOP_LCLASS_CACHE"
"""The earlier name of :data:`ENV_CACHE`, still honoured when :data:`ENV_CACHE` is not set."""
RECORD_SUFFIX = ".sha256"
"""Suffix of the record beside each library: ``<sha256 hex> <size in bytes>``."""


class UntrustedLibrary(OSError):
    """A cached library that fails a check of :func:`check_library` (the message says which)."""


def usable_cores() -> int:
    """The cores this process may run on (``os.sched_getaffinity`` where it exists, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """``$CLOP_NATIVE_THREADS`` when it is a whole number >= 1, else :func:`usable_cores`: the default number of
    threads of the native kernels (and of workers of the FFN training)."""
    env = os.environ.get(ENV_THREADS, "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    return usable_cores()


def note(message: str) -> None:
    """One line on stderr, prefixed ``clop native kernel:``."""
    print(f"clop native kernel: {message}", file=sys.stderr, flush=True)


def find_compiler() -> list[str] | None:
    """The C compiler command: ``$CC`` (split like a shell would) if set and found, else ``cc``, ``gcc`` or
    ``clang``; None when there is none."""
    cc = os.environ.get("CC", "").strip()
    if cc:
        parts = shlex.split(cc)
        return parts if shutil.which(parts[0]) else None
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [path]
    return None


def compiler_version(cc: list[str]) -> str:
    """``cc --version``'s output; OSError when it cannot be run."""
    try:
        return subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise OSError(f"{cc[0]} --version failed: {exc}") from exc


def cpu_fingerprint() -> str:
    """The lines of /proc/cpuinfo that name the CPU and its instruction sets (one CPU's worth)."""
    keep = ("model name", "flags", "features", "cpu implementer", "cpu part", "isa", "vendor_id")
    lines: list[str] = []
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if not line.strip():
                    if lines:
                        break
                    continue
                if line.split(":")[0].strip().lower() in keep:
                    lines.append(line.strip())
    except OSError:
        pass
    return "\n".join(lines) or f"{platform.machine()} {platform.processor()}"


def cache_dir() -> Path:
    """``$CLOP_NATIVE_CACHE``, else ``$CLOP_LCLASS_CACHE``, else ``$XDG_CACHE_HOME/clop-verify``, else
    ``~/.cache/clop-verify`` (not created here)."""
    for name in (ENV_CACHE, LEGACY_ENV_CACHE):
        env = os.environ.get(name)
        if env:
            return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clop-verify"


def _private_problem(st: os.stat_result) -> str | None:
    """Why a file or folder with this status is not ours alone, or None."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    if uid is not None and st.st_uid != uid:
        return f"owned by uid {st.st_uid}, not by this user (uid {uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"writable by the group or others (mode {stat.filemode(st.st_mode)})"
    return None


def private_dir(path: Path) -> tuple[Path | None, str]:
    """(``path``, "") when it is (or has just been created, mode 0700, as) a folder of this user that nobody
    else can write and we can; (None, why not) otherwise."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(path)
    except OSError as exc:
        return None, f"cannot be created ({exc.strerror or exc})"
    if not stat.S_ISDIR(st.st_mode):
        return None, "is not a folder"
    problem = _private_problem(st)
    if problem:
        return None, f"is {problem}"
    if not os.access(path, os.W_OK | os.X_OK):
        return None, "is not writable"
    return path, ""


def library_key(source: str, cc: Sequence[str], flags: Sequence[str], version: str) -> str:
    """20 hex digits naming a build: source, compiler command, flags, compiler version and CPU."""
    text = "\0".join([source, " ".join(cc), " ".join(flags), version, cpu_fingerprint()])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _record_path(lib: Path) -> Path:
    return lib.with_name(lib.name + RECORD_SUFFIX)


def _read_checked(path: Path, what: str, limit: int) -> bytes:
    """The bytes of ``path`` when it is a regular file of ours that nobody else can write; UntrustedLibrary else."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise UntrustedLibrary(f"{what} {path}: cannot be opened ({exc.strerror or exc})") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UntrustedLibrary(f"{what} {path} is not a regular file")
        problem = _private_problem(st)
        if problem:
            raise UntrustedLibrary(f"{what} {path} is {problem}")
        if st.st_size > limit:
            raise UntrustedLibrary(f"{what} {path} is {st.st_size} bytes, more than {limit}")
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read()
    finally:
        os.close(fd)


def check_library(lib: Path) -> None:
    """Raise :class:`UntrustedLibrary` unless ``lib`` and its record pass every check of the module docstring."""
    if not os.path.lexists(_record_path(lib)):
        raise UntrustedLibrary(f"library {lib}: no record of its SHA-256 beside it (planted, or built before "
                               "records were kept)")
    record = _read_checked(_record_path(lib), "record", 4096).decode("ascii", "replace").split()
    if len(record) != 2 or len(record[0]) != 64 or not record[1].isdigit():
        raise UntrustedLibrary(f"record {_record_path(lib)} is not '<sha256> <size>'")
    data = _read_checked(lib, "library", 1 << 28)
    if len(data) != int(record[1]):
        raise UntrustedLibrary(f"library {lib} has {len(data)} bytes, its record says {record[1]} (truncated?)")
    digest = hashlib.sha256(data).hexdigest()
    if digest != record[0]:
        raise UntrustedLibrary(f"library {lib} does not match the SHA-256 of its record (replaced?)")


def record_library(lib: Path) -> None:
    """Write ``<lib>.sha256`` (hash and size of ``lib``), atomically, mode 0600."""
    data = lib.read_bytes()
    fd, tmp = tempfile.mkstemp(dir=lib.parent, prefix=".record-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{hashlib.sha256(data).hexdigest()} {len(data)}\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, _record_path(lib))
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def build_library(cc: list[str], flags: Sequence[str], source: str, lib: Path) -> str | None:
    """Compile ``source`` with ``flags`` into ``lib`` and record it (both replaced atomically); None on success,
    else the compiler's complaint. The source is compiled as ``kernel.c`` in a fresh folder beside ``lib``, so
    the same source, flags and compiler give the same bytes."""
    work = tempfile.mkdtemp(dir=lib.parent, prefix=f".{lib.stem}_")
    src, tmp_lib = os.path.join(work, "kernel.c"), os.path.join(work, "kernel.so")
    try:
        with open(src, "w") as fh:
            fh.write(source)
        proc = subprocess.run([*cc, *flags, "-o", "kernel.so", "kernel.c", "-lm"], capture_output=True, text=True,
                              timeout=300, cwd=work)
        if proc.returncode != 0:
            return f"{' '.join(flags)}: {(proc.stderr or proc.stdout).strip()[-300:]}"
        os.chmod(tmp_lib, 0o700)
        os.replace(tmp_lib, lib)  # atomic: a concurrent build of the same key writes the same bytes
        record_library(lib)
        return None
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{' '.join(flags)}: {exc}"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def compile_cached(name: str, source: str, cc: list[str], out_dir: Path, base_flags: Sequence[str],
                   arch_flags: Sequence[Sequence[str]]) -> tuple[Path | None, str]:
    """The library ``<name>_<key>.so`` of ``source`` in ``out_dir``: the cached one when it passes
    :func:`check_library`, else a fresh build (a failed check is noted on stderr and the file rebuilt).
    Each of ``arch_flags`` is tried in turn after ``base_flags``. Returns (library path or None, message).

    Processes that build the same key at once write the same bytes and replace the files by renaming, so a
    process that meets a library between its rename and its record's rebuilds it too, and none fails."""
    try:
        version = compiler_version(cc)
    except OSError as exc:
        return None, str(exc)
    errors = []
    for arch in arch_flags:
        flags = [*base_flags, *arch]
        lib = out_dir / f"{name}_{library_key(source, cc, flags, version)}.so"
        if lib.exists() or _record_path(lib).exists():
            try:
                check_library(lib)
                return lib, f"cached {lib}"
            except UntrustedLibrary as exc:  # the build below replaces it (renames: never rewritten in place)
                note(f"refusing the cached {exc}; rebuilding it")
        error = build_library(cc, flags, source, lib)
        if error is None:
            return lib, f"compiled {lib}"
        errors.append(error)
    return None, "compilation failed: " + " | ".join(errors)


def load_library(lib: Path) -> ctypes.CDLL:
    """``ctypes.CDLL(lib)`` after :func:`check_library` (UntrustedLibrary, an OSError, when a check fails)."""
    check_library(lib)
    return ctypes.CDLL(str(lib))


@functools.lru_cache(maxsize=None)
def _fallback_dir(path: Path, why: str) -> Path:
    out = Path(tempfile.mkdtemp(prefix="clop-native-"))
    if path.exists():
        note(f"the cache folder {path} {why}; building in {out} instead")
    return out


def default_out_dir() -> Path:
    """:func:`cache_dir` when it is private (:func:`private_dir`), else a private temporary folder, one per process
    (with a note on stderr when the cache folder exists but is not private)."""
    path = cache_dir()
    out, why = private_dir(path)
    return out if out is not None else _fallback_dir(path, why)
