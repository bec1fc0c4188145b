"""Explicit gradients of the Table 5 losses on stacked runs (CLOP paper, arXiv 2403.18699, Sec. 4, Eq. (4)).

The fused training of :mod:`simulations.ffn.fused` needs, for S independent runs at once, the gradient of
each run's loss with respect to its network outputs, without autograd. This module gives it in closed form
for the four base losses of Table 5 and for the CLOP term, with the settings of :data:`LOSS_PARAMS` (the
same numbers :func:`simulations.ffn.train.base_loss_fn` passes to :mod:`clop.losses`).

Input layout: ``z``: (S, 2N, D), the outputs of run s on the first view of its N points in rows 0..N-1 and
on the second view in rows N..2N-1 (``z1 = z[:, :N]``, ``z2 = z[:, N:]``). Every function returns
``(g, value)``: ``g`` (S, 2N, D) is d(loss of run s)/d z[s], ``value`` (S,) the per-run loss, or None when
``with_value`` is False (training needs only the gradient). The formulas, with ``R = 2N``:

* InfoNCE / DCL (:func:`contrastive_grad`; :func:`clop.losses.info_nce`, :func:`clop.losses.dcl`):
  ``u_i = z_i / max(||z_i||, 1e-6)``, ``s_ia = u_i . u_a / tau``, ``p(i) = (i + N) mod R``. With
  ``E_ia = exp(s_ia - 1/tau)`` on the allowed pairs (a != i, and a != p(i) for DCL; 0 elsewhere), which is
  symmetric, and ``r_i = sum_a E_ia``, the softmax is ``P = diag(1/r) E`` and
  ``L = 1/R sum_i [log r_i + 1/tau - s_{i p(i)}]``,
  ``dL/du = (P u + P^T u - 2 u_p) / (R tau)`` with ``P^T u = E (u / r)``, so both products are one
  batched product ``E [u, u / r]``. The shift by ``1/tau`` (the largest logit) replaces the running
  maximum of a log-sum-exp: every exponent lies in [-2/tau, 0].
* The projection of a normalisation (:func:`project`): for ``u = z / max(||z||, f)``,
  ``dL/dz = (g_u - u (u . g_u) [||z|| >= f]) / max(||z||, f)``.
* CLOP term, cosine similarity, reduction "sum", both views (:func:`clop_grad`; :func:`clop.losses.clop_term`):
  ``L = lam sum_{i labeled} (1 - u_i . c_{y_i})``, so ``dL/du_i = -lam c_{y_i}`` on labeled rows and 0
  elsewhere; the caller passes ``C`` (S, R, D) holding the unit prototype of each labeled row and zero rows
  for the unlabeled ones, and adds ``dL/du`` to the base loss's before one projection.
* Barlow Twins (:func:`barlow_twins_grad`; :func:`clop.losses.barlow_twins`, biased variance, eps):
  ``y = (z - mean) / sigma``, ``sigma = sqrt(var + eps)`` per view and dimension, ``C = y1^T y2 / N``,
  ``L = sum_i (1 - C_ii)^2 + lam sum_{i != j} C_ij^2``, ``G = dL/dC`` (``-2 (1 - C_ii)`` on the diagonal,
  ``2 lam C_ij`` off it), ``dL/dy1 = y2 G^T / N``, ``dL/dy2 = y1 G / N``, and through the standardisation
  ``dL/dz = (g_y - mean(g_y) - y mean(g_y y)) / sigma`` (means over the N rows).
* VICReg (:func:`vicreg_grad`; :func:`clop.losses.vicreg`): with ``xc = z - mean`` and the unbiased covariance
  ``K = xc^T xc / (N - 1)`` per view, the invariance term gives ``+-2 lam_s (z1 - z2) / (N D)``, and the
  variance and covariance terms together give ``xc M`` with
  ``M_dd = -mu [gamma > std_d] / (D (N - 1) std_d)`` (``std_d = sqrt(K_dd + eps)``) and
  ``M_ij = 4 nu K_ij / (D (N - 1))`` off the diagonal (the mean of ``xc M`` over the rows is zero, so the
  centring adds nothing).

Every formula is checked against autograd through :mod:`clop.losses` in float64 by
``tests/simulations/ffn/test_grads.py``. Plain torch operations: any device, any floating dtype.
"""

from __future__ import annotations

import functools

import torch

__all__ = ["NORM_FLOOR", "LOSS_PARAMS", "CLOP_LAMBDA", "loss_grad", "contrastive_grad", "barlow_twins_grad",
           "vicreg_grad", "clop_grad", "project", "unit_rows"]

NORM_FLOOR = 1e-6
"""Floor of ``||z||`` in every normalisation (the floor of :mod:`clop.losses`)."""

LOSS_PARAMS: dict[str, dict[str, float]] = {
    "infonce": {"temperature": 0.5},
    "dcl": {"temperature": 0.1},
    "barlowtwins": {"lambda_offdiag": 5e-3, "eps": 1e-5},
    "vicreg": {"sim_weight": 25.0, "var_weight": 25.0, "cov_weight": 1.0, "eps": 1e-4, "gamma": 1.0},
}
"""The settings of the Table 5 losses, keyword arguments of the :mod:`clop.losses` functions (InfoNCE at
tau = 0.5 and DCL at tau = 0.1, Barlow Twins and VICReg at their papers' values, which are clop.losses'
defaults)."""

CLOP_LAMBDA = 1.0
"""lambda of the CLOP term (Eq. (4); the paper uses 1)."""


def unit_rows(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(u, n, nc)``: u = z / max(||z||, NORM_FLOOR) row-wise, n = ||z|| and nc = max(n, NORM_FLOOR), (..., 1)."""
    n = torch.linalg.vector_norm(z, dim=-1, keepdim=True)
    nc = n.clamp_min(NORM_FLOOR)
    return z / nc, n, nc


def project(gu: torch.Tensor, u: torch.Tensor, n: torch.Tensor, nc: torch.Tensor) -> torch.Tensor:
    """d/dz from d/du for ``u = z / max(||z||, NORM_FLOOR)``: (gu - u (u . gu) [n >= floor]) / nc."""
    dot = (u * gu).sum(dim=-1, keepdim=True)
    dot = torch.where(n >= NORM_FLOOR, dot, 0.0)
    return (gu - u * dot) / nc


@functools.lru_cache(maxsize=16)
def _shifted_mask(rows: int, half: int, drop_partner: bool, shift: float, dtype: torch.dtype,
                  device: torch.device) -> torch.Tensor:
    """(R, R): -inf on the excluded pairs (a = i, and a = p(i) with ``drop_partner``), -shift elsewhere."""
    mask = torch.full((rows, rows), -shift, dtype=dtype, device=device)
    mask.fill_diagonal_(float("-inf"))
    if drop_partner:
        mask.diagonal(half).fill_(float("-inf"))
        mask.diagonal(-half).fill_(float("-inf"))
    return mask


def _partners(u: torch.Tensor) -> torch.Tensor:
    """u_p(i): the rows of the other view, (S, 2N, D)."""
    return torch.roll(u, u.shape[1] // 2, dims=1)


def contrastive_grad(u: torch.Tensor, temperature: float, drop_partner: bool, extra_gu: torch.Tensor | None = None,
                     with_value: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(d/du, value) of InfoNCE (``drop_partner`` False) or DCL (True) on unit rows u: (S, 2N, D).

    ``extra_gu``: a gradient with respect to u to add (the CLOP term's), so that one projection serves both.
    Returns the gradient with respect to u (project it with :func:`project`).
    """
    s_, rows, d = u.shape
    inv_t = 1.0 / temperature
    mask = _shifted_mask(rows, rows // 2, drop_partner, inv_t, u.dtype, u.device)
    e = torch.baddbmm(mask, u, u.transpose(1, 2), alpha=inv_t).exp_()  # E_ia = exp(s_ia - 1/tau), 0 if excluded
    r = e.sum(dim=-1, keepdim=True)  # (S, R, 1)
    eu = torch.bmm(e, torch.cat([u, u / r], dim=-1))  # [E u, E (u / r)] = [r P u, P^T u]
    partners = _partners(u)
    gu = (eu[..., :d] / r + eu[..., d:] - 2.0 * partners) * (inv_t / rows)
    if extra_gu is not None:
        gu = gu + extra_gu
    value = None
    if with_value:
        positive = (u * partners).sum(dim=-1) * inv_t
        value = (torch.log(r[..., 0]) + inv_t - positive).mean(dim=1)
    return gu, value


def clop_grad(u: torch.Tensor, protos: torch.Tensor, lam: float = CLOP_LAMBDA,
              with_value: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(d/du, value) of the CLOP term (cosine, sum over labeled rows) on unit rows u: (S, R, D).

    ``protos``: (S, R, D), the unit prototype c_{y_i} of every labeled row i and a zero row for the unlabeled
    ones. Value per run: lam * sum over labeled rows of (1 - u_i . c_{y_i}).
    """
    gu = protos * (-lam)
    value = None
    if with_value:
        labeled = (protos != 0).any(dim=-1).to(u.dtype)
        value = lam * (labeled - (u * protos).sum(dim=-1)).sum(dim=1)
    return gu, value


def _views(z: torch.Tensor) -> torch.Tensor:
    """(S, 2N, D) -> (S, 2, N, D), the two views on their own axis (a view, no copy)."""
    s_, rows, d = z.shape
    return z.view(s_, 2, rows // 2, d)


def barlow_twins_grad(z: torch.Tensor, lambda_offdiag: float, eps: float,
                      with_value: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(d/dz, value) of Barlow Twins (biased variance + eps) on z: (S, 2N, D)."""
    s_, rows, d = z.shape
    n = rows // 2
    zz = _views(z)
    xc = zz - zz.mean(dim=2, keepdim=True)
    sigma = torch.sqrt((xc * xc).mean(dim=2, keepdim=True) + eps)  # (S, 2, 1, D)
    y = xc / sigma
    y1, y2 = y[:, 0], y[:, 1]
    c = torch.bmm(y1.transpose(1, 2), y2) / n  # (S, D, D)
    diag = torch.diagonal(c, dim1=1, dim2=2)
    g = c * (2.0 * lambda_offdiag)
    torch.diagonal(g, dim1=1, dim2=2).copy_((diag - 1.0) * 2.0)
    gy = torch.stack([torch.bmm(y2, g.transpose(1, 2)), torch.bmm(y1, g)], dim=1) / n  # (S, 2, N, D)
    gz = (gy - gy.mean(dim=2, keepdim=True) - y * (gy * y).mean(dim=2, keepdim=True)) / sigma
    value = None
    if with_value:
        off = c.pow(2).sum(dim=(1, 2)) - diag.pow(2).sum(dim=1)
        value = (1.0 - diag).pow(2).sum(dim=1) + lambda_offdiag * off
    return gz.reshape(s_, rows, d), value


def vicreg_grad(z: torch.Tensor, sim_weight: float, var_weight: float, cov_weight: float, eps: float,
                gamma: float, with_value: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(d/dz, value) of VICReg (unbiased variance) on z: (S, 2N, D)."""
    s_, rows, d = z.shape
    n = rows // 2
    zz = _views(z)
    xc = (zz - zz.mean(dim=2, keepdim=True)).reshape(2 * s_, n, d)
    cov = torch.bmm(xc.transpose(1, 2), xc) / (n - 1)  # (2S, D, D), unbiased
    var = torch.diagonal(cov, dim1=1, dim2=2)
    std = torch.sqrt(var + eps)
    active = (gamma - std > 0).to(z.dtype)
    m = cov * (4.0 * cov_weight / (d * (n - 1)))
    torch.diagonal(m, dim1=1, dim2=2).copy_(active * (-var_weight / (d * (n - 1))) / std)
    diff = zz[:, 0] - zz[:, 1]
    ginv = diff * (2.0 * sim_weight / (n * d))
    gz = torch.bmm(xc, m).view(s_, 2, n, d) + torch.stack([ginv, -ginv], dim=1)
    value = None
    if with_value:
        inv = diff.pow(2).mean(dim=(1, 2))
        variance = torch.relu(gamma - std).mean(dim=1).view(s_, 2).sum(dim=1)
        off = (cov.pow(2).sum(dim=(1, 2)) - var.pow(2).sum(dim=1)).view(s_, 2).sum(dim=1) / d
        value = sim_weight * inv + var_weight * variance + cov_weight * off
    return gz.reshape(s_, rows, d), value


def loss_grad(name: str, z: torch.Tensor, protos: torch.Tensor | None = None,
              with_value: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(d/dz, value) of the base loss ``name`` (:data:`LOSS_PARAMS`), plus the CLOP term when ``protos`` is given.

    z: (S, 2N, D) (module docstring); protos: (S, 2N, D) per-row unit prototypes, zero rows for unlabeled
    points (:func:`clop_grad`), or None for the base loss alone. ``value``: the per-run base loss (S,) (the
    training history records the base loss alone), or None.
    """
    params = LOSS_PARAMS[name]
    cosine = name in ("infonce", "dcl")
    u = n = nc = None
    extra = None
    if protos is not None:
        u, n, nc = unit_rows(z)
        extra, _ = clop_grad(u, protos)
    if cosine:
        if u is None:
            u, n, nc = unit_rows(z)
        gu, value = contrastive_grad(u, params["temperature"], name == "dcl", extra, with_value)
        g = project(gu, u, n, nc)
    else:
        fn = barlow_twins_grad if name == "barlowtwins" else vicreg_grad
        g, value = fn(z, **params, with_value=with_value)
        if extra is not None:
            g = g + project(extra, u, n, nc)
    return g, value
