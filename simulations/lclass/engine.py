"""The stepping engine of the L_class model: many runs of the Appendix D step, decided together.

Implementation of one step (float64)
------------------------------------
State per run: unnormalised rows ``z_i`` with tracked norms ``r_i = ||z_i||`` (``x_i = z_i / r_i``). With
``c = eta k / (k - 1 + eta)`` the normalised update (:mod:`simulations.lclass.model`) is
``x_i' ∝ x_i - c mu``, i.e. ``z_i <- z_i - c r_i mu`` (one rank-one update) and
``r_i'^2 = r_i^2 (1 - 2 c x_i.mu + c^2 ||mu||^2)``. Rows are renormalised exactly every
:data:`RENORM_EVERY` steps, and a row that has shrunk below
:data:`simulations.lclass.native.DRIFT_R` since its last normalisation is normalised at once (the drift
guard: the tracked norm's error grows ``1 / r_i^2``-fold as the row shrinks).

Two implementations of the same steps, chosen by :func:`decide` (:data:`ENGINES`):

* on the CPU, the native kernel (:mod:`simulations.lclass.native`): one run at a time through all its
  steps, its state in the L1/L2 cache;
* on CUDA, or where no C compiler is at hand, batched torch operations on stacked ``(B, K, D)`` tensors
  (:class:`Batch`; also the stepping code of :func:`simulations.lclass.simulate.simulate`, which records
  spectra and losses along the way): runs of different k are padded with zero rows that a row mask keeps
  at zero, and each step is a handful of batched tensor operations (two ``bmm`` and one ``addcmul_``) with
  no Python loop over runs. The runs are split into chunks of at most ``chunk_bytes`` of state
  (:data:`CPU_CHUNK_BYTES`, :data:`CUDA_CHUNK_BYTES`), each chunk advanced through all its steps (with
  early exit and compaction) before the next starts.

Both make the same decisions (collapse step, decision step) on every run the tests and Figure 3 cover;
they differ only in the order of additions inside a sum (round-off).

Early decisions (``early_exit=True``). Every :data:`CHECK_EVERY` steps a run is decided when it has
collapsed, or when its mean is so small that it cannot collapse within the remaining steps: ``||mu||``
grows at most by ``g = max(1, |1 - c|)`` per step (:func:`simulations.lclass.model.mean_growth_factor`), so
a run with ``||mu_t|| < STABLE_MEAN`` and ``(max(||mu_t||, 1e-12) + 1e-16 (N - t)) g^(N - t) < STABLE_REACH``
(round-off injection included) is declared stable (:func:`stable_now`): even at the fastest linear growth
it stays below 1e-4 at the horizon N, far from ``1 - tol``. Early exit gives the same decisions as running
every step (tested).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from clop.util.checks import check_choice, check_size
from simulations.lclass import native

__all__ = [
    "RENORM_EVERY", "CHECK_EVERY", "STABLE_MEAN", "STABLE_REACH", "CPU_CHUNK_BYTES", "CUDA_CHUNK_BYTES",
    "ENGINES", "Batch", "stable_now", "split_chunks", "resolve_chunk_bytes", "decide_torch", "check_engine",
    "decide", "engine_name",
]

RENORM_EVERY = 32
"""Exact renormalisation period of every row (a row is also renormalised once it shrinks below DRIFT_R)."""
CHECK_EVERY = 16
"""Period of the early-exit checks and of chunk compaction."""
STABLE_MEAN = 1e-8
"""Linear-regime threshold of the early "stable" decision (module docstring)."""
STABLE_REACH = 1e-4
"""The bound on ``||mu_N||`` that the early "stable" decision guarantees."""

CPU_CHUNK_BYTES = 2**20
"""Largest state of one chunk of the torch engine on the CPU: 1 MiB, so that a chunk's state and its
temporaries stay in a per-core L2 cache (the measurements behind it: docs/simulations.md). For the native
kernel a chunk is only one call's group of runs (and one thread's share); each run is cache-resident anyway."""

CUDA_CHUNK_BYTES = 2**30
"""Largest state of one chunk on CUDA: 1 GiB, in practice every run in one chunk (a step is about twenty
kernel launches whatever the chunk holds, so fewer, larger chunks are faster)."""

ENGINES = ("auto", "native", "torch")
"""Values of the ``engine`` argument of :func:`decide` (and of :func:`simulations.lclass.search.sweep`,
:func:`~simulations.lclass.search.max_stable_lr`): ``auto`` (the native kernel on the CPU where it compiles,
else the torch engine), ``native`` (the native kernel, CPU only; an error where it cannot be built) and
``torch`` (batched torch operations)."""


class Batch:
    """Runs stacked as z: (B, K, D) with tracked row norms; rows >= k_b of run b are zero padding.

    z0: (B, K, D) starts (unit rows, zero padding); ks, etas: (B,) float64; ids: (B,) int64, the runs'
    indices in the caller's list (kept through :meth:`select`). ``drift_r``: the drift guard's threshold
    (default :data:`simulations.lclass.native.DRIFT_R`; 0 switches the guard off, for the tests).

    Per-run scalars are stored expanded to contiguous (B, K) tensors so that the per-row arithmetic runs
    as flat vector loops (broadcasting a (B, 1) operand over a short K axis is several times slower).
    """

    SMALL_K = 16
    """Below this many rows, the mean is a multiply-and-sum (batched gemv is slower there)."""

    def __init__(self, z0: torch.Tensor, ks: torch.Tensor, etas: torch.Tensor, ids: torch.Tensor,
                 drift_r: float = native.DRIFT_R):
        dev = z0.device
        b, kk, _ = z0.shape
        self.z = z0.clone()
        self.ids = ids
        self.drift_r = drift_r
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
        """Normalise every row exactly (tracked norms reset to 1)."""
        n = torch.linalg.vector_norm(self.z, dim=-1)  # (B, K)
        self.z.mul_((self.mask / torch.clamp(n, min=1e-300)).unsqueeze(-1))
        self.r = torch.ones_like(n)  # padded rows: r = 1, masked everywhere it is used

    def renormalise_rows(self, rows: torch.Tensor) -> None:
        """Normalise exactly the rows where ``rows`` (B, K) is True; the others are multiplied by exactly 1."""
        n = torch.linalg.vector_norm(self.z, dim=-1)
        self.z.mul_(torch.where(rows, self.mask / torch.clamp(n, min=1e-300), 1.0).unsqueeze(-1))
        self.r = torch.where(rows, 1.0, self.r)

    def mean(self) -> torch.Tensor:
        """mu: (B, 1, D) of the normalised rows."""
        w = self.maskk / self.r  # (B, K)
        if self.z.shape[1] < self.SMALL_K:
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
        # is then below drift_r and normalised (a zero row stays zero)
        self.r = self.r.mul(fac).clamp_(min=1e-300)
        drift = self.r < self.drift_r  # the tracked norm's error may have grown 1 / r^2-fold
        # On CUDA the rows are passed through unconditionally (unflagged ones are multiplied by exactly 1):
        # asking drift.any() would make the host wait for the device at every step, where the loop otherwise
        # waits only every CHECK_EVERY steps. On the CPU the test is free and the guard rarely fires.
        if self.z.is_cuda or bool(drift.any()):
            self.renormalise_rows(drift)

    def x(self) -> torch.Tensor:
        """Normalised rows (zero padding kept): (B, K, D)."""
        return self.z * (self.mask / self.r).unsqueeze(-1)

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the runs where ``keep`` (B,) is True."""
        for name in ("z", "ids", "mask", "maskk", "cneg", "cc", "c2", "c", "log_growth", "r"):
            setattr(self, name, getattr(self, name)[keep])


def stable_now(mn: torch.Tensor, log_growth: torch.Tensor, remaining: int) -> torch.Tensor:
    """Early 'cannot collapse before the horizon' decision (module docstring): bool like mn.

    mn: ||mu_t|| per run; log_growth: log max(1, |1 - c|) per run; remaining: steps left to the horizon.
    """
    reach = torch.log(torch.clamp(mn, min=1e-12) + 1e-16 * remaining) + remaining * log_growth
    return (mn < STABLE_MEAN) & (reach < math.log(STABLE_REACH))


def split_chunks(sizes: Sequence[tuple[int, int]], chunk_bytes: int) -> list[list[int]]:
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


def resolve_chunk_bytes(dev: torch.device, chunk_bytes: int | None) -> int:
    """``chunk_bytes`` checked (an integer >= 1), or the default of ``dev`` when None."""
    if chunk_bytes is None:
        return CUDA_CHUNK_BYTES if dev.type == "cuda" else CPU_CHUNK_BYTES
    return check_size("chunk_bytes", chunk_bytes, 1)


def _pad_stack(mats: Sequence[torch.Tensor], dev: torch.device) -> torch.Tensor:
    kk = max(a.shape[0] for a in mats)
    dd = max(a.shape[1] for a in mats)
    z = torch.zeros(len(mats), kk, dd, dtype=torch.float64)
    for i, a in enumerate(mats):  # building the batch (once per chunk), not stepping
        z[i, : a.shape[0], : a.shape[1]] = a
    return z.to(dev)


def _decide_chunk(batch: Batch, steps: int, thr: float, early_exit: bool, cstep: np.ndarray,
                  dstep: np.ndarray) -> int:
    """Advance one chunk through all its steps, writing each run's collapse and decision step into
    ``cstep`` / ``dstep`` (indexed by ``batch.ids``) as it is decided; returns the state entries updated."""
    dev = batch.z.device
    first = torch.full((batch.z.shape[0],), -1, dtype=torch.int64, device=dev)
    work = 0
    for t in range(steps + 1):
        mu = batch.mean()
        mm = (mu * mu).sum(-1)  # (B, 1)
        first.masked_fill_((mm[:, 0] >= thr) & (first < 0), t)
        if (early_exit and t % CHECK_EVERY == 0) or t == steps:
            if t < steps:
                done = (first >= 0) | stable_now(torch.sqrt(mm[:, 0]), batch.log_growth, steps - t)
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
        if (t + 1) % RENORM_EVERY == 0:
            batch.renormalise()
    return work


def decide_torch(
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
    """The torch engine's :func:`decide`: chunks of stacked runs, early exit and compaction.

    inits[i]: (k_i, d_i) unit rows. Returns (collapse_step: (n,) int64, -1 = never; decided_step: (n,);
    state entries updated, padding included: sum over steps of B K D).
    """
    n = len(inits)
    order = sorted(range(n), key=lambda i: -inits[i].shape[0] * inits[i].shape[1])
    cstep = np.full(n, -1, dtype=np.int64)
    dstep = np.full(n, steps, dtype=np.int64)
    work = 0
    thr = (1.0 - tol) ** 2
    for group in split_chunks([tuple(inits[i].shape) for i in order], chunk_bytes):
        idx = [order[j] for j in group]
        batch = Batch(
            _pad_stack([inits[i] for i in idx], dev),
            torch.tensor([ks[i] for i in idx], dtype=torch.float64, device=dev),
            torch.tensor([etas[i] for i in idx], dtype=torch.float64, device=dev),
            torch.tensor(idx, dtype=torch.int64, device=dev),
        )
        work += _decide_chunk(batch, steps, thr, early_exit, cstep, dstep)
    return cstep, dstep, work


def check_engine(engine: object, dev: torch.device) -> str:
    """``engine`` lower-cased if valid for ``dev`` (:data:`ENGINES`); ValueError naming it otherwise,
    RuntimeError when ``native`` is asked for and cannot be built."""
    engine = check_choice("engine", engine, ENGINES)
    if engine == "native":
        if dev.type != "cpu":
            raise ValueError(f"engine='native' runs on the CPU only; got device {dev}")
        if not native.available():
            raise RuntimeError(f"engine='native' asked for, but the engine is {native.status()}")
    return engine


def decide(
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
    work: state entries updated, padding included, summed over steps; it depends on each engine's padding).
    ``engine`` (:data:`ENGINES`): with ``auto``, the native kernel on the CPU when it is available
    (:func:`simulations.lclass.native.available`), else the torch engine (:func:`decide_torch`). Both give
    the same collapse and decision steps on the runs of the tests and of Figure 3; they differ in round-off
    only.
    """
    engine = check_engine(engine, dev)
    if engine == "native" or (engine == "auto" and dev.type == "cpu" and native.available()):
        return native.decide(
            inits, ks, etas, steps=steps, tol=tol, early_exit=early_exit, check_every=CHECK_EVERY,
            renorm_every=RENORM_EVERY, stable_mean=STABLE_MEAN, stable_reach=STABLE_REACH,
            group_bytes=chunk_bytes,
        )
    return decide_torch(inits, ks, etas, steps=steps, tol=tol, dev=dev, chunk_bytes=chunk_bytes,
                        early_exit=early_exit)


def engine_name(dev: str | torch.device = "cpu") -> str:
    """Which code decides runs on ``dev``: the native kernel or the torch engine (with the reason)."""
    dev = torch.device(dev)
    if dev.type != "cpu":
        return f"torch ({dev.type})"
    return native.status()
