"""Tests of simulations.native_build: a cached native kernel is loaded only when it matches the SHA-256 and
size recorded beside it and nobody but the user can write it. A truncated library (which crashed every
lr_bound.py with a bus error) and a planted one (whose constructor would run at load time) are refused and
rebuilt, with a note on stderr; the planted library's constructor never runs.

The end-to-end cases run the loaders of both kernels in a fresh process with its own cache folder (a crash
there cannot take the test run with it, and the user's cache is never touched); the fast ones check the
L_class kernel's cache in this process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from simulations import native_build
from simulations.ffn import native as ffn_native
from simulations.lclass import native as lclass_native
from tests.helpers import REPO

pytestmark = pytest.mark.skipif(native_build.find_compiler() is None, reason="no C compiler")

_LOAD = """
from simulations.lclass import native
from simulations.ffn import native as ffn
print(native.status())
print(ffn.status())
"""

_PLANT = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen(MARKER, "w");
    if (f) { fputs("the planted library ran\n", f); fclose(f); }
}
int lclass_abi(void) { return 1; }
int ffn_abi(void) { return 1; }
"""


def _run(cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, native_build.ENV_CACHE: str(cache),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop(lclass_native.ENV_SWITCH, None)
    env.pop(ffn_native.ENV_SWITCH, None)
    return subprocess.run([sys.executable, "-c", _LOAD], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def _libraries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*_kernel_*.so"))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A cache folder in which both kernels have been built once (mode 0700, as the loader makes it)."""
    cache = tmp_path_factory.mktemp("cache") / "clop"
    out = _run(cache)
    assert out.returncode == 0, out.stderr
    assert all(line.startswith("native kernel") for line in out.stdout.splitlines()), out.stdout
    assert len(_libraries(cache)) == 2
    for lib in _libraries(cache):
        assert lib.with_name(lib.name + native_build.RECORD_SUFFIX).is_file()
    return cache


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir(mode=0o700)
    for path in src.iterdir():
        (dst / path.name).write_bytes(path.read_bytes())
        os.chmod(dst / path.name, path.stat().st_mode & 0o777)
    return dst


def _assert_rebuilt(out: subprocess.CompletedProcess, cache: Path, originals: dict[str, bytes]) -> None:
    assert out.returncode == 0, out.stderr
    assert "refusing the cached library" in out.stderr and "rebuilding it" in out.stderr, out.stderr
    assert all(line.startswith("native kernel") for line in out.stdout.splitlines()), out.stdout
    for lib in _libraries(cache):  # the rebuilt libraries are the genuine ones, and pass the checks
        assert lib.read_bytes() == originals[lib.name]
        native_build.check_library(lib)


@pytest.fixture(scope="module")
def lclass_lib(tmp_path_factory) -> Path:
    """The L_class kernel built in this process into a fresh cache folder."""
    cache = tmp_path_factory.mktemp("lclass")
    path, msg = lclass_native.compile_kernel(native_build.find_compiler(), cache)
    assert path is not None, msg
    return path


def _planted_library(tmp_path: Path, marker: Path) -> bytes:
    src = tmp_path / "plant.c"
    src.write_text(_PLANT)
    planted = tmp_path / "plant.so"
    subprocess.run([*native_build.find_compiler(), "-shared", "-fPIC", f'-DMARKER="{marker}"', "-o", str(planted),
                    str(src)], check=True)
    return planted.read_bytes()


def test_truncated_and_planted_libraries_are_refused_and_rebuilt_in_process(lclass_lib, tmp_path, capfd):
    cache = _copy(lclass_lib.parent, tmp_path / "cache")
    lib = cache / lclass_lib.name
    genuine = lib.read_bytes()
    marker = tmp_path / "marker.txt"
    for damaged in (genuine[:4096], _planted_library(tmp_path, marker)):
        lib.unlink()  # a new file: this process has the previous one mapped (loaded below)
        lib.write_bytes(damaged)
        with pytest.raises(native_build.UntrustedLibrary):
            native_build.check_library(lib)
        path, msg = lclass_native.compile_kernel(native_build.find_compiler(), cache)
        assert path == lib and msg.startswith("compiled"), msg
        assert "refusing the cached library" in capfd.readouterr().err
        assert lib.read_bytes() == genuine
        lclass_native.open_kernel(lib)  # the rebuilt one loads
    assert not marker.exists(), "the planted library's constructor ran"


@pytest.mark.slow
def test_a_cached_library_is_reused_without_a_note(built, tmp_path):
    cache = _copy(built, tmp_path / "cache")
    out = _run(cache)
    assert out.returncode == 0 and "refusing" not in out.stderr, out.stderr


@pytest.mark.slow
def test_a_truncated_library_is_refused_and_rebuilt(built, tmp_path):
    cache = _copy(built, tmp_path / "cache")
    originals = {p.name: p.read_bytes() for p in _libraries(cache)}
    for lib in _libraries(cache):
        lib.write_bytes(originals[lib.name][:4096])  # what a full disk or a killed copy leaves
    out = _run(cache)
    _assert_rebuilt(out, cache, originals)
    assert "bytes, its record says" in out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("record", ["none", "genuine", "own-hash-but-group-writable"])
def test_a_planted_library_never_runs_its_constructor(built, tmp_path, record):
    """The library under the cache key is replaced by one whose constructor writes a marker file: without a
    record, with the genuine library's record left beside it, and with a record of its own hash but a
    group-writable file. Every time it is refused and rebuilt, and the marker never appears."""
    cache = _copy(built, tmp_path / "cache")
    originals = {p.name: p.read_bytes() for p in _libraries(cache)}
    marker = tmp_path / "marker.txt"
    planted = _planted_library(tmp_path, marker)
    for lib in _libraries(cache):
        lib.write_bytes(planted)
        rec = lib.with_name(lib.name + native_build.RECORD_SUFFIX)
        if record == "none":
            rec.unlink()
        elif record == "own-hash-but-group-writable":
            native_build.record_library(lib)
            os.chmod(lib, 0o770)
    out = _run(cache)
    assert not marker.exists(), "the planted library's constructor ran"
    _assert_rebuilt(out, cache, originals)


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="needs root to give a file away")
def test_a_library_owned_by_another_user_is_refused(lclass_lib, tmp_path):
    cache = _copy(lclass_lib.parent, tmp_path / "cache")
    lib = cache / lclass_lib.name
    os.chown(lib, 65534, 65534)
    with pytest.raises(native_build.UntrustedLibrary, match="owned by uid 65534"):
        native_build.check_library(lib)


@pytest.mark.slow
def test_a_cache_folder_others_can_write_is_not_used(built, tmp_path):
    cache = _copy(built, tmp_path / "cache")
    os.chmod(cache, 0o777)
    out = _run(cache)
    assert out.returncode == 0, out.stderr
    assert "is writable by the group or others" in out.stderr and "building in" in out.stderr, out.stderr
    assert all(line.startswith("native kernel") for line in out.stdout.splitlines())
    assert str(cache) not in out.stdout  # the kernels were built and loaded elsewhere


def test_check_library_names_what_is_wrong(lclass_lib, tmp_path):
    cache = _copy(lclass_lib.parent, tmp_path / "cache")
    lib = cache / lclass_lib.name
    native_build.check_library(lib)
    data = bytearray(lib.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    lib.write_bytes(bytes(data))
    with pytest.raises(native_build.UntrustedLibrary, match="SHA-256"):
        native_build.check_library(lib)
    lib.unlink()
    lib.symlink_to(lclass_lib)
    with pytest.raises(native_build.UntrustedLibrary, match="cannot be opened"):
        native_build.check_library(lib)


_BUILD = """
import sys
from pathlib import Path
from simulations import native_build
src = Path("simulations/lclass/kernel.c").read_text()
path, msg = native_build.compile_cached("lclass_kernel", src, native_build.find_compiler(), Path(sys.argv[1]),
                                        ("-O1", "-std=gnu99", "-fPIC", "-shared"), ((),))
assert path is not None, msg
native_build.load_library(path).lclass_abi()
print("ok", msg.split()[0])
"""


def test_processes_building_the_same_library_at_once_all_get_it(tmp_path):
    """Four processes find an empty cache and build the same key at the same time (as parallel test workers
    would): every one ends with a library that passes the checks, none falls back."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    procs = [subprocess.Popen([sys.executable, "-c", _BUILD, str(cache)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    assert all(out.startswith("ok") for out, _ in outs), outs
    assert len(list(cache.glob("*.so"))) == 1
