"""Lemma 1 of the CLOP paper (collapsed configurations of InfoNCE), checked with autograd in float64.

Paper: CLOP, arXiv 2403.18699, Lemma 1 (Section 3.1) and its proof in Appendix C
(headed "Proof of Theorem 1" there).  The lemma says all-equal or co-linear embeddings are "local minima"
of InfoNCE; the proof shows only that the gradient w.r.t. the unnormalised embeddings vanishes.

Checks (all on :func:`clop.losses.info_nce`, NT-Xent over 2N views, which L2-normalises internally):

* :func:`gradient_norms` - the gradient w.r.t. the unnormalised embeddings vanishes at an all-equal and at a
  co-linear (+-z) configuration, and not at a random one;
* :func:`collapse_hessian` - the Hessian w.r.t. the unnormalised embeddings at the all-equal configuration
  has negative eigenvalues (a saddle in embedding space, not a minimum);
* :func:`network_hessian` - the same for a small network whose linear head outputs the collapsed embedding
  (W = 0, b = v): the parameter Hessian J^T H_z J has negative eigenvalues too;
* :func:`p_star` - the softmax probability of the positive at collapse, 1/(|I| - 1) (derived with sympy), vs
  the printed "P* = -log 1/(|I| - 1)" (which is the loss value, not a probability).

Shapes: ``z1, z2: (N, D)``; the 2N views are ``cat(z1, z2)``.
"""

from __future__ import annotations

import functools

import sympy as sp
import torch

__all__ = [
    "collapsed_views",
    "colinear_views",
    "random_views",
    "gradient_norms",
    "normalised_gradient_norms",
    "collapse_hessian",
    "network_hessian",
    "p_star",
    "paper_p_star_expr",
]

_TAU = 0.5


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def collapsed_views(n: int = 4, d: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """All 2N embeddings on the same ray, with different positive lengths: c_a v, c_a > 0. (N, D) each."""
    g = _gen(seed)
    v = torch.randn(d, generator=g, dtype=torch.float64)
    c = 0.5 + torch.rand(2 * n, 1, generator=g, dtype=torch.float64)
    z = c * v
    return z[:n].clone(), z[n:].clone()


def colinear_views(n: int = 4, d: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """All 2N embeddings on one line with random signs and lengths: +-c_a v (co-linear). (N, D) each."""
    g = _gen(seed)
    v = torch.randn(d, generator=g, dtype=torch.float64)
    c = 0.5 + torch.rand(2 * n, 1, generator=g, dtype=torch.float64)
    sign = torch.where(torch.rand(2 * n, 1, generator=g, dtype=torch.float64) < 0.5, -1.0, 1.0).double()
    sign[0], sign[1] = 1.0, -1.0  # make sure both signs occur
    z = sign * c * v
    return z[:n].clone(), z[n:].clone()


def random_views(n: int = 4, d: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian embeddings. (N, D) each."""
    g = _gen(seed)
    z = torch.randn(2 * n, d, generator=g, dtype=torch.float64)
    return z[:n].clone(), z[n:].clone()


def _loss_flat(n: int, d: int, tau: float):
    from clop.losses.contrastive import info_nce

    def f(flat: torch.Tensor) -> torch.Tensor:
        z = flat.reshape(2 * n, d)
        return info_nce(z[:n], z[n:], temperature=tau)

    return f


def gradient_norms(n: int = 4, d: int = 3, tau: float = _TAU, seed: int = 0) -> dict[str, float]:
    """Max-abs gradient of info_nce w.r.t. the unnormalised embeddings at the three configurations."""
    f = _loss_flat(n, d, tau)
    out = {}
    for name, make in (("all_equal", collapsed_views), ("colinear", colinear_views), ("random", random_views)):
        z1, z2 = make(n, d, seed)
        flat = torch.cat([z1, z2]).reshape(-1).requires_grad_(True)
        (grad,) = torch.autograd.grad(f(flat), flat)
        out[name] = float(grad.abs().max())
    return out


def normalised_gradient_norms(n: int = 4, d: int = 3, tau: float = _TAU, seed: int = 0) -> dict[str, float]:
    """Gradient w.r.t. the normalised embeddings u (the loss written on u directly, no normalisation).

    At the all-equal configuration it vanishes (as the proof says); at a co-linear one it is radial
    (beta u_i), nonzero, and removed only by the normalisation Jacobian.
    Returns max-abs gradient and max-abs tangential part for each configuration.
    """
    out = {}
    for name, make in (("all_equal", collapsed_views), ("colinear", colinear_views)):
        z1, z2 = make(n, d, seed)
        u = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1).requires_grad_(True)
        logits = u @ u.T / tau
        two_n = 2 * n
        idx = torch.arange(two_n)
        mask = torch.eye(two_n, dtype=torch.bool)
        lse = torch.logsumexp(logits.masked_fill(mask, float("-inf")), dim=1)
        loss = (lse - logits[idx, (idx + n) % two_n]).mean()
        (grad,) = torch.autograd.grad(loss, u)
        with torch.no_grad():
            tangential = grad - (grad * u).sum(1, keepdim=True) * u
        out[name] = float(grad.abs().max())
        out[name + "_tangential"] = float(tangential.abs().max())
    return out


def collapse_hessian(n: int = 3, d: int = 3, tau: float = _TAU, seed: int = 0, config: str = "all_equal") -> dict:
    """Eigenvalues of the Hessian of info_nce w.r.t. the 2N*D unnormalised entries at a collapsed config.

    Returns min/max eigenvalue, counts of negative / ~zero / positive eigenvalues (tolerance 1e-9 relative),
    and the loss value there (log(2N - 1) at the all-equal configuration).
    """
    make = {"all_equal": collapsed_views, "colinear": colinear_views}.get(config)
    if make is None:
        raise ValueError(f"config must be 'all_equal' or 'colinear'; got config={config!r}")
    f = _loss_flat(n, d, tau)
    z1, z2 = make(n, d, seed)
    flat = torch.cat([z1, z2]).reshape(-1)
    hess = torch.autograd.functional.hessian(f, flat)
    ev = torch.linalg.eigvalsh((hess + hess.T) / 2)
    tol = 1e-9 * float(ev.abs().max())
    return {
        "n": n,
        "d": d,
        "tau": tau,
        "loss": float(f(flat)),
        "min_eig": float(ev.min()),
        "max_eig": float(ev.max()),
        "n_negative": int((ev < -tol).sum()),
        "n_zero": int((ev.abs() <= tol).sum()),
        "n_positive": int((ev > tol).sum()),
        "asymmetry": float((hess - hess.T).abs().max()),
    }


def network_hessian(n: int = 3, d: int = 3, hidden: int = 8, tau: float = _TAU, seed: int = 0) -> dict:
    """A network at complete collapse: f(x) = W h(x) + b with h a fixed random tanh layer, W = 0, b = v, so
    every view maps to v.  Gradient and Hessian of info_nce w.r.t. W (D x hidden entries) at this point.

    With the gradient w.r.t. z zero there, the parameter Hessian is J^T H_z J; negative eigenvalues mean a
    saddle in parameter space as well.
    """
    from clop.losses.contrastive import info_nce

    g = _gen(seed)
    inputs = torch.randn(2 * n, 5, generator=g, dtype=torch.float64)
    w1 = torch.randn(5, hidden, generator=g, dtype=torch.float64)
    h = torch.tanh(inputs @ w1)  # (2N, hidden), generically linearly independent rows
    v = torch.randn(d, generator=g, dtype=torch.float64)

    def loss_of_w(w_flat: torch.Tensor) -> torch.Tensor:
        z = h @ w_flat.reshape(hidden, d) + v
        return info_nce(z[:n], z[n:], temperature=tau)

    w0 = torch.zeros(hidden * d, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(loss_of_w(w0), w0)
    hess = torch.autograd.functional.hessian(loss_of_w, w0.detach())
    ev = torch.linalg.eigvalsh((hess + hess.T) / 2)
    return {"grad_max": float(grad.abs().max()), "min_eig": float(ev.min()), "max_eig": float(ev.max()), "n_negative": int((ev < -1e-9 * float(ev.abs().max())).sum())}


def paper_p_star_expr() -> sp.Expr:
    """The printed value "P* = -log 1/(|I| - 1)" (Appendix C), |I| as the symbol ``I``."""
    i_sym = sp.Symbol("I", positive=True, integer=True)
    return -sp.log(1 / (i_sym - 1))


@functools.lru_cache(maxsize=None)
def p_star() -> dict[str, sp.Expr]:
    """Derived P_i at complete collapse: all logits z_i.z_a/tau equal s = 1/tau, so the denominator of P_i
    (positive + the |I| - 2 negatives) is (|I| - 1) e^s.  Returns P*, the loss -log P*, and the paper's P*."""
    i_sym = sp.Symbol("I", positive=True, integer=True)
    tau = sp.Symbol("tau", positive=True)
    s = 1 / tau  # z_i.z_a = 1 for unit embeddings at collapse
    a = sp.Symbol("a", integer=True, positive=True)
    denom = sp.exp(s) + sp.summation(sp.exp(s), (a, 1, i_sym - 2))  # positive + |I| - 2 negatives
    p = sp.simplify(sp.exp(s) / denom)
    # The gradient at collapse in the paper's form: 2(1-P)/tau z - 2(|I|-2)(1-P)/tau 1/(|I|-2) z (coefficient of z*).
    grad_coef = sp.simplify(2 * (1 - p) / tau - 2 * (i_sym - 2) * (1 - p) / tau / (i_sym - 2))
    return {"P_star": p, "loss_at_collapse": sp.simplify(-sp.log(p)), "paper_P_star": paper_p_star_expr(), "gradient_coefficient": grad_coef}


def p_star_numeric(n: int = 4, d: int = 3, tau: float = _TAU, seed: int = 0) -> dict[str, float]:
    """Softmax probability of the positive and the info_nce loss at the all-equal configuration (2N views)."""
    from clop.losses.contrastive import info_nce

    z1, z2 = collapsed_views(n, d, seed)
    u = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    logits = (u @ u.T / tau).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    prob = torch.softmax(logits, dim=1)[0, n]
    return {"views": 2 * n, "prob_positive": float(prob), "loss": float(info_nce(z1, z2, temperature=tau))}
