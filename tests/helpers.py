"""Small helpers shared by the tests: stand-ins for a killed process, snapshots of output folders, and
replacements that fail a test where compute must not start."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
"""The repository root."""


class Killed(BaseException):
    """Stands for the process being killed: not an Exception, so nothing in the run catches it."""


def dies_at(n: int, fn):
    """``fn`` wrapped so that its ``n``-th call raises :class:`Killed` instead of running (calls counted from 1)."""
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise Killed
        return fn(*args, **kwargs)

    return dying


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of ``folder`` (not recursive) by name, with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def fail_on_call(nth: int, exc: type[BaseException] = KeyboardInterrupt):
    """A replacement for a method that runs the original until its ``nth`` call, which raises ``exc``."""
    calls = {"n": 0}

    def wrap(original):
        def f(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == nth:
                raise exc()
            return original(*args, **kwargs)

        return f

    return wrap


def no_compute(*args, **kwargs):
    """Stands in for a compute function where a setting must be refused before any compute."""
    raise AssertionError("compute started although a setting should have been refused first")


def refused(main, argv, capsys) -> str:
    """Run ``main(argv)``, which must exit with status 2; the last line it printed to stderr."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    return err.strip().splitlines()[-1]


def cpu_flags() -> set[str]:
    """The instruction-set flags of this CPU (Linux /proc/cpuinfo; empty where it cannot be read): a test must
    not run a library built for an instruction set the CPU lacks, which would kill the test process."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def vector_builds() -> list[tuple[str, tuple[str, ...]]]:
    """(name, compiler flags) of the x86 builds a bit-identity test may run here: the native one, the plain
    SSE2 baseline, and the AVX2 one only on a CPU that has AVX2."""
    builds = [("native", ("-march=native",)), ("sse2", ())]
    if "avx2" in cpu_flags():
        builds.insert(1, ("avx2", ("-mavx2", "-mno-avx512f")))
    return builds


def import_lightly(module: str):
    """``module`` of the lightly library (the tests that compare with it; installed by the test command with
    ``pip install --no-deps lightly==1.6.0``). Skips where lightly is not installed at all; an installed
    lightly that fails to import is an error, not a skip."""
    if importlib.util.find_spec("lightly") is None:
        pytest.skip("lightly is not installed (pip install --no-deps lightly==1.6.0)")
    return importlib.import_module(module)
