"""Native CPU kernel of the L_class engine: every run advanced through all its steps in one C loop.

Why. The batched torch engine (:mod:`simulations.lclass_engine`) spends a step of a chunk of runs in about
twenty tensor operations: three passes over the state (the mean, the dot products ``z_i . mu``, the rank-one
update) plus the dispatch of each operation, 1.6-2 ns per state entry and step on one core of the
machine this was written on, while the step itself is six flops per entry. This kernel takes one run at
a time, its state (k x d float64, 83 KB padded at k = d = 100) staying in the L1/L2 cache for all its
steps (time-blocking at the grain of one run), in two passes per step over blocks of four rows: the dot
products and the update, then, over the same rows, the next mean. Measured on that machine (2-core Xeon,
AVX-512, shared with other jobs): 0.2-0.3 ns per entry and step in a C driver (k = 20..100, 2000 steps,
best of 7), 0.35-0.5 ns inside the sweeps of :mod:`benchmarks.bench_lclass`; the sweep of that benchmark
in 0.7-0.8 s against 2.2-2.7 s for the torch engine, Figure 3's search in about 4 s against 23 s. Fused
multiply-adds gained 5-15 % there, within the noise, and are not used (they would change the bits
between machines with and without them).

Same steps, same decisions. The arithmetic is the Appendix D step exactly as the torch engine does it
(tracked row norms ``r_i``, ``z_i <- z_i - c r_i mu``, ``r_i' = r_i sqrt(1 - 2 c x_i.mu + c^2 ||mu||^2)``,
exact renormalisation every ``renorm_every`` steps and of any row that has shrunk below
:data:`DRIFT_R`, the collapse criterion and the early "stable" decision
every ``check_every`` steps), in float64; only the order of the additions inside a dot product or a mean
differs from the BLAS calls of the torch engine, so both agree to round-off (tests: identical collapse
steps on the loop-reference cases and on sweeps across the threshold, and Figure 3's CSV files
byte-identical with either engine). The sums have one fixed order, whatever vector width the compiler
targets (8 logical lanes, lane ``j mod 8``, added in a fixed tree; the source is compiled with
``-ffp-contract=off``), so the kernel gives the same bits on every machine it compiles on.

Build. The C source below is compiled on first use with the system C compiler (``$CC``, else ``cc``,
``gcc`` or ``clang``; ``-O3 -march=native``, retried without ``-march=native``), and the shared library is
cached under ``$CLOP_LCLASS_CACHE`` (default ``$XDG_CACHE_HOME/clop-verify``, else ``~/.cache/clop-verify``,
else a temporary folder), keyed by a hash of the source, the flags, the compiler's version and the CPU
(``/proc/cpuinfo``), so a library built for one CPU is never loaded on another. Where no compiler works,
or with ``CLOP_LCLASS_NATIVE=0``, the engine uses its torch code on the CPU instead (:func:`status` says
which and why). The kernel uses ``torch.get_num_threads()`` threads, one group of runs per thread
(ctypes releases the GIL during the call); the scripts set that count with ``--threads`` (default 1).
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

__all__ = ["available", "status", "decide", "ENV_SWITCH", "ENV_CACHE"]

ENV_SWITCH = "CLOP_LCLASS_NATIVE"
"""Environment variable: ``0`` (or ``off``, ``false``, ``no``) keeps the engine on its torch code."""

ENV_CACHE = "CLOP_LCLASS_CACHE"
"""Environment variable: folder for the compiled kernel (default ``$XDG_CACHE_HOME/clop-verify``)."""

LANES = 8  # logical lanes of every sum (fixed: the order of additions does not depend on the vector width)
ROW_BLOCK = 4  # rows per block (the state of a run is padded to a multiple of ROW_BLOCK rows, LANES columns)
DRIFT_R = 2.0**-10
"""A row is normalised exactly once it has shrunk below this fraction of its length at its last
normalisation (both engines; the ``#define`` of the C source holds the same number). Why: if
``||z_i||^2 = r_i^2 (1 + d)``, one step gives ``||z_i'||^2 = r_i'^2 (1 + d / f_i)`` with
``f_i = ||x_i - c mu||^2`` and ``r_i' = r_i sqrt(f_i)``, so the error of the tracked norm grows by exactly
``1 / r_i^2`` since the last normalisation. Where rows keep shrinking (``f_i < 1`` step after step: seen
with m < k, e.g. k = 3, m = 2, eta = 2.5, where two rows shrink by ``f ~ 0.2`` a step), the periodic
renormalisation came too late: round-off grew to order 1 within 30 steps and 5 of 400 such runs were
reported collapsed that do not collapse (checked against a 60-digit computation). At 2^-10 the error stays
below 2^20 x round-off, ~1e-10."""

_SOURCE = r"""
/* L_class engine kernel (simulations/lclass_native.py). float64; fixed summation order (8 lanes). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__)
#define VW 8
#elif defined(__AVX__)
#define VW 4
#else
#define VW 2
#endif
#define LANES 8
#define NV (LANES / VW)
#define ROWS 4
#ifndef DRIFT_R
#define DRIFT_R 0.0009765625 /* = DRIFT_R of the module: 2^-10 (-DDRIFT_R=... only for the tests) */
#endif

typedef double vd __attribute__((vector_size(VW * sizeof(double))));

static inline vd vload(const double *p) { vd v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(double *p, vd v) { memcpy(p, &v, sizeof v); }

/* the 8 logical lanes acc[q][l] (lane q*VW + l) added in one fixed order, whatever VW is */
static inline double lanes_sum(const vd *acc) {
    double a[LANES];
    for (int q = 0; q < NV; ++q)
        for (int l = 0; l < VW; ++l) a[q * VW + l] = acc[q][l];
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* sum of squares of v[0..D), D a multiple of LANES */
static inline double sumsq(const double *restrict v, int D) {
    vd acc[NV];
    for (int q = 0; q < NV; ++q) acc[q] = (vd){0};
    for (int j = 0; j < D; j += LANES)
        for (int q = 0; q < NV; ++q) {
            vd x = vload(v + j + q * VW);
            acc[q] += x * x;
        }
    return lanes_sum(acc);
}

static inline void scale(double *restrict v, double s, int D) {
    for (int j = 0; j < D; j += VW) vstore(v + j, vload(v + j) * s);
}

/* v <- v / ||v|| (a zero row stays zero) */
static inline void normalise(double *restrict v, int D) { scale(v, 1.0 / fmax(sqrt(sumsq(v, D)), 1e-300), D); }

/* rows z[0..ROWS) (stride D): p[r] = z_r . mu, then z_r += a[r] mu, in one pass */
static inline void block_dot_update(double *restrict z, const double *restrict mu, int D, const double *a,
                                    double *p) {
    vd acc[ROWS][NV];
    for (int r = 0; r < ROWS; ++r)
        for (int q = 0; q < NV; ++q) acc[r][q] = (vd){0};
    for (int j = 0; j < D; j += LANES)
        for (int q = 0; q < NV; ++q) {
            const vd m = vload(mu + j + q * VW);
            for (int r = 0; r < ROWS; ++r) {
                double *zr = z + (size_t)r * D + j + q * VW;
                const vd x = vload(zr);
                acc[r][q] += x * m;
                vstore(zr, x + a[r] * m);
            }
        }
    for (int r = 0; r < ROWS; ++r) p[r] = lanes_sum(acc[r]);
}

/* nu += sum_r w[r] z_r over a block of ROWS rows */
static inline void block_mean(double *restrict nu, const double *restrict z, int D, const double *w) {
    const double *z0 = z, *z1 = z + D, *z2 = z + 2 * (size_t)D, *z3 = z + 3 * (size_t)D;
    for (int j = 0; j < D; j += VW)
        vstore(nu + j, vload(nu + j) + ((w[0] * vload(z0 + j) + w[1] * vload(z1 + j)) +
                                        (w[2] * vload(z2 + j) + w[3] * vload(z3 + j))));
}

/* One run: z (K x D, row-major; rows >= k and columns >= d are zero) advanced in place until it is
   decided. scratch: 2 D + 3 K doubles. Returns the state entries updated (K D per step). */
static int64_t run_one(double *restrict z, int k, int K, int D, double eta, int steps, double thr,
                       int early_exit, int check_every, int renorm_every, double stable_mean,
                       double log_reach, double *restrict scratch, int64_t *collapse, int64_t *decided) {
    double *mu = scratch, *nu = scratch + D, *r = scratch + 2 * (size_t)D, *p = r + K, *w = p + K;
    const double kd = (double)k;
    const double c = eta * kd / ((kd - 1.0) + eta);  /* c = eta k / (k - 1 + eta) */
    const double c2 = c * c, inv_k = 1.0 / kd, m2c = -2.0 * c;
    const double log_growth = log(fmax(fabs(1.0 - c), 1.0));
    double a[ROWS];
    for (int i = 0; i < K; ++i) {
        r[i] = 1.0;
        w[i] = 0.0;
    }
    for (int i = 0; i < k; ++i) {
        normalise(z + (size_t)i * D, D);
        w[i] = inv_k;
    }
    memset(mu, 0, sizeof(double) * (size_t)D);
    for (int i = 0; i < K; i += ROWS) block_mean(mu, z + (size_t)i * D, D, w + i);
    double mm = sumsq(mu, D);
    int64_t first = -1, work = 0;
    int t = 0;
    for (;; ++t) {
        if (first < 0 && mm >= thr) first = t;
        if (t == steps) break;
        if (early_exit && t % check_every == 0) {
            if (first >= 0) break;
            const double mn = sqrt(mm);
            const int rem = steps - t;
            if (mn < stable_mean && log(fmax(mn, 1e-12) + 1e-16 * rem) + rem * log_growth < log_reach) break;
        }
        work += (int64_t)K * D;
        /* z_i . mu and z_i <- z_i - c r_i mu (padding rows: a = 0, they stay zero) */
        for (int i = 0; i < K; i += ROWS) {
            for (int l = 0; l < ROWS; ++l) a[l] = i + l < k ? -c * r[i + l] : 0.0;
            block_dot_update(z + (size_t)i * D, mu, D, a, p + i);
        }
        /* r_i <- r_i sqrt(max(0, 1 - 2 c x_i.mu + c^2 ||mu||^2)), at least 1e-300; a row that has shrunk below
           DRIFT_R since it was last normalised (its tracked norm's error may have grown 1/r_i^2-fold) is
           normalised now */
        for (int i = 0; i < k; ++i) {
            const double ri = r[i];
            double f = c2 * mm + m2c * (p[i] / ri) + 1.0;
            f = f > 0.0 ? f : 0.0;
            const double v = ri * sqrt(f);
            r[i] = v > 1e-300 ? v : 1e-300;
            if (r[i] < DRIFT_R) {
                normalise(z + (size_t)i * D, D);
                r[i] = 1.0;
            }
        }
        if ((t + 1) % renorm_every == 0)
            for (int i = 0; i < k; ++i) {
                normalise(z + (size_t)i * D, D);
                r[i] = 1.0;
            }
        for (int i = 0; i < k; ++i) w[i] = inv_k / r[i];
        /* the next mean, over the rows just updated (still in cache) */
        memset(nu, 0, sizeof(double) * (size_t)D);
        for (int i = 0; i < K; i += ROWS) block_mean(nu, z + (size_t)i * D, D, w + i);
        double *tmp = mu;
        mu = nu;
        nu = tmp;
        mm = sumsq(mu, D);
    }
    *collapse = first;
    *decided = t;
    return work;
}

int lclass_abi(void) { return 1; }

int lclass_vector_width(void) { return VW; }

/* n runs; run i: state at z + offsets[i], k = ks[i], padded K = kpad[i] rows, D = dpad[i] columns */
int64_t lclass_decide(int n, const int64_t *offsets, const int32_t *ks, const int32_t *kpad,
                      const int32_t *dpad, double *z, const double *etas, int steps, double thr,
                      int early_exit, int check_every, int renorm_every, double stable_mean,
                      double log_reach, double *scratch, int64_t *collapse, int64_t *decided) {
    int64_t work = 0;
    for (int i = 0; i < n; ++i)
        work += run_one(z + offsets[i], ks[i], kpad[i], dpad[i], etas[i], steps, thr, early_exit,
                        check_every, renorm_every, stable_mean, log_reach, scratch, collapse + i,
                        decided + i);
    return work;
}
"""

_ABI = 1
_BASE_FLAGS = ("-O3", "-std=gnu99", "-fPIC", "-shared", "-ffp-contract=off", "-fno-math-errno")
_ARCH_FLAGS = (("-march=native",), ())  # tried in this order

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_error: str | None = None
_tried = False


def _disabled() -> bool:
    return os.environ.get(ENV_SWITCH, "").strip().lower() in ("0", "off", "false", "no")


def _compiler() -> list[str] | None:
    cc = os.environ.get("CC", "").strip()
    if cc:
        parts = shlex.split(cc)
        return parts if shutil.which(parts[0]) else None
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [path]
    return None


def _cpu_fingerprint() -> str:
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


def _cache_dir() -> Path:
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clop-verify"


def _writable_dir(path: Path) -> Path | None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".probe-", delete=True)
        probe.close()
        return path
    except OSError:
        return None


def _compile(cc: list[str], out_dir: Path,
             arch_flags: Sequence[Sequence[str]] = _ARCH_FLAGS) -> tuple[Path | None, str]:
    """Compile the kernel into ``out_dir`` (cached by key), trying each of ``arch_flags`` in turn; returns
    (library path or None, message)."""
    try:
        version = subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{cc[0]} --version failed: {exc}"
    errors = []
    for arch in arch_flags:
        flags = [*_BASE_FLAGS, *arch]
        key = hashlib.sha256("\0".join([_SOURCE, " ".join(cc), " ".join(flags), version, _cpu_fingerprint()])
                             .encode()).hexdigest()[:20]
        lib = out_dir / f"lclass_kernel_{key}.so"
        if lib.is_file():
            return lib, f"cached {lib}"
        fd, src = tempfile.mkstemp(dir=out_dir, prefix=f".lclass_{key}_", suffix=".c")
        tmp_lib = src[:-2] + ".so"
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(_SOURCE)
            proc = subprocess.run([*cc, *flags, "-o", tmp_lib, src, "-lm"], capture_output=True, text=True,
                                  timeout=300)
            if proc.returncode == 0:
                os.replace(tmp_lib, lib)  # atomic: a concurrent build of the same key writes the same bytes
                return lib, f"compiled {lib}"
            errors.append(f"{' '.join(flags)}: {(proc.stderr or proc.stdout).strip()[-300:]}")
        except (OSError, subprocess.SubprocessError) as exc:
            errors.append(f"{' '.join(flags)}: {exc}")
        finally:
            for path in (src, tmp_lib):
                try:
                    os.unlink(path)
                except OSError:
                    pass
    return None, "compilation failed: " + " | ".join(errors)


def _load() -> ctypes.CDLL | None:
    """The compiled kernel, building it on the first call of the process; None where it cannot be had."""
    global _lib, _error, _tried
    with _lock:
        if _tried:
            return _lib
        _tried = True
        cc = _compiler()
        if cc is None:
            _error = "no C compiler found ($CC, cc, gcc, clang)"
            return None
        out_dir = _writable_dir(_cache_dir()) or Path(tempfile.mkdtemp(prefix="clop-lclass-"))
        path, msg = _compile(cc, out_dir)
        if path is None:
            _error = msg
            return None
        try:
            lib = _open(path)
        except (OSError, AttributeError) as exc:
            _error = f"loading {path} failed: {exc}"
            return None
        _lib = lib
        _error = None
        return lib


def _open(path: Path) -> ctypes.CDLL:
    """Load a compiled kernel and declare its entry point."""
    lib = ctypes.CDLL(str(path))
    if lib.lclass_abi() != _ABI:
        raise OSError(f"ABI {lib.lclass_abi()} != {_ABI}")
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
    """First collapse step (-1: none), decision step and work of every run, as the torch engine's ``_decide``.

    inits[i]: (k_i, d_i) float64 CPU tensor of unit rows. The runs are split into groups of at most
    ``group_bytes`` of padded state (and into at least ``threads`` groups), one kernel call per group, run
    on ``threads`` threads (default ``torch.get_num_threads()``). With ``final_states`` the final states
    are returned too, a list of (k_i, d_i) arrays of the unnormalised rows ``z`` (for the tests). ``lib``:
    a kernel loaded with :func:`_open` (the tests build variants), default the cached one. Raises
    RuntimeError when the kernel is unavailable (check :func:`available` first).
    """
    if lib is None:
        lib = _load()
        if lib is None or _disabled():
            raise RuntimeError(status())
    n = len(inits)
    cs = np.full(n, -1, dtype=np.int64)
    ds = np.full(n, steps, dtype=np.int64)
    if n == 0:
        return (cs, ds, 0, []) if final_states else (cs, ds, 0)
    threads = torch.get_num_threads() if threads is None else max(1, int(threads))
    mats = [a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, dtype=np.float64)
            for a in inits]
    sizes = [_pad(a.shape[0], ROW_BLOCK) * _pad(a.shape[1], LANES) for a in mats]
    groups = _groups(sizes, group_bytes, threads)
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
    work = 0
    finals: list[np.ndarray | None] = [None] * n
    for g, (c, d, w, f) in zip(groups, results):
        cs[g] = c
        ds[g] = d
        work += w
        if f is not None:
            for i, state in zip(g, f):
                finals[i] = state
    return (cs, ds, work, finals) if final_states else (cs, ds, work)
