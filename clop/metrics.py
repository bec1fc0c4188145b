"""Collapse metrics for an embedding matrix z: (N, D) (N samples, D dimensions).

Singular spectrum, embedding covariance, stable rank and entropy rank of the covariance, RankMe, the
alignment and uniformity of Wang & Isola (2020), and the norm of the mean embedding.

Conventions (decided here, used everywhere in the suite):

* Inputs may be torch tensors (any device, any real dtype; gradients are detached) or numpy arrays /
  array-likes. Everything is computed in float64 on the input's device; scalar metrics come back as
  Python floats, vectors and matrices as float64 tensors.
* The covariance is the population covariance Sigma = (1/N) Z_c^T Z_c with Z_c the row-centred z, the
  1/N normalisation of the collapse-metrics note ("Theoretical Foundations of Self-Supervised Vision", "Eigenvalue
  characterization": Sigma = (1/N) Z^T Z - zbar zbar^T). The rank metrics are scale invariant, so the
  choice of 1/N over 1/(N-1) affects only :func:`covariance` and :func:`covariance_eigenvalues`.
* Numerical zero. The eigenvalues of Sigma are computed as lambda_i = s_i^2 / N from the singular values
  s_i of Z_c (never by squaring Z into a Gram matrix). A singular value of Z_c counts as exactly zero
  when s_i <= rtol * s_max(z), with s_max(z) the largest singular value of the UNCENTRED z and, by
  default,

      rtol = 10 * eps(dtype of z) + max(N, D) * eps(float64)

  (eps of float64 for integer input). The first term is the round-off already present in z: z holds
  each entry to a relative error u = eps/2, i.e. z = z_exact + E with |E_ij| <= u |z_ij|. Centring is
  an orthogonal projection, so it does not enlarge E, and ||E||_2 <= 2 u s_max(z) both for a per-row
  scaling error (E = diag(d) z, the coherent error of an L2 normalisation, <= u ||z||_2) and for
  independent entry-wise errors (||E||_2 ~ largest row norm + largest column norm of E, each
  <= u s_max(z)); the factor 10 (5x that bound) covers inputs that went through a few rounded
  operations. The second term is numpy.linalg.matrix_rank's rule for the float64 centring and SVD done
  here; it dominates only for float64 input. Measuring against the uncentred scale matters: for rows
  that are equal up to round-off, Z_c is pure round-off noise and a tolerance relative to s_max(Z_c)
  would report an arbitrary rank. The cut stays at the round-off level, so it does not remove real
  variance of low-precision data (float16 / bfloat16 isotropic data keeps its float64 stable rank) or
  of data with a large mean offset (float32 10 + 0.01 x: its variance is ~1e4 x eps away from the
  offset and is kept). An earlier version used rtol = max(N, D) * eps(dtype of z), which wiped
  the whole spectrum in both cases. Pass ``rtol=0.0`` to keep every non-zero eigenvalue.
* Zero covariance (all rows equal, or z == 0): stable_rank = entropy_rank = 0.0 — there is no variance
  in any direction, so no direction is used; the usual ranges [1, D] apply whenever Sigma != 0.
  Likewise rankme(0) = 0.0 (the normalised singular values 0/0 are undefined; RankMe's epsilon would
  otherwise turn an all-zero matrix into "rank" ~1).
* L2 normalisation (alignment, uniformity, ``mean_norm(normalize=True)``) maps a zero row to the zero
  vector (it has no direction), so collapsed inputs still give finite values. It is exact and scale
  invariant for any non-zero row, however tiny (rows are divided by their largest entry first). The
  losses in :mod:`clop.losses` instead divide by max(||z||, 1e-6) so that their GRADIENT stays bounded
  at a zero row; metrics are computed on detached values, need no such floor, and keep exact scale
  invariance. Both map a zero row to the zero vector.

References
----------
Stable rank and entropy rank: the collapse-metrics note, "Effective Rank":
srank(Sigma) = (tr Sigma)^2 / ||Sigma||_F^2, erank(Sigma) = exp(-sum_i p_i log p_i), p_i = lambda_i / sum_j
lambda_j (0 log 0 = 0).
RankMe: Garrido, Balestriero, Najman & LeCun (2023), "RankMe: Assessing the downstream performance of
pretrained self-supervised representations by their rank", ICML, Eq. (1):
RankMe(Z) = exp(-sum_k p_k log p_k), p_k = sigma_k(Z) / ||sigma(Z)||_1 + eps, on the uncentred Z.
Alignment and uniformity: Wang & Isola (2020), "Understanding contrastive representation learning
through alignment and uniformity on the hypersphere", ICML, Eqs. (4)-(5) with defaults alpha = 2, t = 2.

>>> z = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
>>> stable_rank(z)  # eigenvalues of Sigma: 2 and 0.5 -> 2.5^2 / 4.25
1.4705882352941178
>>> stable_rank(torch.ones(5, 3))  # all rows equal: no variance
0.0
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from clop.util.checks import check_nonnegative as _check_nonnegative
from clop.util.checks import check_positive as _check_positive
from clop.util.checks import check_size as _check_size

__all__ = [
    "singular_values",
    "covariance",
    "covariance_eigenvalues",
    "stable_rank",
    "entropy_rank",
    "rankme",
    "alignment",
    "uniformity",
    "mean_norm",
    "collapse_metrics",
    "default_rtol",
]


# --------------------------------------------------------------------------------------------------
# input handling


def _as_matrix(z: Any, name: str = "z") -> tuple[torch.Tensor, float]:
    """Return (z as a float64 tensor (N, D), machine epsilon of the input's dtype)."""
    if isinstance(z, torch.Tensor):
        t = z.detach()
    else:
        try:
            arr = np.asarray(z)
        except Exception as exc:  # pragma: no cover - numpy raises many types here
            raise ValueError(f"{name} must be a torch tensor or numpy array of shape (N, D); got {type(z).__name__}") from exc
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            raise ValueError(f"{name} must hold real numbers; got numpy dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        raise ValueError(f"{name} must be real; got dtype {t.dtype}")
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D with shape (N, D); got shape {tuple(t.shape)}")
    if t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(f"{name} must have N >= 1 rows and D >= 1 columns; got shape {tuple(t.shape)}")
    eps = torch.finfo(t.dtype).eps if t.dtype.is_floating_point else torch.finfo(torch.float64).eps
    if t.device.type == "mps":  # no float64 on MPS
        t = t.cpu()
    t = t.to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf values")
    return t, eps


def _need_rows(z: torch.Tensor, name: str, minimum: int, what: str) -> None:
    if z.shape[0] < minimum:
        raise ValueError(f"{name} needs at least N = {minimum} rows for {what}; got shape {tuple(z.shape)}")


def _rescaled(z: torch.Tensor) -> tuple[torch.Tensor, float]:
    """z / max|z| and the scale (1.0 for z == 0): keeps squares away from float64 over/underflow."""
    s = float(z.abs().max())
    if s == 0.0:
        return z, 1.0
    return z / s, s


def _unit_rows(z: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm; zero rows stay zero. Robust to tiny and huge entries."""
    m = z.abs().amax(dim=1, keepdim=True)
    y = torch.where(m > 0, z / torch.where(m > 0, m, torch.ones_like(m)), z)
    n = torch.linalg.vector_norm(y, dim=1, keepdim=True)
    return torch.where(n > 0, y / torch.where(n > 0, n, torch.ones_like(n)), y)


# --------------------------------------------------------------------------------------------------
# spectrum


_ROUNDOFF_FACTOR = 10.0  # multiple of eps(input dtype) in the default rtol (see module doc)


def default_rtol(n: int, d: int, eps: float) -> float:
    """Default relative cut of the rank metrics for an (n, d) input whose dtype has machine epsilon ``eps``.

    rtol = 10 * eps + max(n, d) * eps(float64): input round-off plus the float64 centring/SVD done here
    (module doc, "Numerical zero"). E.g. ``default_rtol(n, d, torch.finfo(torch.bfloat16).eps)``.
    """
    n = _check_size("n", n)
    d = _check_size("d", d)
    eps = _check_nonnegative("eps", eps)
    return _ROUNDOFF_FACTOR * eps + max(n, d) * torch.finfo(torch.float64).eps


def _centered_weights(
    zs: torch.Tensor, eps: float, rtol: float | None, ref: float | None = None
) -> torch.Tensor:
    """Thresholded squared singular values of the centred, rescaled zs: proportional to Sigma's eigenvalues.

    Returns a (min(N, D),) descending float64 tensor; entries <= rtol * s_max(zs) (``ref``, the largest
    singular value of the uncentred zs) are set to 0. ``eps``: machine epsilon of the input's dtype.
    """
    n, d = zs.shape
    tol_rel = default_rtol(n, d, eps) if rtol is None else rtol
    if ref is None:
        ref = float(torch.linalg.matrix_norm(zs, ord=2))  # s_max of the uncentred (rescaled) matrix
    s = torch.linalg.svdvals(zs - zs.mean(dim=0, keepdim=True))
    s = torch.where(s <= tol_rel * ref, torch.zeros_like(s), s)
    return s * s


def singular_values(z: Any, *, center: bool = False) -> torch.Tensor:
    """Singular values of z: (N, D), or of its row-centred version; (min(N, D),) float64, descending.

    No tolerance is applied: these are the raw singular values (for plots of the spectrum, as in CLOP
    Figure 3).
    """
    t, _ = _as_matrix(z)
    zs, scale = _rescaled(t)
    if center:
        zs = zs - zs.mean(dim=0, keepdim=True)
    return torch.linalg.svdvals(zs) * scale


def covariance(z: Any) -> torch.Tensor:
    """Population covariance of the rows of z: (N, D) -> Sigma: (D, D) = (1/N) sum_i (z_i - zbar)(z_i - zbar)^T.

    1/N normalisation, as in the metrics note (Sigma = (1/N) Z^T Z - zbar zbar^T). Needs N >= 2.
    """
    t, _ = _as_matrix(z)
    _need_rows(t, "z", 2, "a covariance")
    zc = t - t.mean(dim=0, keepdim=True)
    return zc.T @ zc / t.shape[0]


def covariance_eigenvalues(z: Any, *, rtol: float | None = None) -> torch.Tensor:
    """Eigenvalues of :func:`covariance` (z): (D,) float64, descending, round-off zeroed (see module doc).

    lambda_i = s_i(Z_c)^2 / N for i < min(N, D) and 0 beyond (Sigma has rank <= min(N - 1, D)).
    """
    t, eps = _as_matrix(z)
    _need_rows(t, "z", 2, "a covariance")
    if rtol is not None:
        rtol = _check_nonnegative("rtol", rtol)
    zs, scale = _rescaled(t)
    w = _centered_weights(zs, eps, rtol) * (scale * scale / t.shape[0])
    out = torch.zeros(t.shape[1], dtype=torch.float64, device=t.device)
    out[: w.numel()] = w
    return out


def _stable_rank_from(w: torch.Tensor) -> float:
    top = float(w.max())
    if top == 0.0:
        return 0.0
    w = w / top
    return float(w.sum() ** 2 / (w * w).sum())


def _entropy_rank_from(w: torch.Tensor) -> float:
    total = float(w.sum())
    if total == 0.0:
        return 0.0
    p = w[w > 0] / total
    return float(torch.exp(-(p * torch.log(p)).sum()))


def stable_rank(z: Any, *, rtol: float | None = None) -> float:
    """Stable rank of the embedding covariance: srank(Sigma) = (tr Sigma)^2 / ||Sigma||_F^2.

    Definition of the collapse-metrics note ("Effective Rank"); in [1, D] when Sigma != 0,
    and 0.0 when Sigma == 0 (see module doc). z: (N, D), N >= 2. Scale invariant. ``rtol``: singular values
    of the centred z at or below rtol * s_max(z) count as zero; None: :func:`default_rtol` (module doc).
    """
    t, eps = _as_matrix(z)
    _need_rows(t, "z", 2, "a covariance")
    if rtol is not None:
        rtol = _check_nonnegative("rtol", rtol)
    return _stable_rank_from(_centered_weights(_rescaled(t)[0], eps, rtol))


def entropy_rank(z: Any, *, rtol: float | None = None) -> float:
    """Entropy rank of the embedding covariance: erank(Sigma) = exp(-sum_i p_i log p_i), p_i = lambda_i / sum_j lambda_j.

    Definition of the collapse-metrics note ("Effective Rank"), with 0 log 0 = 0;
    in [1, D] when Sigma != 0 and 0.0 when Sigma == 0. z: (N, D), N >= 2. Scale invariant. ``rtol``: as in
    :func:`stable_rank`.
    """
    t, eps = _as_matrix(z)
    _need_rows(t, "z", 2, "a covariance")
    if rtol is not None:
        rtol = _check_nonnegative("rtol", rtol)
    return _entropy_rank_from(_centered_weights(_rescaled(t)[0], eps, rtol))


def _rankme_from(s: torch.Tensor, eps: float) -> float:
    total = float(s.sum())
    if total == 0.0:
        return 0.0
    p = s / total + eps
    return float(torch.exp(-(p * torch.log(p)).sum()))


def rankme(z: Any, eps: float = 1e-7) -> float:
    """RankMe of Garrido et al. (2023), Eq. (1), on the uncentred embedding matrix z: (N, D).

    RankMe(z) = exp(-sum_k p_k log p_k), p_k = sigma_k(z) / ||sigma(z)||_1 + eps, k = 1..min(N, D);
    eps = 1e-7 as in the RankMe paper. Scale invariant. Returns 0.0 for z == 0 (see module doc).
    """
    t, _ = _as_matrix(z)
    eps = _check_nonnegative("eps", eps)
    return _rankme_from(torch.linalg.svdvals(_rescaled(t)[0]), eps)


# --------------------------------------------------------------------------------------------------
# alignment, uniformity, mean


def alignment(z1: Any, z2: Any, alpha: float = 2) -> float:
    """Alignment of Wang & Isola (2020), Eq. (4): mean_i ||f(x_i) - f(y_i)||_2^alpha on L2-normalised rows.

    z1, z2: (N, D), row i of z1 and row i of z2 form a positive pair. alpha > 0 (default 2, the paper's).
    Lower is better aligned; in [0, 2^alpha].
    """
    a, _ = _as_matrix(z1, "z1")
    b, _ = _as_matrix(z2, "z2")
    if a.shape != b.shape:
        raise ValueError(f"z1 and z2 must have the same shape (N, D); got z1 {tuple(a.shape)} and z2 {tuple(b.shape)}")
    alpha = _check_positive("alpha", alpha)
    if a.device != b.device:
        b = b.to(a.device)
    d = torch.linalg.vector_norm(_unit_rows(a) - _unit_rows(b), dim=1)
    return float((d**alpha).mean())


def uniformity(z: Any, t: float = 2, *, block_size: int = 1024) -> float:
    """Uniformity of Wang & Isola (2020), Eq. (5): log mean_{i<j} exp(-t ||u_i - u_j||_2^2), u = L2-normalised rows.

    z: (N, D), N >= 2; t > 0 (default 2, the paper's). In [-4t, 0] for unit rows; lower is more uniform.
    Computed with a log-sum-exp over row blocks of ``block_size`` rows: O(N^2 D) time, O(block_size N)
    memory.
    """
    x, _ = _as_matrix(z)
    _need_rows(x, "z", 2, "pairwise distances")
    t = _check_positive("t", t)
    block_size = _check_size("block_size", block_size)
    u = _unit_rows(x)
    n = u.shape[0]
    sq = (u * u).sum(dim=1)
    j = torch.arange(n, device=u.device)[None, :]
    parts = []
    for start in range(0, n - 1, block_size):
        stop = min(start + block_size, n - 1)
        rows = u[start:stop]
        # squared distances from rows start..stop-1 to every row; pairs j <= i (diagonal and lower
        # triangle) get -inf in the exponent, so only i < j counts (no boolean indexing: fixed shapes)
        d2 = (sq[start:stop, None] + sq[None, :] - 2.0 * rows @ u.T).clamp_min_(0.0)
        i = torch.arange(start, stop, device=u.device)[:, None]
        expo = (d2.mul_(-t)).masked_fill_(j <= i, float("-inf"))
        parts.append(torch.logsumexp(expo.flatten(), dim=0))
    n_pairs = n * (n - 1) / 2
    return float(torch.logsumexp(torch.stack(parts), dim=0) - math.log(n_pairs))


def mean_norm(z: Any, *, normalize: bool = False) -> float:
    """||(1/N) sum_i z_i||_2 for z: (N, D); with ``normalize=True`` the rows are L2-normalised first.

    For unit-norm embeddings this is the "class embedding mean" of CLOP Section 3.1: 1 at complete
    collapse (all rows equal), 0 for a centred arrangement such as a simplex ETF.
    """
    x, _ = _as_matrix(z)
    if normalize:
        x = _unit_rows(x)
    xs, scale = _rescaled(x)
    return float(torch.linalg.vector_norm(xs.mean(dim=0))) * scale


def collapse_metrics(z: Any, top: int = 5) -> dict[str, float]:
    """All scalar collapse metrics of z: (N, D) in one dict of floats, for training logs.

    Keys: stable_rank, entropy_rank (of the covariance), rankme, mean_norm (raw rows), uniformity (t = 2),
    and sv1..sv{top}, the largest singular values of the uncentred z (0.0 beyond min(N, D)).
    Needs N >= 2. Shares one SVD of z and one of the centred z between the metrics.
    """
    x, eps = _as_matrix(z)
    _need_rows(x, "z", 2, "collapse metrics")
    top = _check_size("top", top, minimum=0)
    xs, scale = _rescaled(x)
    s = torch.linalg.svdvals(xs)
    w = _centered_weights(xs, eps, None, ref=float(s[0]))
    out = {
        "stable_rank": _stable_rank_from(w),
        "entropy_rank": _entropy_rank_from(w),
        "rankme": _rankme_from(s, 1e-7),
        "mean_norm": mean_norm(x),
        "uniformity": uniformity(x),
    }
    sv = (s * scale).tolist()
    for i in range(top):
        out[f"sv{i + 1}"] = float(sv[i]) if i < len(sv) else 0.0
    return out
