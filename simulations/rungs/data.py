"""Fixed inputs of rung 2: scikit-learn's 8x8 digits, and a Gaussian mixture with a chosen Gram spectrum.

Both return ``X: (2N, p)`` float64, view 1 of instances 0..N-1 then view 2, with instance i of class
``i % k`` (the labelling of :class:`simulations.rungs.problem.Problem`).

* :func:`digits_views`: the first n images of each of the k classes 0..k-1 (k <= 10) in the data set's order,
  pixels / 16, centred over the chosen images; each view adds its own Gaussian noise of standard deviation
  ``noise`` (drawn once, with ``seed``: the views are fixed inputs, not fresh augmentations).
* :func:`mixture_views`: instance means m_c + N(0, 0.1^2) around k Gaussian class means m_c ~ N(0, I_p/p) in
  R^p, two noisy views each as above; then the singular values of X are replaced by ``spectrum`` (length
  2N, 2N <= p), keeping its singular vectors: X = U diag(s) V^T. The Gram matrix X X^T then has exactly
  the eigenvalues s^2 (with ``spectrum="flat"``: s = 1 for all, so X X^T = I and the views are orthonormal).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["digits_views", "mixture_views", "gram_eigenvalues"]


def _gen(seed: int, tag: int) -> torch.Generator:
    state = np.random.SeedSequence([int(seed), int(tag)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def digits_views(k: int, n: int, noise: float = 0.05, seed: int = 0) -> torch.Tensor:
    """(2N, 64) views of the digits (module docstring)."""
    from sklearn.datasets import load_digits

    if not 3 <= k <= 10:
        raise ValueError(f"k must be in [3, 10] for the digits; got {k!r}")
    images, target = load_digits(return_X_y=True)
    per_class = [np.flatnonzero(target == c)[:n] for c in range(k)]
    if min(len(p) for p in per_class) < n:
        raise ValueError(f"n={n} is more images than some digit class holds")
    order = [per_class[i % k][i // k] for i in range(k * n)]
    x = torch.as_tensor(images[order] / 16.0, dtype=torch.float64)
    x = x - x.mean(0)
    g = _gen(seed, 11)
    v1 = x + noise * torch.randn(x.shape, generator=g, dtype=torch.float64)
    v2 = x + noise * torch.randn(x.shape, generator=g, dtype=torch.float64)
    return torch.cat([v1, v2])


def mixture_views(k: int, n: int, p: int = 64, spectrum: str | np.ndarray = "flat", noise: float = 0.05,
                  seed: int = 0) -> torch.Tensor:
    """(2N, p) views of a Gaussian mixture with the Gram eigenvalues ``spectrum**2`` (module docstring).

    ``spectrum``: ``"flat"`` (all singular values 1), ``"decay"`` (s_i = (i + 1)^-1/2, i = 0..2N-1) or an array
    of 2N positive singular values.
    """
    rows = 2 * k * n
    if rows > p:
        raise ValueError(f"2N = {rows} views need p >= 2N input dimensions; got p={p}")
    g = _gen(seed, 13)
    means = torch.randn(k, p, generator=g, dtype=torch.float64) / p**0.5
    inst = means[torch.arange(k * n) % k] + 0.1 * torch.randn(k * n, p, generator=g, dtype=torch.float64) / p**0.5
    v = torch.cat([inst + noise * torch.randn(k * n, p, generator=g, dtype=torch.float64) / p**0.5
                   for _ in range(2)])
    if isinstance(spectrum, str):
        if spectrum == "flat":
            s = np.ones(rows)
        elif spectrum == "decay":
            s = (np.arange(rows) + 1.0) ** -0.5
        else:
            raise ValueError(f"spectrum={spectrum!r} is not supported; expected 'flat', 'decay' or an array")
    else:
        s = np.asarray(spectrum, dtype=float)
        if s.shape != (rows,) or not np.all(s > 0):
            raise ValueError(f"spectrum must hold {rows} positive singular values; got shape {s.shape}")
    u, _, vh = torch.linalg.svd(v, full_matrices=False)
    return u @ torch.diag(torch.as_tensor(s, dtype=torch.float64)) @ vh


def gram_eigenvalues(x: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of X X^T (ascending)."""
    return torch.linalg.eigvalsh(x @ x.T)
