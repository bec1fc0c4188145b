"""The plain baseline engine of the synthetic 3-D FFN training (CLOP paper, arXiv 2403.18699, Sec. 4, Eq. (4)).

The runs (seeds) of one chunk train together by autograd: their networks' weights are stacked,
W: (S, in, out), and applied with torch.baddbmm (:func:`ffn`); the base losses of :mod:`clop.losses` are
mapped over seeds with torch.func.vmap (:func:`resolve_loss_mode`: a Python loop over seeds where a loss does
not vmap), and the CLOP term of all seeds is one call of clop_term on the stacked embeddings with a stacked
prototype table (:func:`clop_term_all_seeds`). One torch.optim.Adam over the stacked weights of the summed
per-seed losses makes exactly the updates of S separate optimisers (Adam is elementwise; a test checks
batched == separate). These are the numbers Table 5 had before the fused engines
(:mod:`simulations.ffn.fused`, :mod:`simulations.ffn.native`); :func:`simulations.ffn.train.train_runs` runs
this engine with ``engine="autograd"``, and ``benchmarks/bench_ffn.py`` times it as the plain baseline.
Loss settings: :data:`simulations.ffn.grads.LOSS_PARAMS`.
"""

from __future__ import annotations

import torch

from clop.losses.clop_objective import clop_term
from clop.losses.contrastive import dcl, info_nce
from clop.losses.redundancy import barlow_twins, vicreg
from simulations.ffn.data import DIM, generator
from simulations.ffn.grads import CLOP_LAMBDA, LOSS_PARAMS

__all__ = ["ffn", "base_loss_fn", "clop_term_all_seeds", "batched_base", "resolve_loss_mode", "train_chunk"]


def ffn(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Apply S stacked FFNs: x: (S, N, dim) -> (S, N, dim). Linear, ReLU, Linear, ReLU, Linear."""
    w1, b1, w2, b2, w3, b3 = params
    h = torch.relu(torch.baddbmm(b1, x, w1))
    h = torch.relu(torch.baddbmm(b2, h, w2))
    return torch.baddbmm(b3, h, w3)


def base_loss_fn(name: str):
    """The functional base loss of clop.losses for a make_loss name, with the settings of
    :data:`simulations.ffn.grads.LOSS_PARAMS` (InfoNCE tau = 0.5, DCL tau = 0.1, Barlow Twins lambda = 5e-3,
    VICReg at clop.losses' defaults)."""
    if name not in LOSS_PARAMS:
        raise ValueError(f"loss must be one of {list(LOSS_PARAMS)}; got {name!r}")
    fn = {"infonce": info_nce, "dcl": dcl, "barlowtwins": barlow_twins, "vicreg": vicreg}[name]
    params = LOSS_PARAMS[name]
    return lambda z1, z2: fn(z1, z2, **params)


def clop_term_all_seeds(z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """Sum over seeds of the CLOP term of Eq. (4) on both views, in ONE call of clop.losses.clop_term.

    z1, z2: (S, B, D) views of S independent runs; labels: (S, B) with -1 = unlabeled; protos: (S, k, D).
    Seed s has its own prototypes, so its labels are shifted to rows s*k .. s*k+k-1 of the stacked
    prototype table (S*k, D); the term is a sum over labeled points, so this equals
    sum_s [clop_term(z1[s], labels[s], protos[s]) + clop_term(z2[s], labels[s], protos[s])] exactly
    (CLOPObjective's "both views" convention), and the gradient of seed s reaches only its own weights.
    """
    s_, b, d = z1.shape
    k = protos.shape[1]
    offset = (torch.arange(s_, device=labels.device) * k)[:, None]
    shifted = torch.where(labels >= 0, labels + offset, torch.full_like(labels, -1)).reshape(-1)
    z = torch.cat([z1.reshape(s_ * b, d), z2.reshape(s_ * b, d)])
    return clop_term(
        z, torch.cat([shifted, shifted]), protos.reshape(s_ * k, d), similarity="cosine", lam=CLOP_LAMBDA, reduction="sum"
    )


def batched_base(name: str, mode: str):
    """F(z1, z2) -> (S,) per-seed base losses for z1, z2: (S, B, D).

    mode "vmap" maps the clop.losses function with torch.func.vmap; "loop" calls it once per seed.
    """
    f = base_loss_fn(name)
    if mode == "vmap":
        return torch.func.vmap(f)
    if mode == "loop":
        return lambda z1, z2: torch.stack([f(z1[i], z2[i]) for i in range(z1.shape[0])])
    raise ValueError(f"loss_mode must be 'vmap', 'loop' or 'auto'; got {mode!r}")


def resolve_loss_mode(name: str, mode: str = "auto") -> str:
    """'auto' -> 'vmap' when the base loss runs and back-propagates under vmap with the loop's values, else 'loop'."""
    if mode != "auto":
        return mode
    z1 = torch.randn(2, 8, DIM, generator=generator(0), requires_grad=True)
    z2 = torch.randn(2, 8, DIM, generator=generator(1))
    try:
        out = batched_base(name, "vmap")(z1, z2)
        ref = batched_base(name, "loop")(z1, z2)
        out.sum().backward()
        if out.shape != (2,) or not torch.allclose(out, ref, rtol=1e-5, atol=1e-6):
            return "loop"
    except Exception:  # any vmap incompatibility (data-dependent shapes, .item(), ...) -> loop
        return "loop"
    return "vmap"


def train_chunk(base_losses, use_clop, x, labels, protos, params, draw, epochs, batch_size, lr, progress,
                history):
    """Train the S stacked runs together through all epochs with autograd; returns f(x) (S, N, D)."""
    params = [p.requires_grad_(True) for p in params]
    opt = torch.optim.Adam(params, lr=lr)
    n = x.shape[1]
    rows = torch.arange(x.shape[0], device=x.device)[:, None]
    for _ in range(epochs):
        epoch_loss = torch.zeros(x.shape[0])
        n_batches = 0
        v1_all, v2_all, order = draw()
        for start in range(0, n, batch_size):
            idx = order[:, start : start + batch_size]
            v1, v2 = v1_all[rows, idx], v2_all[rows, idx]
            z1, z2 = ffn(params, torch.cat([v1, v2], dim=1)).split(idx.shape[1], dim=1)  # both views, one pass
            # Seeds share no weights, so the gradient of the sum is each run's own gradient.
            per_seed = base_losses(z1, z2)
            total = per_seed.sum()
            if use_clop:
                total = total + clop_term_all_seeds(z1, z2, labels[rows, idx], protos)
            if history is not None:
                epoch_loss += per_seed.detach().cpu()
                n_batches += 1
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
        if history is not None:
            history.append(epoch_loss / max(n_batches, 1))
        if progress is not None:
            progress.update(x.shape[0])
    with torch.no_grad():
        return ffn(params, x)
