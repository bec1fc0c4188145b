"""Tests of simulations.lclass.native: the kernel source shipped as package data, the drift guard inside the
C kernel, and the same bits at every vector width.
"""

from __future__ import annotations

import numpy as np
import pytest

from simulations import native_build
from simulations.lclass.model import COLLAPSE_TOL, initial_embeddings, reduce_coordinates
from tests.helpers import REPO, vector_builds
from tests.simulations.lclass.helpers import native_or_skip, shrinking_rows_case, threshold_etas

pytestmark = pytest.mark.usefixtures("one_thread")


def test_native_kernel_without_the_drift_guard_fails_where_rows_keep_shrinking(tmp_path):
    """The same check on the kernel: a build with the guard off (-DDRIFT_R=0) gets these runs wrong, the
    default build right; and the C default is the module's DRIFT_R."""
    native = native_or_skip()
    import re

    assert float(re.search(r"#define DRIFT_R ([0-9.e+-]+)", native.kernel_source()).group(1)) == native.DRIFT_R
    path, msg = native.compile_kernel(native_build.find_compiler(), tmp_path, (("-DDRIFT_R=0",),))
    assert path is not None, msg
    inits, expected = shrinking_rows_case()
    kw = dict(steps=400, tol=COLLAPSE_TOL, early_exit=False, check_every=16, renorm_every=32, stable_mean=1e-8,
              stable_reach=1e-4, group_bytes=2**20)
    guarded = native.decide(inits, [3] * len(inits), [2.5] * len(inits), **kw)[0]
    unguarded = native.decide(inits, [3] * len(inits), [2.5] * len(inits), lib=native.open_kernel(path), **kw)[0]
    np.testing.assert_array_equal(guarded, expected)
    assert (unguarded != expected).sum() >= 2


def test_native_kernel_gives_the_same_bits_at_every_vector_width(tmp_path):
    """The sums have one fixed order (8 lanes): builds for 8-, 4- and 2-wide vectors give identical states."""
    import platform

    native = native_or_skip()
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the variants below use x86 flags")
    cc = native_build.find_compiler()
    variants = {}
    for name, flags in vector_builds():  # AVX2 only where the CPU has it
        path, msg = native.compile_kernel(cc, tmp_path, (flags,))
        assert path is not None, msg
        variants[name] = native.open_kernel(path)
    inits, kk, ee = [], [], []
    for k in (3, 6, 13, 24):
        c0, _ = reduce_coordinates(initial_embeddings(k, 30, 1, seed=1))
        for eta in threshold_etas(k):
            inits.append(c0[0])
            kk.append(k)
            ee.append(eta)
    kw = dict(steps=300, tol=COLLAPSE_TOL, early_exit=False, check_every=16, renorm_every=32, stable_mean=1e-8,
              stable_reach=1e-4, group_bytes=2**20, final_states=True)  # early_exit off: these do not matter
    out = {name: native.decide(inits, kk, ee, lib=lib, **kw) for name, lib in variants.items()}
    assert {lib.lclass_vector_width() for lib in variants.values()} >= ({2, 4} if "avx2" in variants else {2})
    for name in [n for n in variants if n != "native"]:
        np.testing.assert_array_equal(out[name][0], out["native"][0])
        for za, zb in zip(out[name][3], out["native"][3]):
            assert za.tobytes() == zb.tobytes(), name


def test_native_kernel_gives_the_same_bits_on_one_thread_and_on_two():
    """The runs are split over threads, one kernel call per group; each run's arithmetic is the same in every
    group, so the collapse and decision steps, the work and the final states are identical."""
    native = native_or_skip()
    inits, kk, ee = [], [], []
    for k in (3, 7, 20, 50):
        c0, _ = reduce_coordinates(initial_embeddings(k, 60, 3, seed=2))
        for t in range(3):
            for eta in threshold_etas(k):
                inits.append(c0[t])
                kk.append(k)
                ee.append(eta)
    kw = dict(steps=300, tol=COLLAPSE_TOL, early_exit=True, check_every=16, renorm_every=32, stable_mean=1e-8,
              stable_reach=1e-4, group_bytes=2**12, final_states=True)
    one = native.decide(inits, kk, ee, threads=1, **kw)
    two = native.decide(inits, kk, ee, threads=2, **kw)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
    assert one[2] == two[2]
    assert all(a.tobytes() == b.tobytes() for a, b in zip(one[3], two[3]))
    assert (one[0] >= 0).any() and (one[0] < 0).any()  # both outcomes are in the case


def test_kernel_source_is_the_packaged_c_file():
    """The kernel is read from simulations/lclass/kernel.c, which pyproject.toml ships as package data; its ABI
    and drift default match the module's."""
    import re

    import tomllib

    from simulations.lclass import native

    src = native.kernel_source()
    assert src == (REPO / "simulations" / "lclass" / "kernel.c").read_text(encoding="utf-8")
    assert f"int lclass_abi(void) {{ return {native.ABI}; }}" in src and "int64_t lclass_decide(" in src
    assert float(re.search(r"#define DRIFT_R ([0-9.e+-]+)", src).group(1)) == native.DRIFT_R
    with open(REPO / "pyproject.toml", "rb") as fh:
        package_data = tomllib.load(fh)["tool"]["setuptools"]["package-data"]
    assert "kernel.c" in package_data["simulations.lclass"]
