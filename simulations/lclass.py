"""Batched gradient descent on L_class: the numerical experiments of Section 3 of the CLOP paper.

Paper: "Preventing collapse in contrastive learning with orthonormal prototypes" (CLOP),
../shared/papers/001_a0916c72eb7a88d5.txt: Eq. (3) (L_class), Theorem 1 and Figure 3 (Section 3.1),
Figure 4 and Lemma 2 (Section 3.2), and the update rule analysed in Appendix D.

The update (Appendix D, with the misprinted ``n mu`` read as ``k mu``)
-----------------------------------------------------------------------
k unit class embeddings ``x_1..x_k`` in R^m (rows of ``X: (k, m)``), mean ``mu = (1/k) sum_i x_i``.
One step moves every point by ``eta`` times the negative mean of the *other* points, then puts it back on
the sphere::

    y_i = x_i - eta * (1/(k-1)) sum_{j != i} x_j = (1 + eta/(k-1)) x_i - eta k/(k-1) mu,
    x_i <- y_i / ||y_i||.

What "learning rate" ``eta`` means here. L_class(X) = sum_{i != j} x_i.x_j (Eq. (3) with the sign the
text means; :func:`clop.losses.l_class`) has gradient ``grad_{x_i} L_class = 2 sum_{j != i} x_j``, so a
plain (autograd) gradient step ``x_i <- x_i - lr * grad_{x_i} L_class`` is the step above with

    eta = 2 (k - 1) * lr        (:func:`eta_from_autograd_lr`, :func:`autograd_lr_from_eta`).

``eta`` is the paper's learning rate throughout this package (Theorem 1, Figure 3: "2.0" and "2.1").

Exact reduction to k dimensions
-------------------------------
The step is a linear combination of the rows followed by a row scaling, so the row space of ``X0`` is
invariant. Writing ``X0 = C0 Q^T`` (QR of ``X0^T``; ``Q: (m, d)`` orthonormal columns, ``d = min(k, m)``),
every later ``X_t = C_t Q^T`` with ``C_t: (k, d)`` following the same update. Gram matrix, singular values,
mean norm and L_class of ``C_t`` and ``X_t`` are equal, so the engine simulates ``C`` (``reduced=True``,
the default) at cost O(k d) per run and step instead of O(k m). ``reduced=False`` runs the same code on
the full ``(k, m)`` rows (used by the tests to check the reduction).

Implementation of one step (same code on CPU and CUDA, float64)
----------------------------------------------------------------
State per run: unnormalised rows ``z_i`` with tracked norms ``r_i = ||z_i||`` (``x_i = z_i / r_i``). With
``c = (eta k/(k-1)) / (1 + eta/(k-1)) = eta k / (k - 1 + eta)``, the normalised update is
``x_i' ∝ x_i - c mu``, i.e. ``z_i <- z_i - c r_i mu`` (one batched rank-one update) and
``r_i'^2 = r_i^2 (1 - 2 c x_i.mu + c^2 ||mu||^2)``. Rows are renormalised exactly every
``_RENORM_EVERY`` steps. Runs (trials x learning rates x k) are stacked into ``(B, K, D)`` tensors, k < K
padded with zero rows that a row mask keeps at zero; each step is a handful of batched tensor operations
(two ``bmm`` and one ``addcmul_``) with no Python loop over runs. On CPU the runs are split into chunks of
at most ``chunk_bytes`` (cache-sized), each advanced through all its steps before the next starts.

Collapse criterion (used by the figures and the tests alike)
------------------------------------------------------------
*Complete collapse* means all embeddings at one point. For unit rows,
``(1/k) sum_i ||x_i - mu||^2 = 1 - ||mu||^2``, so a run is completely collapsed at step t when

    ||mu_t|| >= 1 - tol,     tol = COLLAPSE_TOL = 1e-6,

which bounds every ``||x_i - mu|| <= sqrt(2 k tol)`` (<= 0.015 for k = 100) and makes the top singular
value carry at least ``(1 - tol)^2`` of ``||X||_F^2 = k``. The criterion asks for the mean, not only for
rank one: co-linear "inverted pairs" ``(x, -x, x, -x, ...)`` have rank one but zero mean; they are global
minima of L_class (value -k for even k) and fixed points of the update (there ``y_i = (1 + eta/(k-1)) x_i``),
and the classes stay linearly separable by sign, so they count as *not* collapsed (a dimensional, not a
complete, collapse). The results store the first step at which the criterion held
(``collapse_step``); :func:`collapsed` reports whether it held at some step within the horizon.

Early decisions (``early_exit=True``). A run is decided when it has collapsed, or when its mean is so
small that it cannot collapse within the remaining steps: to first order in ``mu`` the step maps
``mu -> ((1 - c) I + c F) mu`` with ``F = (1/k) sum_i x_i x_i^T`` (eigenvalues in [0, 1]), so ``||mu||``
grows at most by ``g = max(1, |1 - c|)`` per step. A run with ``||mu_t|| < 1e-8`` and
``(max(||mu_t||, 1e-12) + 1e-16 (N - t)) g^(N - t) < 1e-4`` (round-off injection included) is declared
stable: even at the fastest linear growth it stays below 1e-4 at the horizon N, far from ``1 - tol``.
The tests check that early exit gives the same decisions as running every step.

Example
-------
>>> res = simulate(30, 100, [2.0, 2.1], trials=1, steps=600, seed=0, device="cpu")
>>> collapsed(res).tolist()
[[False, True]]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

from clop._checks import check_positive, check_size
from clop._device import default_device
from clop.losses import l_class as _l_class

__all__ = [
    "COLLAPSE_TOL",
    "RECORDABLE",
    "update_coefficients",
    "eta_from_autograd_lr",
    "autograd_lr_from_eta",
    "initial_embeddings",
    "reduce_coordinates",
    "is_collapsed",
    "SimulationResult",
    "simulate",
    "collapsed",
    "SearchResult",
    "max_stable_lr",
    "sweep",
    "mean_growth_factor",
    "collapse_contraction_factor",
    "collapse_steps_estimate",
    "finite_horizon_threshold",
]

COLLAPSE_TOL = 1e-6
"""Complete collapse: ``||mu|| >= 1 - COLLAPSE_TOL`` (see the module docstring)."""

RECORDABLE = ("mean_norm", "singular_values", "l_class")
"""Quantities :func:`simulate` can record every ``record_every`` steps."""

_RENORM_EVERY = 32  # exact row renormalisation period (tracked norms drift only by round-off)
_CHECK_EVERY = 16  # period of early-exit checks and chunk compaction
_STABLE_MEAN = 1e-8  # linear-regime threshold of the early "stable" decision
_STABLE_REACH = 1e-4  # the bound on ||mu_N|| that the early "stable" decision guarantees
_CPU_CHUNK_BYTES = 4 * 2**20
_CUDA_CHUNK_BYTES = 2**30


# --------------------------------------------------------------------------------------------------
# argument checks


def _check_k(name: str, value: object) -> int:
    return check_size(name, value, 3)


def _check_etas(etas: object) -> torch.Tensor:
    try:
        e = torch.as_tensor(etas, dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"etas must be a number or a 1-D sequence of numbers; got {etas!r}") from None
    if e.numel() == 0 or not bool(torch.isfinite(e).all()) or bool((e <= 0).any()):
        raise ValueError(f"etas must be non-empty, finite and > 0; got {etas!r}")
    return e


def _check_tol(tol: object) -> float:
    t = check_positive("tol", tol)
    if t >= 1:
        raise ValueError(f"tol must lie in (0, 1); got {tol!r}")
    return t


# --------------------------------------------------------------------------------------------------
# the update and its learning rate


def update_coefficients(k: int, eta: float) -> tuple[float, float]:
    """(alpha, beta) of the Appendix D step ``y_i = alpha x_i - beta mu``: alpha = 1 + eta/(k-1), beta = eta k/(k-1)."""
    k = _check_k("k", k)
    eta = check_positive("eta", eta)
    return 1.0 + eta / (k - 1), eta * k / (k - 1)


def eta_from_autograd_lr(lr: float, k: int) -> float:
    """Appendix D ``eta`` of a plain gradient step with learning rate ``lr`` on L_class: eta = 2 (k - 1) lr."""
    return 2.0 * (_check_k("k", k) - 1) * check_positive("lr", lr)


def autograd_lr_from_eta(eta: float, k: int) -> float:
    """Inverse of :func:`eta_from_autograd_lr`: lr = eta / (2 (k - 1))."""
    return check_positive("eta", eta) / (2.0 * (_check_k("k", k) - 1))


# --------------------------------------------------------------------------------------------------
# initialisation


def _trial_generator(seed: int, k: int, m: int, trial: int) -> torch.Generator:
    """A CPU generator for trial ``trial`` of (k, m): independent of how many trials or etas are run."""
    state = np.random.SeedSequence([seed, k, m, trial]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def initial_embeddings(k: int, m: int, trials: int = 1, *, seed: int = 0) -> torch.Tensor:
    """Gaussian rows normalised to the unit sphere: X0: (trials, k, m), float64 on CPU.

    Trial t of (k, m) is drawn from its own generator seeded by (seed, k, m, t), so it is the same
    whatever else is simulated (same seed, same numbers; a trial's start does not depend on ``trials``).
    A normalised standard Gaussian is uniform on the sphere, the start assumed by Theorem 1.
    """
    k = check_size("k", k, 1)
    m = check_size("m", m, 1)
    trials = check_size("trials", trials, 1)
    seed = check_size("seed", seed, 0)
    x = torch.stack(
        [torch.randn(k, m, generator=_trial_generator(seed, k, m, t), dtype=torch.float64) for t in range(trials)]
    )
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)


def reduce_coordinates(x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact coordinates of the rows in their span: x0: (..., k, m) -> (c: (..., k, d), q: (..., m, d)), d = min(k, m).

    ``x0 = c q^T`` with ``q^T q = I_d`` (reduced QR of ``x0^T``), so ``c`` has the Gram matrix of ``x0``.
    """
    if x0.dim() < 2:
        raise ValueError(f"x0 must have shape (..., k, m); got shape {tuple(x0.shape)}")
    q, r = torch.linalg.qr(x0.transpose(-1, -2), mode="reduced")
    return r.transpose(-1, -2).contiguous(), q


def is_collapsed(x: torch.Tensor, tol: float = COLLAPSE_TOL) -> torch.Tensor:
    """The collapse criterion on embeddings x: (..., k, m) with unit rows -> bool (...): ||mean|| >= 1 - tol."""
    tol = _check_tol(tol)
    return torch.linalg.vector_norm(x.mean(dim=-2), dim=-1) >= 1.0 - tol


# --------------------------------------------------------------------------------------------------
# the batched engine


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
        # clamp: a row that lands exactly on 0 (e.g. a collapsed run at eta = 1) keeps a tiny finite norm
        self.r = self.r.mul(fac).clamp_(min=1e-300)

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
) -> tuple[np.ndarray, np.ndarray, int]:
    """Collapse within ``steps`` for many runs (different k allowed), early exit and compaction.

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


# --------------------------------------------------------------------------------------------------
# simulate: one k, trials x learning rates, with records


@dataclass
class SimulationResult:
    """Output of :func:`simulate` for one k: T trials x E learning rates.

    Attributes:
        k, m: number of embeddings and ambient dimension.
        etas: (E,) learning rates (Appendix D eta).
        trials, steps, seed, tol, reduced: the arguments.
        steps_run: steps actually taken (< steps only with early_exit).
        record_steps: (R,) int64 steps at which records were taken (0 = the initial state).
        mean_norm: (R, T, E) ||mu_t|| or None.  singular_values: (R, T, E, d) descending, d = min(k, m), or None.
        l_class: (R, T, E) L_class(X_t) (clop.losses.l_class) or None.
        final_mean_norm: (T, E).  collapse_step: (T, E) int64 first step with ||mu|| >= 1 - tol, -1 = never.
        final_x: (T, E, k, d) the final unit rows in the coordinates of ``basis``.
        basis: (T, m, d) with X = final_x @ basis^T (reduced=True), or None (final_x is already (k, m)).
    All tensors are float64/int64 on the simulation device.
    """

    k: int
    m: int
    etas: torch.Tensor
    trials: int
    steps: int
    seed: int
    tol: float
    reduced: bool
    steps_run: int
    record_steps: torch.Tensor
    final_mean_norm: torch.Tensor
    collapse_step: torch.Tensor
    final_x: torch.Tensor
    basis: torch.Tensor | None
    mean_norm: torch.Tensor | None = None
    singular_values: torch.Tensor | None = None
    l_class: torch.Tensor | None = None

    def embeddings(self) -> torch.Tensor:
        """Final embeddings in R^m: (T, E, k, m)."""
        if self.basis is None:
            return self.final_x
        return self.final_x @ self.basis.transpose(-1, -2).unsqueeze(1)


def _record_steps(steps: int, every: int) -> list[int]:
    rs = list(range(0, steps + 1, every))
    if rs[-1] != steps:
        rs.append(steps)
    return rs


def simulate(
    k: int,
    m: int,
    etas: float | Sequence[float] | torch.Tensor,
    *,
    trials: int = 1,
    steps: int = 1000,
    seed: int = 0,
    device: str | torch.device | None = None,
    record: Iterable[str] = ("mean_norm",),
    record_every: int = 1,
    reduced: bool = True,
    early_exit: bool = False,
    tol: float = COLLAPSE_TOL,
    x0: torch.Tensor | None = None,
    chunk_bytes: int | None = None,
) -> SimulationResult:
    """Gradient descent on L_class (Appendix D step) for ``trials`` x ``len(etas)`` runs of k embeddings in R^m.

    Every trial starts from :func:`initial_embeddings` (k, m, trials, seed=seed) (or from ``x0: (trials, k, m)``
    with unit rows), the same start for every eta. All runs advance together: one batched tensor program per
    step (split into cache-sized chunks on CPU, see the module docstring).

    Args:
        k: number of class embeddings, k >= 3.  m: ambient dimension, m >= 1.
        etas: learning rate(s) eta > 0 (Appendix D units; eta = 2 (k-1) x an autograd learning rate).
        trials: number of independent starts.  steps: number of update steps.  seed: int >= 0.
        device: torch device (default CUDA when present, else CPU).
        record: any of :data:`RECORDABLE`; records are kept every ``record_every`` steps (and at ``steps``).
        reduced: simulate in the k-dimensional span of X0 (exact, see module docstring).
        early_exit: stop when every run is decided (collapsed, or provably unable to collapse by ``steps``);
            records and final state are then those of the stop step, ``steps_run`` says which.
        tol: collapse tolerance (``||mu|| >= 1 - tol``).  x0: optional start (trials, k, m).
        chunk_bytes: cap on one chunk's state in bytes (default 4 MiB on CPU, 1 GiB on CUDA).

    Returns:
        :class:`SimulationResult`.
    """
    k = _check_k("k", k)
    m = check_size("m", m, 1)
    e = _check_etas(etas)
    trials = check_size("trials", trials, 1)
    steps = check_size("steps", steps, 0)
    seed = check_size("seed", seed, 0)
    record_every = check_size("record_every", record_every, 1)
    tol = _check_tol(tol)
    rec = tuple(record)
    bad = [r for r in rec if r not in RECORDABLE]
    if bad:
        raise ValueError(f"record must hold only {RECORDABLE}; got {rec!r}")
    dev = default_device(device)
    cb = _default_chunk_bytes(dev, chunk_bytes)
    if x0 is None:
        x0 = initial_embeddings(k, m, trials, seed=seed)
    else:
        x0 = torch.as_tensor(x0, dtype=torch.float64).cpu()
        if tuple(x0.shape) != (trials, k, m):
            raise ValueError(f"x0 must have shape (trials, k, m) = {(trials, k, m)}; got {tuple(x0.shape)}")
        if not torch.allclose(torch.linalg.vector_norm(x0, dim=-1), torch.ones(trials, k, dtype=torch.float64)):
            raise ValueError("x0 must have unit rows")
    if reduced:
        c0, basis = reduce_coordinates(x0)
    else:
        c0, basis = x0, None
    n_e = e.numel()
    d = c0.shape[-1]
    runs = [(t, j) for t in range(trials) for j in range(n_e)]
    rsteps = _record_steps(steps, record_every)
    n_r = len(rsteps)
    out_mn = torch.zeros(n_r, trials * n_e, dtype=torch.float64, device=dev) if "mean_norm" in rec else None
    out_sv = torch.zeros(n_r, trials * n_e, min(k, d), dtype=torch.float64, device=dev) if "singular_values" in rec else None
    out_lc = torch.zeros(n_r, trials * n_e, dtype=torch.float64, device=dev) if "l_class" in rec else None
    final_mn = torch.zeros(trials * n_e, dtype=torch.float64, device=dev)
    cstep = torch.full((trials * n_e,), -1, dtype=torch.int64, device=dev)
    final_x = torch.zeros(trials * n_e, k, d, dtype=torch.float64, device=dev)
    thr = (1.0 - tol) ** 2
    stops: list[int] = []
    for group in _chunks([(k, d)] * len(runs), cb):
        idx = torch.tensor(group, dtype=torch.int64, device=dev)
        batch = _Batch(
            c0[[runs[i][0] for i in group]].to(dev),
            torch.full((len(group),), float(k), dtype=torch.float64, device=dev),
            e[[runs[i][1] for i in group]].to(dev),
            idx,
        )
        first = torch.full((len(group),), -1, dtype=torch.int64, device=dev)
        ri = 0  # next record slot
        for t in range(steps + 1):
            mu = batch.mean()
            mm = (mu * mu).sum(-1)
            first.masked_fill_((mm[:, 0] >= thr) & (first < 0), t)
            stop = t == steps
            if early_exit and not stop and t % _CHECK_EVERY == 0:
                done = (first >= 0) | _stable_now(torch.sqrt(mm[:, 0]), batch.log_growth, steps - t)
                stop = bool(done.all())
            if rsteps[ri] == t or stop:
                _store(batch, mu, mm, ri, out_mn, out_sv, out_lc, idx)
                ri += 1
            if stop:
                break
            batch.step(mu, mm)
            if (t + 1) % _RENORM_EVERY == 0:
                batch.renormalise()
        stops.append(t)
        for o in (out_mn, out_sv, out_lc):  # decided early: later slots hold the stop state
            if o is not None and ri < n_r:
                o[ri:, idx] = o[ri - 1, idx].unsqueeze(0)
        final_x[idx] = batch.x()
        final_mn[idx] = torch.sqrt((mu * mu).sum(-1))[:, 0]
        cstep[idx] = first
    steps_run = max(stops)
    rs_out = [s_ for s_ in rsteps if s_ < steps_run] + [steps_run]
    n_keep = len(rs_out)

    def shape(o: torch.Tensor | None) -> torch.Tensor | None:
        if o is None:
            return None
        o = o[:n_keep]
        return o.reshape(o.shape[0], trials, n_e, *o.shape[2:])

    return SimulationResult(
        k=k,
        m=m,
        etas=e.to(dev),
        trials=trials,
        steps=steps,
        seed=seed,
        tol=tol,
        reduced=reduced,
        steps_run=steps_run,
        record_steps=torch.tensor(rs_out, dtype=torch.int64),
        final_mean_norm=final_mn.reshape(trials, n_e),
        collapse_step=cstep.reshape(trials, n_e),
        final_x=final_x.reshape(trials, n_e, k, d),
        basis=None if basis is None else basis.to(dev),
        mean_norm=shape(out_mn),
        singular_values=shape(out_sv),
        l_class=shape(out_lc),
    )


def _store(batch: _Batch, mu, mm, ri, out_mn, out_sv, out_lc, idx) -> None:
    if out_mn is not None:
        out_mn[ri, idx] = torch.sqrt(mm[:, 0])
    if out_sv is not None or out_lc is not None:
        x = batch.x()
        if out_sv is not None:
            out_sv[ri, idx] = torch.linalg.svdvals(x)[:, : out_sv.shape[-1]]
        if out_lc is not None:
            out_lc[ri, idx] = _l_class(x)


def collapsed(result: SimulationResult, tol: float | None = None) -> torch.Tensor:
    """(T, E) bool: the run reached complete collapse (``||mu|| >= 1 - tol``) at some step within the horizon.

    With ``tol`` None the simulation's own tolerance and its recorded first-collapse step are used; a
    different ``tol`` is applied to the final state only.
    """
    if tol is None or float(tol) == result.tol:
        return result.collapse_step >= 0
    tol = _check_tol(tol)
    return result.final_mean_norm >= 1.0 - tol


# --------------------------------------------------------------------------------------------------
# max_stable_lr: batched multisection search


@dataclass
class SearchResult:
    """Output of :func:`max_stable_lr`.

    Attributes:
        ks: (n,) int64.  m, trials, steps, resolution, lo, hi, grid, seed, tol: the arguments.
        max_lr: (n, trials) float64 — largest tested eta whose run did NOT collapse within ``steps`` (the
            lower end of the final bracket); NaN where ``lo`` already collapsed.
        min_collapse_lr: (n, trials) — smallest tested eta whose run collapsed (upper end of the bracket);
            inf where even ``hi`` did not collapse (then max_lr = hi is only a lower bound).
        non_monotone: (n, trials) int64 — rounds in which a non-collapsing eta lay above a collapsing one.
        rounds: rounds after the initial (lo, hi) evaluation.  runs: runs simulated.  work: state entries
            updated (sum over steps of B K D, padding included).
    """

    ks: np.ndarray
    m: int
    trials: int
    steps: int
    resolution: float
    lo: float
    hi: float
    grid: int
    seed: int
    tol: float
    max_lr: np.ndarray
    min_collapse_lr: np.ndarray
    non_monotone: np.ndarray
    rounds: int
    runs: int
    work: int

    def min_over_trials(self) -> np.ndarray:
        """(n,) the Figure 3 value: the max lr that avoided collapse in every trial (min over trials)."""
        return self.max_lr.min(axis=1)


_SECANT_MIN_FRACTION = 1 / 8  # use the 1/T interpolation once a collapse took >= steps/8 steps
_FIT_MIN_FRACTION = 1 / 64  # ... fitted through collapses that took >= steps/64 steps (near-threshold regime)


def _predict_threshold(hist: list[tuple[float, int]], steps: int) -> float | None:
    """Eta at which the first collapse step T reaches ``steps``, from the collapsing (eta, T) closest to it.

    Near the threshold T(eta) ~ K / (eta - eta_inf) with K varying slowly, so 1/T is nearly linear in
    eta: a quadratic through the three collapsing points nearest the threshold (a line through two when
    only two exist) is solved for 1/T = 1/steps. None when the nearest collapse took < steps/8 steps or
    the fit gives no root below the nearest collapsing eta.
    """
    near = [p for p in sorted(hist) if p[1] >= steps * _FIT_MIN_FRACTION][:3]
    if len(near) < 2 or near[0][1] < steps * _SECANT_MIN_FRACTION:
        return None
    e = np.array([p[0] for p in near])
    y = 1.0 / np.array([p[1] for p in near], dtype=np.float64)
    if np.any(np.diff(e) <= 0) or np.any(np.diff(y) <= 0):
        return None  # not strictly monotone: no trustworthy model
    if len(near) == 3:
        coef = np.polyfit(e - e[0], y, 2)
        coef[-1] -= 1.0 / steps
        roots = [float(r.real) + e[0] for r in np.roots(coef) if abs(r.imag) < 1e-12 and r.real <= 0]
        if roots:
            return max(roots)
    slope = (y[1] - y[0]) / (e[1] - e[0])
    return float(e[0] - (y[0] - 1.0 / steps) / slope)


def _proposals(lo: float, hi: float, hist: list[tuple[float, int]], steps: int, res: float, grid: int) -> list[float]:
    """Test etas inside the open bracket (lo, hi) for one (k, trial).

    With a prediction ``pred`` of the finite-horizon threshold (:func:`_predict_threshold`) the two etas
    pred -/+ 0.45 res are tested, which closes the bracket in one round when the prediction is within
    0.45 res. Otherwise (no usable history, or a prediction outside the bracket) ``grid`` equally spaced
    etas are tested. Proposals only choose where to look: the bracket is always made of evaluated runs.
    """
    pts: list[float] = []
    pred = _predict_threshold(hist, steps)
    if pred is not None:
        h = 0.45 * res
        pts = [p for p in (pred - h, pred + h) if lo < p < hi]
    if not pts:
        pts = [lo + (hi - lo) * j / (grid + 1) for j in range(1, grid + 1)]
    return pts


def max_stable_lr(
    ks: int | Sequence[int],
    m: int = 100,
    *,
    trials: int = 5,
    steps: int = 2000,
    resolution: float = 1e-3,
    lo: float = 1.0,
    hi: float = 6.0,
    grid: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    tol: float = COLLAPSE_TOL,
    chunk_bytes: int | None = None,
    progress: bool = False,
) -> SearchResult:
    """Largest learning rate that avoids complete collapse within ``steps`` steps, per k and trial.

    Definition. For trial t of k (start :func:`initial_embeddings` (k, m, trials, seed)[t], the same for
    every eta) let T(eta) be the first step with ``||mu|| >= 1 - tol`` (:data:`COLLAPSE_TOL`). The search
    returns ``max_lr``: the largest *evaluated* eta with T(eta) > steps, such that an evaluated eta at most
    ``resolution`` above it collapsed. This assumes collapse is monotone in eta for a fixed start: above
    some threshold every eta collapses, below it none does (checked by the tests on fine grids; the search
    counts violations in ``non_monotone``). The Figure 3 value per k is the min over trials
    (:meth:`SearchResult.min_over_trials`).

    Search. Every (k, trial) holds a bracket [L, H] (L evaluated and not collapsing, H collapsing),
    initially [lo, hi] (both evaluated first). Each round evaluates a few etas inside every open bracket
    — all (k, trial, eta) runs of the round at once, one batched program per step (cache-sized chunks on
    CPU), with early exit — and shrinks the bracket to the evaluated points, until its width is
    <= ``resolution``. Where to evaluate (:func:`_proposals`): ``grid`` equally spaced etas (multisection)
    until a collapse near the threshold has been seen, then the two etas +-0.45 resolution around the
    eta where the first collapse step, interpolated in 1/T from the collapses seen so far, equals
    ``steps`` (near the threshold T ~ K/(eta - eta_inf), so 1/T is nearly linear in eta); this usually
    closes the bracket in one or two rounds. The choice of points affects only the cost: the answer is
    always a bracket of evaluated runs.

    Args:
        ks: k values (>= 3).  m: ambient dimension.  trials: starts per k.  steps: horizon N.
        resolution: final bracket width (> 0).  lo, hi: initial bracket, 0 < lo < hi.
        grid: etas per bracket in multisection rounds (default 1 = bisection on CPU, 7 on CUDA).
        seed, device, tol, chunk_bytes: as in :func:`simulate`.  progress: tqdm bar over rounds (stderr).

    Returns:
        :class:`SearchResult`: ``max_lr[i, t]`` per k and trial; NaN where ``lo`` collapsed, and ``hi``
        (with ``min_collapse_lr`` = inf) where ``hi`` did not collapse.
    """
    ks_list = [ks] if isinstance(ks, (int, np.integer)) else list(ks)
    if not ks_list:
        raise ValueError(f"ks must hold at least one k >= 3; got {ks!r}")
    ks_list = [_check_k("ks", kk) for kk in ks_list]
    m = check_size("m", m, 1)
    trials = check_size("trials", trials, 1)
    steps = check_size("steps", steps, 1)
    resolution = check_positive("resolution", resolution)
    lo = check_positive("lo", lo)
    hi = check_positive("hi", hi)
    if not lo < hi:
        raise ValueError(f"lo must be < hi; got lo={lo!r}, hi={hi!r}")
    seed = check_size("seed", seed, 0)
    tol = _check_tol(tol)
    dev = default_device(device)
    if grid is None:
        grid = 7 if dev.type == "cuda" else 1
    grid = check_size("grid", grid, 1)
    cb = _default_chunk_bytes(dev, chunk_bytes)

    n = len(ks_list)
    inits: list[list[torch.Tensor]] = []
    for kk in ks_list:
        c0, _ = reduce_coordinates(initial_embeddings(kk, m, trials, seed=seed))
        inits.append([c0[t] for t in range(trials)])
    lo_b = np.full((n, trials), lo)
    hi_b = np.full((n, trials), hi)
    max_lr = np.full((n, trials), np.nan)
    min_col = np.full((n, trials), np.inf)
    nonmono = np.zeros((n, trials), dtype=np.int64)
    total_runs = total_work = 0

    def evaluate(cells: list[tuple[int, int, float]]) -> np.ndarray:
        """First collapse step of each (k index, trial, eta) run, -1 = none within the horizon."""
        nonlocal total_runs, total_work
        cs, _, w = _decide(
            [inits[i][t] for i, t, _ in cells],
            [ks_list[i] for i, _, _ in cells],
            [e for _, _, e in cells],
            steps=steps,
            tol=tol,
            dev=dev,
            chunk_bytes=cb,
        )
        total_runs += len(cells)
        total_work += w
        return cs

    cells = [(i, t, e) for i in range(n) for t in range(trials) for e in (lo, hi)]
    cs0 = evaluate(cells).reshape(n, trials, 2)
    col = cs0 >= 0
    open_ = ~col[:, :, 0] & col[:, :, 1]
    max_lr[~col[:, :, 0]] = lo
    min_col[col[:, :, 1]] = hi
    only_lo = ~col[:, :, 0] & ~col[:, :, 1]
    max_lr[only_lo] = hi  # hi did not collapse: a lower bound only
    min_col[only_lo] = np.inf
    # collapsing evaluations (eta, first collapse step) per cell, for the secant proposals
    hist: dict[tuple[int, int], list[tuple[float, int]]] = {}
    for i, t in np.argwhere(open_):
        hist[(int(i), int(t))] = [(hi, int(cs0[i, t, 1]))]
    rounds = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="max_stable_lr rounds", leave=False)
    while True:
        width = hi_b - lo_b
        active = open_ & (width > resolution * (1 + 1e-9))
        if not active.any():
            break
        rounds += 1
        pos = [(int(i), int(t)) for i, t in np.argwhere(active)]
        cells: list[tuple[int, int, float]] = []
        spans = []
        for i, t in pos:
            pts = _proposals(lo_b[i, t], hi_b[i, t], hist[(i, t)], steps, resolution, grid)
            spans.append((len(cells), len(pts)))
            cells += [(i, t, e) for e in pts]
        cs = evaluate(cells)
        for (i, t), (start, n_p) in zip(pos, spans):
            etas_r = [c[2] for c in cells[start : start + n_p]]
            cr = cs[start : start + n_p] >= 0
            hist[(i, t)] += [(e, int(c)) for e, c in zip(etas_r, cs[start : start + n_p]) if c >= 0]
            hit = np.flatnonzero(cr)
            first = int(hit[0]) if hit.size else n_p
            if hit.size and (~cr[first:]).any():
                nonmono[i, t] += 1
            if first < n_p:
                hi_b[i, t] = etas_r[first]
            if first > 0:
                lo_b[i, t] = etas_r[first - 1]
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    max_lr[open_] = lo_b[open_]
    min_col[open_] = hi_b[open_]
    return SearchResult(
        ks=np.asarray(ks_list, dtype=np.int64),
        m=m,
        trials=trials,
        steps=steps,
        resolution=resolution,
        lo=lo,
        hi=hi,
        grid=grid,
        seed=seed,
        tol=tol,
        max_lr=max_lr,
        min_collapse_lr=min_col,
        non_monotone=nonmono,
        rounds=rounds,
        runs=total_runs,
        work=total_work,
    )


def sweep(
    ks: int | Sequence[int],
    m: int,
    etas: float | Sequence[float],
    *,
    trials: int = 1,
    steps: int = 1000,
    seed: int = 0,
    device: str | torch.device | None = None,
    tol: float = COLLAPSE_TOL,
    early_exit: bool = False,
    chunk_bytes: int | None = None,
) -> np.ndarray:
    """First complete-collapse step of every (k, trial, eta) run: (len(ks), trials, len(etas)) int64, -1 = none.

    All runs of all k advance together (cache-sized chunks on CPU, one chunk on CUDA), from the same
    starts as :func:`simulate` and :func:`max_stable_lr`. ``early_exit`` drops decided runs (the
    collapse steps are the same either way; without it every run takes all ``steps`` steps).
    """
    ks_list = [ks] if isinstance(ks, (int, np.integer)) else list(ks)
    if not ks_list:
        raise ValueError(f"ks must hold at least one k >= 3; got {ks!r}")
    ks_list = [_check_k("ks", kk) for kk in ks_list]
    m = check_size("m", m, 1)
    e = _check_etas(etas).tolist()
    trials = check_size("trials", trials, 1)
    steps = check_size("steps", steps, 0)
    seed = check_size("seed", seed, 0)
    tol = _check_tol(tol)
    dev = default_device(device)
    inits, kk_runs, e_runs = [], [], []
    for kk in ks_list:
        c0, _ = reduce_coordinates(initial_embeddings(kk, m, trials, seed=seed))
        for t in range(trials):
            for eta in e:
                inits.append(c0[t])
                kk_runs.append(kk)
                e_runs.append(eta)
    cs, _, _ = _decide(inits, kk_runs, e_runs, steps=steps, tol=tol, dev=dev,
                       chunk_bytes=_default_chunk_bytes(dev, chunk_bytes), early_exit=early_exit)
    return cs.reshape(len(ks_list), trials, len(e))


# --------------------------------------------------------------------------------------------------
# finite-horizon estimate (growth factors of the update; used to read the measured thresholds)


def mean_growth_factor(k: int, eta: float) -> float:
    """|1 - c|, c = eta k/(k - 1 + eta): per-step factor of the mean along a direction the points do not span.

    Linearising the normalised step at a zero-mean configuration gives ``mu -> ((1 - c) I + c F) mu``
    with ``F = (1/k) sum_i x_i x_i^T`` (module docstring); a zero-mean configuration of k points has
    rank <= k - 1, so inside the k-dimensional span there is a direction with F-eigenvalue 0, where the
    factor is ``1 - c = (1 - eta)/(1 + eta/(k-1))``. Its modulus exceeds 1 iff eta > 2(k-1)/(k-2).
    """
    k = _check_k("k", k)
    eta = check_positive("eta", eta)
    return abs(1.0 - eta * k / (k - 1 + eta))


def collapse_contraction_factor(k: int, eta: float) -> float:
    """(1 + eta/(k-1)) / |1 - eta|: per-step factor of the spread around a completely collapsed state.

    With x_i = u + d_i (d_i small), the step gives (1 - eta) u + (1 + eta/(k-1)) d_i - eta k/(k-1) dbar,
    so after renormalisation the deviations from the mean scale by this factor (< 1 iff
    eta > 2(k-1)/(k-2): the collapsed state attracts exactly when zero-mean configurations repel).
    """
    k = _check_k("k", k)
    eta = check_positive("eta", eta)
    if eta == 1.0:
        return math.inf
    return (1.0 + eta / (k - 1)) / abs(1.0 - eta)


def collapse_steps_estimate(k: int, eta: float, *, m0: float, tol: float = COLLAPSE_TOL) -> float:
    """Two-phase estimate of the first step with ||mu|| >= 1 - tol, for eta above the threshold.

    Phase 1: the mean grows from ``m0`` (its initial norm) to O(1) at :func:`mean_growth_factor` per step;
    phase 2: the spread (1/k) sum ||x_i - mu||^2 = 1 - ||mu||^2 shrinks from O(1) at
    :func:`collapse_contraction_factor` per step until ``1 - ||mu|| <= tol`` (spread <= sqrt(2 tol)):

        T ~ ln(1/m0) / ln|1 - c| + ln(1/sqrt(2 tol)) / ln(1/rho).

    The nonlinear hand-over between the phases is not counted (a few per cent of T in practice).
    Returns inf where either factor does not favour collapse.
    """
    g = mean_growth_factor(k, eta)
    rho = collapse_contraction_factor(k, eta)
    m0 = check_positive("m0", m0)
    tol = _check_tol(tol)
    if g <= 1.0 or rho >= 1.0:
        return math.inf
    return max(0.0, math.log(1.0 / m0)) / math.log(g) + math.log(1.0 / math.sqrt(2.0 * tol)) / math.log(1.0 / rho)


def finite_horizon_threshold(k: int, steps: int, *, m0: float, tol: float = COLLAPSE_TOL) -> float:
    """Smallest eta whose :func:`collapse_steps_estimate` is <= ``steps``: the threshold a ``steps``-step
    search is expected to measure (it lies above the infinite-horizon one, where both factors cross 1)."""
    k = _check_k("k", k)
    steps = check_size("steps", steps, 1)
    a = 2.0 * (k - 1) / (k - 2)  # where |1 - c| = 1 (and rho = 1): the estimate is infinite here
    b = a + 1.0
    while collapse_steps_estimate(k, b, m0=m0, tol=tol) > steps:
        b = a + 2.0 * (b - a)
    for _ in range(200):
        mid = 0.5 * (a + b)
        if collapse_steps_estimate(k, mid, m0=m0, tol=tol) > steps:
            a = mid
        else:
            b = mid
    return b
