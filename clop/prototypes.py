"""Class prototypes: the orthonormal prototypes of CLOP and the simplex equiangular tight frame.

Both constructions draw their randomness from a CPU :class:`torch.Generator` seeded with ``seed`` and
compute in float64 on the CPU; only the finished matrix is cast to ``dtype`` and moved to ``device``.
The same seed therefore gives the same prototypes on every process and on every device.

References
----------
CLOP paper, Section 4 ("Our model"), arXiv 2403.18699: "we randomly sample k
i.i.d. vectors from an m'-dimensional space ... Subsequently, we apply singular value decomposition (SVD)
to obtain the orthonormal basis".
Simplex ETF: Papyan, Han & Donoho (2020), "Prevalence of neural collapse during the terminal phase of deep
learning training", PNAS, Definition 1; used as prototypes by Zhu et al. (2022) and Gill et al. (2024).

>>> c = orthonormal(3, 8, seed=0, device="cpu")
>>> torch.allclose(c @ c.T, torch.eye(3), atol=1e-6)
True
>>> e = simplex_etf(4, 3, seed=0, device="cpu", dtype=torch.float64)
>>> round(float(e[0] @ e[1]), 12)
-0.333333333333
"""

from __future__ import annotations

import math
import numbers

import torch

from clop.util.checks import check_dtype as _check_dtype
from clop.util.checks import check_size as _check_size
from clop.util.device import default_device

__all__ = ["orthonormal", "simplex_etf", "gaussian_draw"]


def _generator(seed: int | None) -> torch.Generator:
    """CPU generator seeded with ``seed``; ``None`` draws a fresh seed from OS entropy."""
    g = torch.Generator(device="cpu")
    if seed is None:
        g.seed()
    elif isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or None; got {seed!r}")
    else:
        g.manual_seed(int(seed))
    return g


def gaussian_draw(k: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """The i.i.d. standard Gaussian draw behind :func:`orthonormal`: (k, dim), float64, CPU.

    Exposed so that tests (and users) can recompute the draw from the same generator state.
    """
    return torch.randn(k, dim, generator=generator, dtype=torch.float64, device="cpu")


def _orthonormal_f64(k: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    g = gaussian_draw(k, dim, generator)
    # Thin SVD G = U S V^T with U: (k, k), V^T: (k, dim); the orthonormal factor U V^T is the closest
    # matrix with orthonormal rows to G (polar factor). It does not depend on the sign convention of the
    # singular vectors, so any SVD routine gives the same answer.
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    return u @ vh


def orthonormal(
    k: int,
    dim: int,
    *,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """k orthonormal prototypes in R^dim, as in CLOP Section 4: returns C: (k, dim) with C C^T = I_k.

    Draws G: (k, dim) with i.i.d. N(0, 1) entries and returns the orthonormal factor U V^T of its thin
    SVD G = U S V^T. The rows are uniformly distributed orthonormal k-frames (the polar factor of a
    Gaussian matrix is Haar distributed).

    Args:
        k: number of prototypes (classes), k >= 1.
        dim: embedding dimension m', dim >= k.
        seed: seed of the CPU generator; ``None`` uses fresh OS entropy.
        dtype: floating dtype of the result (computed in float64, then cast).
        device: device of the result; ``None`` means CUDA when present, else CPU.

    Raises:
        ValueError: k or dim not a positive integer, k > dim, bad seed or dtype.
    """
    k = _check_size("k", k)
    dim = _check_size("dim", dim)
    if k > dim:
        raise ValueError(f"orthonormal prototypes need k <= dim; got k={k}, dim={dim}")
    dtype = _check_dtype(dtype)
    dev = default_device(device)
    c = _orthonormal_f64(k, dim, _generator(seed))
    return c.to(dtype=dtype).to(dev)


def _helmert_basis(k: int) -> torch.Tensor:
    """Orthonormal basis of the complement of the all-ones vector in R^k: H: (k, k-1), float64.

    Column j (1-based) is (1, ..., 1, -j, 0, ..., 0) / sqrt(j (j+1)) with j ones (Helmert contrasts).
    """
    h = torch.zeros(k, k - 1, dtype=torch.float64)
    for j in range(1, k):
        norm = math.sqrt(j * (j + 1))
        h[:j, j - 1] = 1.0 / norm
        h[j, j - 1] = -j / norm
    return h


def simplex_etf(
    k: int,
    dim: int,
    *,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """A k-point simplex equiangular tight frame in R^dim: E: (k, dim).

    Properties: unit rows, e_i . e_j = -1/(k-1) for i != j, sum_i e_i = 0, rank k-1 (Papyan et al. 2020,
    Definition 1: M = sqrt(k/(k-1)) P (I_k - 1 1^T / k) with P^T P = I).

    Construction: H: (k, k-1) is the Helmert orthonormal basis of the complement of 1 in R^k, so
    H H^T = I_k - 1 1^T / k; then E = sqrt(k/(k-1)) H Q with Q: (k-1, dim) random orthonormal rows
    (:func:`orthonormal` with the same seed). E E^T = k/(k-1) (I_k - 1 1^T/k), exactly the ETF Gram
    matrix, and the frame lies in the random (k-1)-dimensional subspace spanned by the rows of Q.

    Args:
        k: number of points, k >= 2.
        dim: ambient dimension, dim >= k - 1.
        seed, dtype, device: as in :func:`orthonormal`.

    Raises:
        ValueError: k or dim not a positive integer, k outside [2, dim + 1], bad seed or dtype.
    """
    k = _check_size("k", k)
    dim = _check_size("dim", dim)
    if not 2 <= k <= dim + 1:
        raise ValueError(f"simplex ETF needs 2 <= k <= dim + 1; got k={k}, dim={dim}")
    dtype = _check_dtype(dtype)
    dev = default_device(device)
    q = _orthonormal_f64(k - 1, dim, _generator(seed))
    e = math.sqrt(k / (k - 1)) * (_helmert_basis(k) @ q)
    return e.to(dtype=dtype).to(dev)
