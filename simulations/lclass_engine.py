"""The stepping engine of :mod:`simulations.lclass`: many runs of the Appendix D step, decided together.

Two implementations of the same steps, chosen by :func:`_decide` (and used by :func:`simulations.lclass.sweep`
and :func:`simulations.lclass.max_stable_lr`):

* on the CPU, the native kernel (:mod:`simulations.lclass_native`): one run at a time through all its
  steps, its state in the L1/L2 cache, the dot products and the update in one pass and the next mean in
  a second pass over the same rows (0.2-0.5 ns per state entry and step, against about 2 ns here);
* on CUDA, or where no C compiler is at hand, batched torch operations on stacked ``(B, K, D)`` tensors
  (:class:`_Batch`; also the stepping code of :func:`simulations.lclass.simulate`, which records
  spectra and losses along the way), the runs split into chunks of at most ``chunk_bytes`` of state, each
  chunk advanced through all its steps (with early exit and compaction) before the next starts.

Chunk sizes (``chunk_bytes``, measured, see :data:`_CPU_CHUNK_BYTES`): the torch engine on the CPU is
fastest when a chunk's state and temporaries stay in the per-core L2 cache, on CUDA when every run is in
one chunk. For the native kernel a chunk is only the unit of one call (and of one thread); each run is
cache-resident anyway.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from clop.util.checks import check_choice, check_size
from simulations import lclass_native

_RENORM_EVERY = 32  # exact renormalisation period; a row is also renormalised once it shrinks below DRIFT_R
_CHECK_EVERY = 16  # period of early-exit checks and chunk compaction
_STABLE_MEAN = 1e-8  # linear-regime threshold of the early "stable" decision
_STABLE_REACH = 1e-4  # the bound on ||mu_N|| that the early "stable" decision guarantees

_CPU_CHUNK_BYTES = 2**20
"""Largest state of one chunk on the CPU: 1 MiB (the per-core L2 cache here is 2 MiB).

Measured with the torch engine, one thread, on a 2-core Xeon (AVX-512, 2 MiB L2 per core) shared with
other jobs (load 1-4.7), CPU seconds:

* Figure 3's benchmark workload (:mod:`benchmarks.bench_lclass`: 1960 runs of k = 3..100, 200 steps each,
  no early exit), min / median / max of 3 interleaved rounds: 0.25 MiB 3.56 / 3.89 / 4.32, 0.5 MiB
  2.84 / 2.88 / 3.31, **1 MiB 2.32 / 2.40 / 2.54**, 2 MiB 2.50 / 2.76 / 2.80, 4 MiB (the previous value)
  2.56 / 2.69 / 2.72, 8 MiB 2.56 / 2.64 / 2.80;
* Figure 3's search (``max_stable_lr(range(3, 101), 100, trials=5, steps=2000)``, early exit), one run
  each: 0.5 MiB 28.6, **1 MiB 22.7**, 2 MiB 24.6, 4 MiB 24.8.

Identical collapse steps and search results at every size. Smaller chunks pay the per-operation dispatch
(about twenty tensor operations per step and chunk) more often; larger ones no longer keep the state and
its temporaries in L2. For the native kernel a chunk is one call's group of runs, and its unit of cache
blocking is one run: the search took 4.1 / 4.2 / 4.4 s at 0.25 MiB, 4.1 / 4.4 / 4.9 at 1 MiB and
4.7 / 4.7 / 4.8 at 16 MiB (3 rounds each).
"""

_CUDA_CHUNK_BYTES = 2**30
"""Largest state of one chunk on CUDA: 1 GiB, in practice every run in one chunk (a step is about twenty
kernel launches whatever the chunk holds, so fewer, larger chunks are faster; not measured here, no GPU)."""


class _Batch:
    """Runs stacked as z: (B, K, D) with tracked row norms; rows >= k_b of run b are zero padding.

    Per-run scalars are stored expanded to contiguous (B, K) tensors so that the per-row arithmetic runs
    as flat vector loops (broadcasting a (B, 1) operand over a short K axis is several times slower).
    """

    _SMALL_K = 16  # below this many rows, the mean is a multiply-and-sum (batched gemv is slower there)

    def __init__(self, z0: torch.Tensor, ks: torch.Tensor, etas: torch.Tensor, ids: torch.Tensor):
        dev = z0.device
        b, kk, _ = z0.shape
        self.z = z0.clone()
        self.ids = ids
        rows = torch.arange(kk, device=dev)
        mask = (rows[None, :] < ks[:, None]).to(torch.float64)  # (B, K)
        c = etas * ks / (ks - 1 + etas)  # (B,)  c = eta k / (k - 1 + eta)
        self.c = c
        self.mask = mask
        self.maskk = (mask / ks[:, None]).contiguous()  # (B, K): mask / k
        self.cneg = (-c[:, None] * mask).contiguous()  # (B, K): -c on real rows, 0 on padding
        self.cc = c[:, None].expand(b, kk).contiguous()  # (B, K): c
        self.c2 = (self.cc * self.cc).contiguous()  # (B, K): c^2
        self.log_growth = torch.log(torch.clamp(torch.abs(1.0 - c), min=1.0))  # (B,)
        self.renormalise()

    def renormalise(self) -> None:
        n = torch.linalg.vector_norm(self.z, dim=-1)  # (B, K)
        self.z.mul_((self.mask / torch.clamp(n, min=1e-300)).unsqueeze(-1))
        self.r = torch.ones_like(n)  # padded rows: r = 1, masked everywhere it is used

    def renormalise_rows(self, rows: torch.Tensor) -> None:
        """Normalise exactly the rows where ``rows`` (B, K) is True (see :data:`lclass_native.DRIFT_R`)."""
        n = torch.linalg.vector_norm(self.z, dim=-1)
        self.z.mul_(torch.where(rows, self.mask / torch.clamp(n, min=1e-300), 1.0).unsqueeze(-1))
        self.r = torch.where(rows, 1.0, self.r)

    def mean(self) -> torch.Tensor:
        """mu: (B, 1, D) of the normalised rows."""
        w = self.maskk / self.r  # (B, K)
        if self.z.shape[1] < self._SMALL_K:
            return (self.z * w.unsqueeze(-1)).sum(dim=1, keepdim=True)
        return torch.bmm(w.unsqueeze(1), self.z)

    def step(self, mu: torch.Tensor, mm: torch.Tensor) -> None:
        """One Appendix D step given mu: (B, 1, D) and ||mu||^2: (B, 1).

        z_i <- z_i - c r_i mu;  r_i <- r_i sqrt(1 - 2 c (z_i.mu)/r_i + c^2 ||mu||^2).
        """
        p = torch.bmm(self.z, mu.transpose(1, 2)).squeeze(-1)  # (B, K): z_i . mu
        self.z.addcmul_((self.cneg * self.r).unsqueeze(-1), mu)
        p.div_(self.r)  # x_i . mu
        fac = torch.mul(self.c2, mm)  # c^2 ||mu||^2
        fac.addcmul_(self.cc, p, value=-2.0).add_(1.0).clamp_(min=0.0).sqrt_()
        # clamp: r stays finite for a row that lands exactly on 0 (e.g. a collapsed run at eta = 1); such a row
        # is then below DRIFT_R and normalised (a zero row stays zero)
        self.r = self.r.mul(fac).clamp_(min=1e-300)
        drift = self.r < lclass_native.DRIFT_R  # the tracked norm's error may have grown 1 / r^2-fold
        # On CUDA the rows are passed through unconditionally (unflagged ones are multiplied by exactly 1):
        # asking drift.any() would make the host wait for the device at every step, where the loop otherwise
        # waits only every _CHECK_EVERY steps. On the CPU the test is free and the guard rarely fires.
        if self.z.is_cuda or bool(drift.any()):
            self.renormalise_rows(drift)

    def x(self) -> torch.Tensor:
        """Normalised rows (zero padding kept): (B, K, D)."""
        return self.z * (self.mask / self.r).unsqueeze(-1)

    def select(self, keep: torch.Tensor) -> None:
        for name in ("z", "ids", "mask", "maskk", "cneg", "cc", "c2", "c", "log_growth", "r"):
            setattr(self, name, getattr(self, name)[keep])


def _stable_now(mn: torch.Tensor, log_growth: torch.Tensor, remaining: int) -> torch.Tensor:
    """Early 'cannot collapse before the horizon' decision (module docstring): bool like mn."""
    reach = torch.log(torch.clamp(mn, min=1e-12) + 1e-16 * remaining) + remaining * log_growth
    return (mn < _STABLE_MEAN) & (reach < math.log(_STABLE_REACH))


def _chunks(sizes: Sequence[tuple[int, int]], chunk_bytes: int) -> list[list[int]]:
    """Split runs (k_i, d_i), given in the order to keep, into groups whose padded state fits chunk_bytes."""
    out: list[list[int]] = []
    cur: list[int] = []
    kmax = dmax = 0
    for i, (k, d) in enumerate(sizes):
        nk, nd = max(kmax, k), max(dmax, d)
        if cur and (len(cur) + 1) * nk * nd * 8 > chunk_bytes:
            out.append(cur)
            cur, nk, nd = [], k, d
        cur.append(i)
        kmax, dmax = nk, nd
    if cur:
        out.append(cur)
    return out


def _default_chunk_bytes(dev: torch.device, chunk_bytes: int | None) -> int:
    if chunk_bytes is None:
        return _CUDA_CHUNK_BYTES if dev.type == "cuda" else _CPU_CHUNK_BYTES
    return check_size("chunk_bytes", chunk_bytes, 1)


def _pad_stack(mats: Sequence[torch.Tensor], dev: torch.device) -> torch.Tensor:
    kk = max(a.shape[0] for a in mats)
    dd = max(a.shape[1] for a in mats)
    z = torch.zeros(len(mats), kk, dd, dtype=torch.float64)
    for i, a in enumerate(mats):  # building the batch (once per chunk), not stepping
        z[i, : a.shape[0], : a.shape[1]] = a
    return z.to(dev)


def _decide_torch(
    inits: Sequence[torch.Tensor],
    ks: Sequence[int],
    etas: Sequence[float],
    *,
    steps: int,
    tol: float,
    dev: torch.device,
    chunk_bytes: int,
    early_exit: bool = True,
) -> tuple[np.ndarray, np.ndarray, int]:
    """The torch engine's :func:`_decide`: chunks of stacked runs, early exit and compaction.

    inits[i]: (k_i, d_i) unit rows. Returns (collapse_step: (n,) int64, -1 = never; decided_step: (n,);
    state entries updated, padding included: sum over steps of B K D).
    """
    n = len(inits)
    order = sorted(range(n), key=lambda i: -inits[i].shape[0] * inits[i].shape[1])
    cstep = np.full(n, -1, dtype=np.int64)
    dstep = np.full(n, steps, dtype=np.int64)
    work = 0
    thr = (1.0 - tol) ** 2
    for group in _chunks([tuple(inits[i].shape) for i in order], chunk_bytes):
        idx = [order[j] for j in group]
        batch = _Batch(
            _pad_stack([inits[i] for i in idx], dev),
            torch.tensor([ks[i] for i in idx], dtype=torch.float64, device=dev),
            torch.tensor([etas[i] for i in idx], dtype=torch.float64, device=dev),
            torch.tensor(idx, dtype=torch.int64, device=dev),
        )
        first = torch.full((len(idx),), -1, dtype=torch.int64, device=dev)
        for t in range(steps + 1):
            mu = batch.mean()
            mm = (mu * mu).sum(-1)  # (B, 1)
            first.masked_fill_((mm[:, 0] >= thr) & (first < 0), t)
            if (early_exit and t % _CHECK_EVERY == 0) or t == steps:
                if t < steps:
                    done = (first >= 0) | _stable_now(torch.sqrt(mm[:, 0]), batch.log_growth, steps - t)
                else:
                    done = torch.ones_like(first, dtype=torch.bool)
                if t == steps or bool(done.any()):
                    ids = batch.ids[done].cpu().numpy()
                    cstep[ids] = first[done].cpu().numpy()
                    dstep[ids] = t
                    keep = ~done
                    if not bool(keep.any()):
                        break
                    batch.select(keep)
                    first = first[keep]
                    mu, mm = mu[keep], mm[keep]
            if t == steps:
                break
            work += batch.z.numel()
            batch.step(mu, mm)
            if (t + 1) % _RENORM_EVERY == 0:
                batch.renormalise()
    return cstep, dstep, work


ENGINES = ("auto", "native", "torch")
"""Values of the ``engine`` argument of :func:`simulations.lclass.sweep` and :func:`~simulations.lclass.max_stable_lr`:
``auto`` (the native kernel on the CPU where it compiles, else the torch engine), ``native`` (the native
kernel, CPU only; an error where it cannot be built) and ``torch`` (batched torch operations)."""


def _check_engine(engine: object, dev: torch.device) -> str:
    """``engine`` lower-cased if valid for ``dev``; ValueError naming it otherwise, RuntimeError when
    ``native`` is asked for and cannot be built."""
    engine = check_choice("engine", engine, ENGINES)
    if engine == "native":
        if dev.type != "cpu":
            raise ValueError(f"engine='native' runs on the CPU only; got device {dev}")
        if not lclass_native.available():
            raise RuntimeError(f"engine='native' asked for, but the engine is {lclass_native.status()}")
    return engine


def _decide(
    inits: Sequence[torch.Tensor],
    ks: Sequence[int],
    etas: Sequence[float],
    *,
    steps: int,
    tol: float,
    dev: torch.device,
    chunk_bytes: int,
    early_exit: bool = True,
    engine: str = "auto",
) -> tuple[np.ndarray, np.ndarray, int]:
    """Collapse within ``steps`` for many runs (different k allowed), with early exit.

    inits[i]: (k_i, d_i) unit rows. Returns (collapse_step: (n,) int64, -1 = never; decided_step: (n,);
    work: state entries updated, padding included, summed over steps). ``engine`` (:data:`ENGINES`):
    with ``auto``, the native kernel on the CPU when it is available
    (:func:`simulations.lclass_native.available`), else the torch engine (:func:`_decide_torch`). Both
    give the same collapse and decision steps on the runs of the tests and of Figure 3 (the tests check
    it); they differ in round-off only. Both track each row's norm between normalisations, whose error
    grows 1/r^2-fold as a row shrinks: with m < k (k = 3, m = 2, eta = 2.5) that once made both report
    collapse where the per-vector loop finds none, which :data:`simulations.lclass_native.DRIFT_R` now
    prevents (tests: the per-vector reference on that case). ``work`` depends on the padding of each.
    """
    engine = _check_engine(engine, dev)
    if engine == "native" or (engine == "auto" and dev.type == "cpu" and lclass_native.available()):
        return lclass_native.decide(
            inits, ks, etas, steps=steps, tol=tol, early_exit=early_exit, check_every=_CHECK_EVERY,
            renorm_every=_RENORM_EVERY, stable_mean=_STABLE_MEAN, stable_reach=_STABLE_REACH,
            group_bytes=chunk_bytes,
        )
    return _decide_torch(inits, ks, etas, steps=steps, tol=tol, dev=dev, chunk_bytes=chunk_bytes,
                         early_exit=early_exit)


def engine_name(dev: str | torch.device = "cpu") -> str:
    """Which code decides runs on ``dev``: the native kernel or the torch engine (with the reason)."""
    dev = torch.device(dev)
    if dev.type != "cpu":
        return f"torch ({dev.type})"
    return lclass_native.status()
