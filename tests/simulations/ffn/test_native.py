"""Tests of the native FFN kernel (simulations.ffn.native, kernel.c) and of the engines of train_runs: the
native and fused trainings follow the autograd one in float64, give the same bits for any number of workers
and chunk size, the same bits at every vector width, and the kernel's exp is accurate."""

from __future__ import annotations

import platform
import re

import numpy as np
import pytest
import tomllib
import torch

from simulations import native_build
from simulations.ffn import data as fd
from simulations.ffn import fused, native
from simulations.ffn import train as ft
from simulations.ffn.grads import CLOP_LAMBDA, LOSS_PARAMS
from tests.helpers import REPO, cpu_flags, vector_builds

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def kernel():
    try:
        return native.loaded()
    except RuntimeError as exc:
        pytest.skip(f"native FFN kernel unavailable here: {exc}")


@pytest.fixture(scope="module")
def data3():
    return fd.stack_data([fd.make_data(s, **fd.REGIMES["overlapping"]) for s in (3, 4, 5)])


@pytest.mark.parametrize("loss", ft.LOSSES)
def test_native_and_fused_training_follow_autograd_in_float64(kernel, data3, loss):
    """Equal in exact arithmetic, so compared in float64 (float32 training amplifies last-bit differences):
    three epochs with the CLOP term, outputs and the recorded losses."""
    out, hist = {}, {}
    for engine in ("autograd", "fused", "native"):
        h: list = []
        out[engine] = ft.train_runs(loss, True, data3, epochs=3, dtype=torch.float64, device="cpu", engine=engine,
                                    history=h)
        hist[engine] = torch.stack(h)
    for engine in ("fused", "native"):
        torch.testing.assert_close(out[engine], out["autograd"], rtol=0, atol=1e-10)
        # the autograd engine records the loss in float32
        torch.testing.assert_close(hist[engine].double(), hist["autograd"].double(), rtol=1e-5, atol=1e-5)


def test_native_runs_are_independent_of_workers_and_chunks_bit_for_bit(kernel):
    data = fd.stack_data([fd.make_data(s) for s in range(5)])
    kw = dict(epochs=2, device="cpu", engine="native")
    one = ft.train_runs("dcl", True, data, workers=1, chunk=8, **kw)
    two = ft.train_runs("dcl", True, data, workers=2, chunk=2, **kw)
    alone = ft.train_runs("dcl", True, data.select(slice(3, 4)), workers=1, **kw)
    assert torch.equal(one, two)
    assert torch.equal(one[3:4], alone)
    assert float((one[0] - one[1]).abs().max()) > 1e-2  # and the runs differ


def test_fused_torch_runs_are_independent_of_workers_bit_for_bit():
    data = fd.stack_data([fd.make_data(s) for s in range(4)])
    kw = dict(epochs=2, device="cpu", engine="fused", chunk=2)
    assert torch.equal(ft.train_runs("vicreg", True, data, workers=1, **kw),
                       ft.train_runs("vicreg", True, data, workers=2, **kw))


def _epochs(lib, loss: str, use_clop: bool, seeds=(0, 1), epochs: int = 2) -> np.ndarray:
    """The packed parameters after ``epochs`` native epochs (the same draws as train_runs)."""
    data = fd.stack_data([fd.make_data(s) for s in seeds])
    x, labels, protos, params, draw = ft.chunk_setup(data, ft.HIDDEN, fd.NOISE_VAR, torch.device("cpu"),
                                                      torch.float32)
    state = native.Kernel(lib, params, ft.BATCH_SIZE, x.shape[1])
    rows = fused.row_prototypes(labels, protos) if use_clop else None
    for _ in range(epochs):
        v1, v2, order = draw()
        state.epoch(v1, v2, order, rows, loss, native.loss_settings(loss, LOSS_PARAMS[loss]), CLOP_LAMBDA, ft.LR,
                    fused.ADAM_BETAS, fused.ADAM_EPS, False)
    return state.flat.copy()


@pytest.mark.slow
def test_native_kernel_gives_the_same_bits_at_every_vector_width(kernel, tmp_path):
    """Every sum has one fixed order: builds for 16-, 8- and 4-wide float vectors train to identical weights."""
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the variants below use x86 flags")
    cc = native_build.find_compiler()
    libs = {}
    for name, flags in vector_builds():  # AVX2 only where the CPU has it
        path, msg = native.compile_kernel(cc, tmp_path, (flags,))
        assert path is not None, msg
        libs[name] = native.open_kernel(path)
    assert {lib.ffn_vector_width() for lib in libs.values()} >= ({4, 8} if "avx2" in libs else {4})
    # the sse2 and avx2 builds have no hardware fma (libm computes it), the native one has where the CPU does
    assert all(libs[n].ffn_fast_fma() == 0 for n in libs if n != "native")
    assert libs["native"].ffn_fast_fma() == ("fma" in cpu_flags())
    for loss in ft.LOSSES:
        ref = _epochs(libs["native"], loss, True)
        for name in [n for n in libs if n != "native"]:
            assert _epochs(libs[name], loss, True).tobytes() == ref.tobytes(), (loss, name)


def test_kernel_exp_is_accurate(kernel):
    x = np.linspace(-87.0, 0.0, 64 * 1000, dtype=np.float32)  # the domain the kernel takes
    y = np.zeros_like(x)
    kernel.ffn_exp(len(x), x.ctypes.data, y.ctypes.data)
    want = np.exp(x.astype(np.float64))
    assert float(np.max(np.abs(y / want - 1.0))) < 4e-7
    with pytest.raises(ValueError, match="temperatures >= 0.025"):
        native.loss_settings("dcl", {"temperature": 0.01})


def test_pack_and_unpack_are_inverse(kernel):
    params = ft.init_params((0, 1), hidden=7)
    back = native.unpack(kernel, native.pack(kernel, params), 3, 7)
    for a, b in zip(params, back):
        assert torch.equal(a.double(), b)


def test_engines_are_checked_and_the_switch_falls_back_to_fused(monkeypatch, data3):
    with pytest.raises(ValueError, match="engine"):
        ft.train_runs("dcl", True, data3, epochs=1, engine="fast")
    with pytest.raises(ValueError, match="workers"):
        ft.train_runs("dcl", True, data3, epochs=1, workers=0)
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    assert native.status().startswith("torch (native FFN kernel switched off")
    assert ft.resolve_engine("auto", "cpu") == "fused"
    with pytest.raises(RuntimeError, match="switched off"):
        ft.resolve_engine("native", "cpu")


def test_kernel_source_is_the_packaged_c_file():
    src = native.kernel_source()
    assert src == (REPO / "simulations" / "ffn" / "kernel.c").read_text(encoding="utf-8")
    assert f"int ffn_abi(void) {{ return {native.ABI}; }}" in src
    assert re.search(r"#define NORM_FLOOR 1e-6", src)
    with open(REPO / "pyproject.toml", "rb") as fh:
        package_data = tomllib.load(fh)["tool"]["setuptools"]["package-data"]
    assert "kernel.c" in package_data["simulations.ffn"]
