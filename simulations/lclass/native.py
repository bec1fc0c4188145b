"""Native CPU kernel of the L_class engine: every run advanced through all its steps in one C loop.

The C source is ``kernel.c`` beside this module (package data, read with :mod:`importlib.resources`).
It takes one run at a time, its state (k x d float64) staying in the L1/L2 cache for all its steps, in
one pass per step over blocks of :data:`ROW_BLOCK` rows: the dot products ``z_i . mu``, the rank-one update
and the rows' new norms of one block, then the previous block's share of the next mean (that block is still
in L1, and its work hides the latency of the square roots and divisions of the current one).

Same steps, same decisions. The arithmetic is the Appendix D step exactly as the torch engine of
:mod:`simulations.lclass.engine` does it (tracked row norms ``r_i``, ``z_i <- z_i - c r_i mu``,
``r_i' = r_i sqrt(1 - 2 c x_i.mu + c^2 ||mu||^2)``, exact renormalisation every ``renorm_every`` steps and
of any row that has shrunk below :data:`DRIFT_R`, the collapse criterion and the early "stable" decision
every ``check_every`` steps), in float64; only the order of the additions inside a dot product or a mean
differs from the BLAS calls of the torch engine, so both agree to round-off. The sums have one fixed order,
whatever vector width the compiler targets (:data:`LANES` logical lanes, lane ``j mod 8``, added in a fixed
tree; compiled with ``-ffp-contract=off``, no fused multiply-adds), so the kernel gives the same bits on
every machine it compiles on.

Build. The kernel is compiled on first use with the system C compiler (:data:`BASE_FLAGS` with
``-march=native``, retried without it) and cached by :mod:`simulations.native_build`, which names the
library by a hash of the source, the flags, the compiler and the CPU, and loads a cached file only when it
matches the SHA-256 recorded beside it and nobody but the user can write it (otherwise it is rebuilt, with a
note on stderr). Where no compiler works, or with ``CLOP_LCLASS_NATIVE=0``, the engine uses its torch code
on the CPU instead (:func:`status` says which and why).

Threads. The runs are independent and the kernel takes one at a time, so they are split into groups, one
kernel call per group, on ``threads`` threads (ctypes releases the GIL during the call); the default is every
core this process may use, or ``$CLOP_NATIVE_THREADS`` (:func:`simulations.native_build.default_threads`),
whatever torch's thread count. Each run's arithmetic is the same in every group, so any number of threads
gives the same bits.
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from simulations import native_build

__all__ = [
    "ENV_SWITCH", "LANES", "ROW_BLOCK", "DRIFT_R", "ABI", "BASE_FLAGS", "ARCH_FLAGS",
    "kernel_source", "compile_kernel", "open_kernel", "available", "status", "decide",
]

ENV_SWITCH = "CLOP_LCLASS_NATIVE"
"""Environment variable: ``0`` (or ``off``, ``false``, ``no``) keeps the engine on its torch code."""

LANES = 8
"""Logical lanes of every sum (fixed: the order of additions does not depend on the vector width); the
state of a run is padded to a multiple of LANES columns."""
ROW_BLOCK = 4
"""Rows per block; the state of a run is padded to a multiple of ROW_BLOCK rows."""
DRIFT_R = 2.0**-10
"""A row is normalised exactly once it has shrunk below this fraction of its length at its last
normalisation (both engines; the ``#define`` of kernel.c holds the same number). Why: if
``||z_i||^2 = r_i^2 (1 + d)``, one step gives ``||z_i'||^2 = r_i'^2 (1 + d / f_i)`` with
``f_i = ||x_i - c mu||^2`` and ``r_i' = r_i sqrt(f_i)``, so the error of the tracked norm grows by exactly
``1 / r_i^2`` since the last normalisation. Where rows keep shrinking (``f_i < 1`` step after step, e.g.
k = 3, m = 2, eta = 2.5), periodic renormalisation alone comes too late. At 2^-10 the error stays below
2^20 x round-off, ~1e-10."""

ABI = 1
"""Version of the kernel's C interface (``lclass_abi()``); a library reporting another is refused."""
BASE_FLAGS = ("-O3", "-std=gnu99", "-fPIC", "-shared", "-ffp-contract=off", "-fno-math-errno")
"""Compiler flags of every build."""
ARCH_FLAGS = (("-march=native",), ())
"""Architecture flags, tried in this order."""

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_error: str | None = None
_tried = False


def kernel_source() -> str:
    """The C source of the kernel (``kernel.c``, installed with the package)."""
    return resources.files("simulations.lclass").joinpath("kernel.c").read_text(encoding="utf-8")


def _disabled() -> bool:
    return os.environ.get(ENV_SWITCH, "").strip().lower() in ("0", "off", "false", "no")


def compile_kernel(cc: list[str], out_dir: Path,
                   arch_flags: Sequence[Sequence[str]] = ARCH_FLAGS) -> tuple[Path | None, str]:
    """Compile the kernel into ``out_dir`` (cached by key, checked before reuse), trying each of ``arch_flags``
    in turn; returns (library path or None, message). Extra defines (``("-DDRIFT_R=0",)``) build variants for
    the tests."""
    return native_build.compile_cached("lclass_kernel", kernel_source(), cc, out_dir, BASE_FLAGS, arch_flags)


def _load() -> ctypes.CDLL | None:
    """The compiled kernel, building it on the first call of the process; None where it cannot be had."""
    global _lib, _error, _tried
    with _lock:
        if _tried:
            return _lib
        _tried = True
        cc = native_build.find_compiler()
        if cc is None:
            _error = "no C compiler found ($CC, cc, gcc, clang)"
            return None
        path, msg = compile_kernel(cc, native_build.default_out_dir())
        if path is None:
            _error = msg
            return None
        try:
            lib = open_kernel(path)
        except (OSError, AttributeError) as exc:
            _error = f"loading {path} failed: {exc}"
            native_build.note(f"{_error}; the L_class engine uses its torch code")
            return None
        _lib = lib
        _error = None
        return lib


def open_kernel(path: Path) -> ctypes.CDLL:
    """Load a compiled kernel (after the checks of :func:`simulations.native_build.check_library`) and declare
    its entry point; OSError when a check fails or its ABI is not :data:`ABI`."""
    lib = native_build.load_library(path)
    if lib.lclass_abi() != ABI:
        raise OSError(f"ABI {lib.lclass_abi()} != {ABI}")
    p = ctypes.c_void_p
    lib.lclass_decide.restype = ctypes.c_int64
    lib.lclass_decide.argtypes = [ctypes.c_int, p, p, p, p, p, p, ctypes.c_int, ctypes.c_double, ctypes.c_int,
                                  ctypes.c_int, ctypes.c_int, ctypes.c_double, ctypes.c_double, p, p, p]
    return lib


def available() -> bool:
    """True when the native kernel is enabled and compiled (compiles it on the first call)."""
    return not _disabled() and _load() is not None


def status() -> str:
    """One line: which CPU code the engine uses, and why."""
    if _disabled():
        return f"torch (native kernel switched off by {ENV_SWITCH})"
    lib = _load()
    if lib is None:
        return f"torch (native kernel unavailable: {_error})"
    return f"native kernel ({lib.lclass_vector_width()} doubles per vector, {lib._name})"


def _pad(n: int, block: int) -> int:
    return -(-n // block) * block


def _groups(sizes: Sequence[int], group_bytes: int, parts: int) -> list[list[int]]:
    """Consecutive groups of runs of at most ``group_bytes`` of state each, at least ``parts`` groups."""
    total = sum(sizes)
    cap = max(1, min(group_bytes // 8, -(-total // max(1, parts))))
    out: list[list[int]] = []
    cur: list[int] = []
    size = 0
    for i, s in enumerate(sizes):
        if cur and size + s > cap:
            out.append(cur)
            cur, size = [], 0
        cur.append(i)
        size += s
    if cur:
        out.append(cur)
    return out


def _run_group(lib: ctypes.CDLL, mats: list[np.ndarray], ks: np.ndarray, etas: np.ndarray, steps: int,
               thr: float, early_exit: bool, check_every: int, renorm_every: int, stable_mean: float,
               log_reach: float, final_states: bool) -> tuple[np.ndarray, np.ndarray, int, list[np.ndarray] | None]:
    """One kernel call on the runs ``mats`` (their padded states packed in one buffer)."""
    n = len(mats)
    kpad = np.array([_pad(a.shape[0], ROW_BLOCK) for a in mats], dtype=np.int32)
    dpad = np.array([_pad(a.shape[1], LANES) for a in mats], dtype=np.int32)
    sizes = kpad.astype(np.int64) * dpad
    offsets = np.zeros(n, dtype=np.int64)
    np.cumsum(sizes[:-1], out=offsets[1:])
    z = np.zeros(int(sizes.sum()), dtype=np.float64)
    views = [z[off : off + kk * dd].reshape(kk, dd)[: a.shape[0], : a.shape[1]]
             for a, off, kk, dd in zip(mats, offsets.tolist(), kpad.tolist(), dpad.tolist())]
    for v, a in zip(views, mats):
        v[...] = a
    scratch = np.empty(2 * int(dpad.max()) + 3 * int(kpad.max()), dtype=np.float64)
    cs = np.empty(n, dtype=np.int64)
    ds = np.empty(n, dtype=np.int64)
    k32 = np.ascontiguousarray(ks, dtype=np.int32)
    e64 = np.ascontiguousarray(etas, dtype=np.float64)
    work = lib.lclass_decide(n, offsets.ctypes.data, k32.ctypes.data, kpad.ctypes.data, dpad.ctypes.data,
                             z.ctypes.data, e64.ctypes.data, steps, thr, int(early_exit), check_every,
                             renorm_every, stable_mean, log_reach, scratch.ctypes.data, cs.ctypes.data,
                             ds.ctypes.data)
    return cs, ds, int(work), [v.copy() for v in views] if final_states else None


def _gather(groups: list[list[int]], results: list, n: int, steps: int):
    """The per-group results of :func:`_run_group` put back in the order of the runs."""
    cs = np.full(n, -1, dtype=np.int64)
    ds = np.full(n, steps, dtype=np.int64)
    work = 0
    finals: list[np.ndarray | None] = [None] * n
    for g, (c, d, w, f) in zip(groups, results):
        cs[g] = c
        ds[g] = d
        work += w
        if f is not None:
            for i, state in zip(g, f):
                finals[i] = state
    return cs, ds, work, finals


def decide(
    inits: Sequence[torch.Tensor],
    ks: Sequence[int],
    etas: Sequence[float],
    *,
    steps: int,
    tol: float,
    early_exit: bool,
    check_every: int,
    renorm_every: int,
    stable_mean: float,
    stable_reach: float,
    group_bytes: int,
    threads: int | None = None,
    final_states: bool = False,
    lib: ctypes.CDLL | None = None,
):
    """First collapse step (-1: none), decision step and work of every run, as
    :func:`simulations.lclass.engine.decide_torch` returns them.

    inits[i]: (k_i, d_i) float64 CPU tensor of unit rows. The runs are split into groups of at most
    ``group_bytes`` of padded state (and into at least ``threads`` groups), one kernel call per group, run
    on ``threads`` threads (default :func:`simulations.native_build.default_threads`; the bits do not depend on
    it). With ``final_states`` the final states
    are returned too, a list of (k_i, d_i) arrays of the unnormalised rows ``z`` (for the tests). ``lib``:
    a kernel loaded with :func:`open_kernel` (the tests build variants), default the cached one. Raises
    RuntimeError when the kernel is unavailable (check :func:`available` first).
    """
    if lib is None:
        lib = _load()
        if lib is None or _disabled():
            raise RuntimeError(status())
    n = len(inits)
    if n == 0:
        cs, ds = np.full(0, -1, dtype=np.int64), np.full(0, steps, dtype=np.int64)
        return (cs, ds, 0, []) if final_states else (cs, ds, 0)
    threads = native_build.default_threads() if threads is None else max(1, int(threads))
    mats = [a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, dtype=np.float64)
            for a in inits]
    groups = _groups([_pad(a.shape[0], ROW_BLOCK) * _pad(a.shape[1], LANES) for a in mats], group_bytes,
                     4 * threads if threads > 1 else 1)  # several groups per thread balance unequal runs
    ks_a = np.asarray(ks, dtype=np.int64)
    e_a = np.asarray(etas, dtype=np.float64)
    args = (steps, (1.0 - tol) ** 2, early_exit, check_every, renorm_every, stable_mean, math.log(stable_reach),
            final_states)

    def one(g: list[int]):
        return _run_group(lib, [mats[i] for i in g], ks_a[g], e_a[g], *args)

    if threads > 1 and len(groups) > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            results = list(pool.map(one, groups))
    else:
        results = [one(g) for g in groups]
    cs, ds, work, finals = _gather(groups, results, n, steps)
    return (cs, ds, work, finals) if final_states else (cs, ds, work)
