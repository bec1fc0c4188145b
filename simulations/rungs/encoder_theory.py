"""Predicted critical learning rates of rung 2 (:mod:`simulations.rungs.encoder`), float64.

At a minimum theta* of the loss in parameter space, plain GD is a linear map theta <- theta - lr H theta with
no renormalisation, so it loses stability at the textbook ``2 / lambda_max(H)`` (:func:`predictions`,
``gd``); heavy-ball momentum beta at ``2 (1 + beta) / lambda_max(H)`` (``momentum``). lambda_max is found by
Lanczos (scipy ``eigsh``) on Hessian-vector products.

Mapping from rung 1 (linear encoder). With y = W x and z = y/|y|, a GD step moves the outputs by
dY = -lr K (dL/dY), K = X X^T the inputs' Gram matrix, and the normalisation maps dY to the tangent
dz = P dY / |y|. At a fixed point with |y_a| = r for every view the Hessian in W has the non-zero spectrum of
H_y^1/2 (K x I) H_y^1/2 with H_y = H_z / r^2, so

    lr_crit(rung 2) = r^2 lr_crit(rung 1) / lambda,  lambda between lambda_min(K) and lambda_max(K),

equal to lambda_max(K) when K = s^2 I (then the bound is exact) and when the top mode of H_z lies on the top
eigenvector of K. With unequal norms r_a the Rayleigh quotients bound it by
``mapped_lo = r_min^2 lr_1 / lambda_max(K)`` and ``mapped_hi = r_max^2 lr_1 / lambda_min(K)`` (lambda_min: the
smallest non-zero eigenvalue); ``mapped`` uses the mean r^2 and lambda_max(K). lr_1 is the rung-1 step of the
loss at the encoder's own optimum z* (its views, not necessarily a rung-1 fixed point).
:func:`optimum_from_views` builds the linear encoder that outputs r z* for given views z* (for K = s^2 I the
rung-1 optimum is then the rung-2 optimum with equal norms, and ``mapped`` is exact). Because the normalisation sits in the forward pass, the z-Hessian that
enters is the Riemannian one, H_T + C (:mod:`theory.linearisation`): the rung-1 step used is the textbook
2 / lambda_max(H_T + C), which equals rung 1's critical step for the scale-invariant losses and is smaller by
(K - 2)/K for L_class.

LARS. Near theta* the LARS step of a weight has the fixed length lr eta ||w|| (the trust ratio divides out
the gradient's size), so it cannot converge: with momentum beta and a gradient that flips sign every step it
oscillates with amplitude a = lr eta ||w|| / (2 (1 + beta)) along the sharpest direction, which costs
lambda_max a^2 / 2 of loss. Training ends short of 95 % of the decrease L0 - L* once that exceeds
0.05 (L0 - L*):

    lr_LARS = (2 (1 + beta) / eta) sqrt(0.1 (L0 - L*) / kappa),   kappa = lambda_max(H) sum ||w||^2,

kappa being the scale-free sharpness (H scales as 1/||w||^2 for a scale-invariant loss). This is an estimate
from one direction and one amplitude, not a linearisation; the measurement decides (``lars_oscillation``).
SimCLR's LARS leaves the biases out of the trust ratio, so the MLP's output bias b2 (shared by every
embedding: it moves them all by the same vector, rung 1's translation mode) takes heavy-ball steps with the
raw lr; it loses stability at ``lars_bias = 2 (1 + beta) / lambda_max(H_b2)`` (:func:`bias_hessian_top`). The
LARS prediction ``lars`` is the smaller of the two.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from simulations.rungs.encoder import LARS_ETA, MOMENTUM, Encoder
from simulations.rungs.linearise import critical_step, tangent_model
from simulations.rungs.problem import loss_function

__all__ = ["EncoderOptimum", "encoder_optimum", "optimum_from_views", "hessian_top", "bias_hessian_top", "predictions"]


@dataclasses.dataclass
class EncoderOptimum:
    """One run's optimum: parameters (no run axis), loss, initial loss, embeddings z: (2, N, D), rank, and
    the mean, smallest and largest squared output norm (r2, r2_min, r2_max)."""

    params: dict[str, torch.Tensor]
    loss: float
    loss0: float
    z: torch.Tensor
    rank: int
    r2: float
    r2_min: float
    r2_max: float


def _optimum(enc: Encoder, params: dict[str, torch.Tensor], loss0: float) -> EncoderOptimum:
    value = _single_loss(enc)
    batched = {k: v[None] for k, v in params.items()}
    y = enc.outputs(batched)[0]
    z = enc.embeddings(batched)[0]
    s = torch.linalg.svdvals(z.reshape(-1, z.shape[-1]))
    r2 = (y * y).sum(-1)
    return EncoderOptimum(params, float(value(params)), loss0, z, int((s > 1e-3 * s[0]).sum()), float(r2.mean()),
                          float(r2.min()), float(r2.max()))


def optimum_from_views(enc: Encoder, z: torch.Tensor, r: float = 1.0, trial: int = 0) -> EncoderOptimum:
    """The linear encoder W = r Z^T (X^+)^T whose outputs are r z for views ``z: (2, N, D)`` (needs X of full row
    rank); ``loss0`` is that of ``trial``'s ordinary start."""
    if enc.model != "linear":
        raise ValueError(f"optimum_from_views needs the linear encoder; got model={enc.model!r}")
    y = r * z.reshape(-1, z.shape[-1]).to(torch.float64)
    w = (torch.linalg.pinv(enc.x) @ y).T.contiguous()
    loss0 = float(_single_loss(enc)(enc.init_params(trial)))
    return _optimum(enc, {"W": w}, loss0)


def _single_loss(enc: Encoder):
    f = loss_function(enc.problem)

    def value(params: dict[str, torch.Tensor]) -> torch.Tensor:
        batched = {k: v[None] for k, v in params.items()}
        z = enc.embeddings(batched)[0]
        return f(z, enc.labels)

    return value


def encoder_optimum(enc: Encoder, trial: int = 0, max_iter: int = 200, rounds: int = 3) -> EncoderOptimum:
    """The optimum L-BFGS reaches from ``trial``'s start (a stand-in for where a small step converges)."""
    value = _single_loss(enc)
    params = {k: v.clone().requires_grad_(True) for k, v in enc.init_params(trial).items()}
    loss0 = float(value(params).detach())
    opt = torch.optim.LBFGS(list(params.values()), lr=1.0, max_iter=max_iter, tolerance_grad=1e-12,
                            tolerance_change=1e-15, history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        v = value(params)
        v.backward()
        return v

    for _ in range(rounds):
        before = float(closure().detach())
        opt.step(closure)
        if abs(before - float(closure().detach())) <= 1e-15 * max(1.0, abs(before)):
            break
    return _optimum(enc, {k: v.detach() for k, v in params.items()}, loss0)


def hessian_top(enc: Encoder, params: dict[str, torch.Tensor]) -> float:
    """lambda_max of the loss's Hessian in the parameters at ``params`` (Lanczos on Hessian-vector products)."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    value = _single_loss(enc)
    names = list(params)
    sizes = [params[k].numel() for k in names]
    flat0 = torch.cat([params[k].reshape(-1) for k in names])

    def unflat(v: torch.Tensor) -> dict[str, torch.Tensor]:
        out, i = {}, 0
        for k, s in zip(names, sizes):
            out[k] = v[i : i + s].reshape(params[k].shape)
            i += s
        return out

    x = flat0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(value(unflat(x)), x, create_graph=True)

    def hvp(v: np.ndarray) -> np.ndarray:
        vt = torch.as_tensor(np.asarray(v).reshape(-1), dtype=torch.float64)
        (hv,) = torch.autograd.grad(g, x, vt, retain_graph=True)
        return hv.numpy()

    n = flat0.numel()
    op = LinearOperator((n, n), matvec=hvp, dtype=np.float64)
    vals = eigsh(op, k=1, which="LA", tol=1e-8, maxiter=5000, v0=np.ones(n) / n**0.5,
                 return_eigenvectors=False)
    return float(vals[0])


def bias_hessian_top(enc: Encoder, params: dict[str, torch.Tensor]) -> float:
    """lambda_max of the Hessian block of the output bias b2 (MLP; NaN for the linear encoder): the mode that moves
    every embedding by the same vector, the translation mode of rung 1 seen through a shared parameter."""
    if "b2" not in params:
        return math.nan
    value = _single_loss(enc)
    b = params["b2"].clone()

    def of_bias(v: torch.Tensor) -> torch.Tensor:
        return value({**params, "b2": v})

    hb = torch.autograd.functional.hessian(of_bias, b)
    return float(torch.linalg.eigvalsh(0.5 * (hb + hb.T))[-1])


def predictions(enc: Encoder, opt: EncoderOptimum) -> dict[str, float]:
    """Predicted critical lrs at ``opt`` (module docstring): gd, momentum, lars, and for the linear encoder
    mapped, mapped_lo, mapped_hi with the pieces they are built from (lam_h, lam_k_max, lam_k_min, r2, and rung1:
    the textbook rung-1 step at z*)."""
    lam = hessian_top(enc, opt.params)
    weights = sum(float((v * v).sum()) for k, v in opt.params.items() if not k.startswith("b"))
    kappa = lam * weights
    decrease = max(opt.loss0 - opt.loss, 0.0)
    out = {
        "lam_h": lam,
        "gd": 2.0 / lam if lam > 0 else math.inf,
        "momentum": 2.0 * (1 + MOMENTUM) / lam if lam > 0 else math.inf,
        "lars": (2.0 * (1 + MOMENTUM) / LARS_ETA) * math.sqrt(0.1 * decrease / kappa) if kappa > 0 else math.inf,
        "kappa": kappa,
    }
    lam_b = bias_hessian_top(enc, opt.params)
    out["lam_bias"] = lam_b
    out["lars_bias"] = 2.0 * (1 + MOMENTUM) / lam_b if lam_b > 0 else math.inf
    out["lars_oscillation"] = out["lars"]
    out["lars"] = min(out["lars"], out["lars_bias"]) if math.isfinite(lam_b) else out["lars"]
    rung1 = critical_step(tangent_model(enc.problem, opt.z))["textbook"]
    kev = torch.linalg.eigvalsh(enc.x @ enc.x.T)
    nonzero = kev[kev > 1e-10 * kev[-1]]
    out.update({"rung1": rung1, "r2": opt.r2, "lam_k_max": float(kev[-1]), "lam_k_min": float(nonzero[0])})
    if enc.model == "linear":
        out["mapped"] = opt.r2 * rung1 / float(kev[-1])
        out["mapped_lo"] = opt.r2_min * rung1 / float(kev[-1])
        out["mapped_hi"] = opt.r2_max * rung1 / float(nonzero[0])
    else:
        out["mapped"] = out["mapped_lo"] = out["mapped_hi"] = math.nan
    return out
