"""Native CPU kernel of the fused FFN training (CLOP paper, arXiv 2403.18699, Sec. 4): ``kernel.c`` beside this module.

The kernel computes the formulas of :mod:`simulations.ffn.grads` and :mod:`simulations.ffn.fused` (forward pass,
closed-form loss gradients, backward pass, Adam) one run at a time through a whole epoch, its state (about
50 KB of weights, moments and activations, and the 2B x 2B similarity matrix of InfoNCE / DCL) in the L1/L2
cache. Its sums have one fixed order and its multiply-adds are IEEE fused multiply-adds where the source says
so and nowhere else (kernel.c), so it gives the same bits on every machine it compiles on and for any split of
the runs over threads; that arithmetic differs from torch's, so its per-run numbers differ from the torch
implementation's by round-off that training amplifies (docs/performance.md). The default engine uses it only
where the build has hardware fused multiply-adds (:func:`available`).

Build: compiled on first use with :data:`BASE_FLAGS` (``-march=native``, retried without it) and cached by
:mod:`simulations.native_build` (checked against its recorded SHA-256 before every load). ``CLOP_FFN_NATIVE=0``
switches it off; then, or where no compiler works, the fused training runs as torch operations
(:mod:`simulations.ffn.fused`). :func:`status` says which and why. A build with ``-DFFN_DOUBLE``
(:func:`compile_kernel`) computes in float64, for the tests.

Parameter layout of one run (:func:`pack`): W1 (D, Hp), b1 (Hp), W2 (Hp, Hp), b2 (Hp), W3 transposed (D, Hp),
b3 (D), flattened and concatenated, with the hidden width padded to a multiple of the kernel's lanes by zero
weights (their gradients are exactly zero, so they stay zero).
"""

from __future__ import annotations

import ctypes
import os
import threading
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from simulations import native_build

__all__ = ["ENV_SWITCH", "ABI", "BASE_FLAGS", "ARCH_FLAGS", "LOSS_IDS", "MAX_DIM", "MIN_TEMPERATURE", "kernel_source",
           "compile_kernel", "open_kernel", "available", "status", "loaded", "pack", "unpack", "loss_settings",
           "Kernel"]

ENV_SWITCH = "CLOP_FFN_NATIVE"
"""Environment variable: ``0`` (or ``off``, ``false``, ``no``) keeps the fused training on torch operations."""
ABI = 1
"""Version of the kernel's C interface (``ffn_abi()``); a library reporting another is refused."""
BASE_FLAGS = ("-O3", "-std=gnu99", "-fPIC", "-shared", "-ffp-contract=off", "-fno-math-errno")
"""Compiler flags of every build (no fused multiply-adds: the same bits on every machine)."""
ARCH_FLAGS = (("-march=native",), ())
"""Architecture flags, tried in this order."""
LOSS_IDS = {"infonce": 0, "dcl": 1, "barlowtwins": 2, "vicreg": 3}
"""The kernel's number of each base loss."""
MAX_DIM = 4
"""Largest input / output dimension the kernel takes (the experiment's is 3)."""

_lock = threading.Lock()
_libs: dict[str, ctypes.CDLL | None] = {}
_errors: dict[str, str] = {}

def kernel_source() -> str:
    """The C source of the kernel (``kernel.c``, installed with the package)."""
    return resources.files("simulations.ffn").joinpath("kernel.c").read_text(encoding="utf-8")


def _disabled() -> bool:
    return os.environ.get(ENV_SWITCH, "").strip().lower() in ("0", "off", "false", "no")


def compile_kernel(cc: list[str], out_dir: Path,
                   arch_flags: Sequence[Sequence[str]] = ARCH_FLAGS) -> tuple[Path | None, str]:
    """Compile the kernel into ``out_dir`` (cached by key, checked before reuse), trying each of ``arch_flags``
    in turn; returns (library path or None, message). ``("-DFFN_DOUBLE",)`` builds the float64 variant."""
    return native_build.compile_cached("ffn_kernel", kernel_source(), cc, out_dir, BASE_FLAGS, arch_flags)


def open_kernel(path: Path) -> ctypes.CDLL:
    """Load a compiled kernel (after :func:`simulations.native_build.check_library`) and declare its entry
    points; OSError when a check fails or its ABI is not :data:`ABI`."""
    lib = native_build.load_library(path)
    if lib.ffn_abi() != ABI:
        raise OSError(f"ABI {lib.ffn_abi()} != {ABI}")
    p, i, i64, d = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_double
    lib.ffn_param_count.restype = i64
    lib.ffn_param_count.argtypes = [i, i]
    lib.ffn_scratch_size.restype = i64
    lib.ffn_scratch_size.argtypes = [i, i, i]
    lib.ffn_epoch.restype = i
    lib.ffn_epoch.argtypes = [i, i, i, i, i, p, p, p, i64, p, p, p, p, i, p, d, d, d, d, d, p, p]
    lib.ffn_forward.restype = None
    lib.ffn_forward.argtypes = [i, i, i, i, p, p, p, p]
    lib.ffn_loss_grad.restype = d
    lib.ffn_loss_grad.argtypes = [i, i, p, p, i, p, d, p, p]
    lib.ffn_param_grad.restype = d
    lib.ffn_param_grad.argtypes = [i, i, i, p, p, p, i, p, d, p, p]
    lib.ffn_exp.restype = None
    lib.ffn_exp.argtypes = [i, p, p]
    lib.ffn_fast_fma.restype = i
    return lib


def _variant(dtype: torch.dtype) -> str:
    if dtype == torch.float32:
        return "float32"
    if dtype == torch.float64:
        return "float64"
    raise ValueError(f"the native FFN kernel computes in float32 or float64; got dtype {dtype}")


def _load(variant: str = "float32") -> ctypes.CDLL | None:
    """The compiled kernel (``float32``, or the ``float64`` build), building it on the first call of the
    process; None where it cannot be had."""
    with _lock:
        if variant in _libs:
            return _libs[variant]
        _libs[variant] = None
        cc = native_build.find_compiler()
        if cc is None:
            _errors[variant] = "no C compiler found ($CC, cc, gcc, clang)"
            return None
        extra = ("-DFFN_DOUBLE",) if variant == "float64" else ()
        path, msg = compile_kernel(cc, native_build.default_out_dir(), [(*a, *extra) for a in ARCH_FLAGS])
        if path is None:
            _errors[variant] = msg
            return None
        try:
            _libs[variant] = open_kernel(path)
        except (OSError, AttributeError) as exc:
            _errors[variant] = f"loading {path} failed: {exc}"
            native_build.note(f"{_errors[variant]}; the FFN training uses torch operations")
        return _libs[variant]


def available() -> bool:
    """True when the kernel is enabled, compiled (compiles it on the first call) and fast: built with hardware
    fused multiply-adds (elsewhere libm computes them, with the same bits, many times slower)."""
    if _disabled():
        return False
    lib = _load()
    return lib is not None and bool(lib.ffn_fast_fma())


def status() -> str:
    """One line: which code runs the fused FFN training on the CPU by default, and why."""
    if _disabled():
        return f"torch (native FFN kernel switched off by {ENV_SWITCH})"
    lib = _load()
    if lib is None:
        return f"torch (native FFN kernel unavailable: {_errors.get('float32')})"
    if not lib.ffn_fast_fma():
        return f"torch (the native FFN kernel {lib._name} has no hardware fused multiply-add on this CPU)"
    return f"native kernel ({lib.ffn_vector_width()} floats per vector, {lib._name})"


def loaded(dtype: torch.dtype = torch.float32) -> ctypes.CDLL:
    """The kernel that computes in ``dtype`` (float32, or float64 for the tests); RuntimeError naming the
    reason where it is unavailable or switched off."""
    variant = _variant(dtype)
    lib = None if _disabled() else _load(variant)
    if lib is None:
        if _disabled():
            raise RuntimeError(status())
        raise RuntimeError(f"native FFN kernel ({variant}) unavailable: {_errors.get(variant)}")
    return lib


def _padded(lib: ctypes.CDLL, n: int) -> int:
    lanes = lib.ffn_lanes()
    return -(-n // lanes) * lanes


def pack(lib: ctypes.CDLL, params: list[torch.Tensor]) -> np.ndarray:
    """The stacked parameters of :func:`simulations.ffn.train.init_params` (S runs) as the kernel's (S, P)
    array (module docstring), in the kernel's float type."""
    w1, b1, w2, b2, w3, b3 = (p.detach().cpu().double().numpy() for p in params)
    s_, dim, hidden = w1.shape
    hp = _padded(lib, hidden)
    dtype = np.float64 if lib.ffn_real_bytes() == 8 else np.float32
    out = np.zeros((s_, int(lib.ffn_param_count(dim, hp))), dtype=dtype)
    parts = [(w1, (dim, hp)), (b1[:, 0, :], (hp,)), (w2, (hp, hp)), (b2[:, 0, :], (hp,)),
             (np.swapaxes(w3, 1, 2), (dim, hp)), (b3[:, 0, :], (dim,))]
    start = 0
    for value, shape in parts:
        size = int(np.prod(shape))
        block = np.zeros((s_, *shape), dtype=dtype)
        block[(slice(None), *(slice(0, n) for n in value.shape[1:]))] = value
        out[:, start : start + size] = block.reshape(s_, size)
        start += size
    return out


def unpack(lib: ctypes.CDLL, flat: np.ndarray, dim: int, hidden: int) -> list[torch.Tensor]:
    """The inverse of :func:`pack`: [W1 (S, d, h), b1 (S, 1, h), W2 (S, h, h), b2 (S, 1, h), W3 (S, h, d),
    b3 (S, 1, d)] as float64 tensors (also the layout of a gradient)."""
    hp = _padded(lib, hidden)
    s_ = flat.shape[0]
    shapes = [(dim, hp), (hp,), (hp, hp), (hp,), (dim, hp), (dim,)]
    blocks, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        blocks.append(torch.from_numpy(np.array(flat[:, start : start + size], dtype=np.float64)).reshape(s_, *shape))
        start += size
    w1, b1, w2, b2, w3t, b3 = blocks
    return [w1[:, :, :hidden], b1[:, None, :hidden], w2[:, :hidden, :hidden], b2[:, None, :hidden],
            w3t[:, :, :hidden].transpose(1, 2).contiguous(), b3[:, None, :]]


MIN_TEMPERATURE = 0.025
"""Smallest temperature the kernel takes: its exponentials cover [-2/tau, 0], within [-87, 0] (kernel.c)."""


def loss_settings(name: str, params: dict[str, float]) -> np.ndarray:
    """The kernel's settings array of a base loss (``params``: :data:`simulations.ffn.grads.LOSS_PARAMS`);
    ValueError for a temperature below :data:`MIN_TEMPERATURE`."""
    if name in ("infonce", "dcl") and not params["temperature"] >= MIN_TEMPERATURE:
        raise ValueError(f"the native FFN kernel takes temperatures >= {MIN_TEMPERATURE}; got {params['temperature']}")
    keys = {"infonce": ("temperature",), "dcl": ("temperature",), "barlowtwins": ("lambda_offdiag", "eps"),
            "vicreg": ("sim_weight", "var_weight", "cov_weight", "eps", "gamma")}[name]
    return np.array([params[k] for k in keys] + [0.0] * (8 - len(keys)), dtype=np.float64)


def _ptr(a: np.ndarray | None):
    return None if a is None else a.ctypes.data


class Kernel:
    """The kernel's state for S runs: parameters, Adam moments and scratch, advanced one epoch per call.

    ``lib``: a kernel from :func:`open_kernel` (float32 or float64 build); ``params``: the initial stacked
    parameters (:func:`simulations.ffn.train.init_params`); ``batch``: the mini-batch size (at most N).
    """

    def __init__(self, lib: ctypes.CDLL, params: list[torch.Tensor], batch: int, n_points: int):
        self.lib = lib
        self.dim, self.hidden = int(params[0].shape[1]), int(params[0].shape[2])
        if self.dim > MAX_DIM:
            raise ValueError(f"the native FFN kernel takes inputs of at most {MAX_DIM} dimensions; got {self.dim}")
        self.hp = _padded(lib, self.hidden)
        self.dtype = np.float64 if lib.ffn_real_bytes() == 8 else np.float32
        self.flat = pack(lib, params)
        self.m = np.zeros_like(self.flat)
        self.v = np.zeros_like(self.flat)
        self.batch = min(batch, n_points)
        self.scratch = np.zeros(int(lib.ffn_scratch_size(self.batch, self.dim, self.hp)), dtype=self.dtype)
        self.steps = 0

    def _array(self, t: torch.Tensor | None) -> np.ndarray | None:
        if t is None:
            return None
        return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=self.dtype)

    def epoch(self, v1: torch.Tensor, v2: torch.Tensor, order: torch.Tensor, row_protos: torch.Tensor | None,
              loss: str, settings: np.ndarray, clop_lambda: float, lr: float, betas: tuple[float, float],
              eps: float, want_loss: bool) -> np.ndarray | None:
        """One epoch of every run (views v1, v2: (S, N, D); order: (S, N); row_protos: (S, N, D) or None).
        Returns the per-run base loss averaged over the epoch's batches when ``want_loss``."""
        s_, n, d = v1.shape
        a1, a2, cr = self._array(v1), self._array(v2), self._array(row_protos)
        ordr = np.ascontiguousarray(order.cpu().numpy(), dtype=np.int64)
        out = np.zeros(s_, dtype=np.float64) if want_loss else None
        self.lib.ffn_epoch(s_, n, d, self.hp, self.batch, _ptr(self.flat), _ptr(self.m), _ptr(self.v), self.steps,
                           _ptr(a1), _ptr(a2), _ptr(ordr), _ptr(cr), LOSS_IDS[loss], _ptr(settings),
                           float(clop_lambda), float(lr), float(betas[0]), float(betas[1]), float(eps),
                           _ptr(self.scratch), _ptr(out))
        self.steps += -(-n // self.batch)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) of every run: x (S, M, D) -> (S, M, D), float32 or float64 as the kernel computes."""
        s_, m, d = x.shape
        xs = self._array(x)
        out = np.zeros((s_, m, d), dtype=self.dtype)
        scratch = np.zeros(int(self.lib.ffn_scratch_size(2, d, self.hp)), dtype=self.dtype)
        self.lib.ffn_forward(s_, m, d, self.hp, _ptr(self.flat), _ptr(xs), _ptr(out), _ptr(scratch))
        return torch.from_numpy(out)
