"""CPLearn and SupCon on the synthetic 3-D data of the CLOP paper's Sec. 4, by autograd (the losses the fused and
native engines do not have).

CPLearn: Sansone, Lebailly & Tuytelaars (2025), arXiv 2410.04959 (:func:`clop.losses.cplearn`); SupCon: Khosla et
al. 2020 (:func:`clop.losses.supcon`, temperature 0.1, the unlabeled points' only positive their other view). The
runs are those of Table 5 (:mod:`simulations.ffn.train`, CLOP paper arXiv 2403.18699, Sec. 4, Appendix B): the
same data, labeled set, initial FFN weights, views and batches for one seed (:func:`simulations.ffn.train.chunk_setup`),
Adam at lr 1e-2, 200 epochs of batches of 100, the CLOP term on the FFN's 3-D output as there (cosine, lambda 1,
sum over the labeled points of both views, orthonormal prototypes of the seed). The networks of a chunk of seeds
are stacked and trained together, as the autograd engine does (:mod:`simulations.ffn.autograd`).

CPLearn adds its projector on the FFN's output y (3-D), per seed, as :class:`clop.losses.CPLearnProjector` builds it:
h = tanh(BN(Linear(y))) in (-1, 1)^f, logits h W / tau with W a fixed +-1 code matrix (f x c) and tau =
:func:`clop.losses.cplearn_temperature` (f, batch, c). Ours, not the paper's (which trains ResNets on images):
f = :data:`F` = 32, c = :data:`C` = 16, beta = 1 (the authors' default), the Linear layer initialised as
nn.Linear, BatchNorm affine (weight 1, bias 0, eps 1e-5) over the batch of each view separately (the authors'
code forwards the two views one after the other), W drawn from the seed (a generator seeded by (seed, 4)). The
evaluation embeds the 500 clean points in one batch, BatchNorm using their own statistics (no running averages).

:func:`train_extra` returns, per seed, the FFN output y on the clean points (S, N, 3) and, for CPLearn, h (S, N, f)
and the logits (S, N, c).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from clop.losses.contrastive import supcon
from clop.losses.cplearn_loss import cplearn, cplearn_temperature
from clop.util.checks import check_choice, check_positive, check_size
from simulations.ffn.autograd import clop_term_all_seeds, ffn
from simulations.ffn.data import NOISE_VAR, SyntheticData
from simulations.ffn.train import BATCH_SIZE, EPOCHS, HIDDEN, LR, chunk_setup

__all__ = ["BETA", "BN_EPS", "LOSSES", "SUPCON_TAU", "C", "F", "init_projector", "project", "train_extra"]

LOSSES = ("cplearn", "supcon")
F = 32
C = 16
BETA = 1.0
SUPCON_TAU = 0.1
BN_EPS = 1e-5


def _projector_generator(seed: int) -> torch.Generator:
    state = np.random.SeedSequence([int(seed), 4]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def init_projector(seeds: tuple[int, ...], f: int = F, c: int = C, dim: int = 3) -> list[torch.Tensor]:
    """Stacked projector parameters of S seeds, float32 on the CPU: [W (S, dim, f), b (S, 1, f), bn weight (S, 1, f),
    bn bias (S, 1, f)] (nn.Linear's initialisation, BatchNorm's 1 and 0) and the codes (S, f, c), +-1."""
    params, codes = [[], [], [], []], []
    bound = 1.0 / math.sqrt(dim)
    for seed in seeds:
        g = _projector_generator(seed)
        params[0].append((torch.rand(dim, f, generator=g) * 2 - 1) * bound)
        params[1].append((torch.rand(1, f, generator=g) * 2 - 1) * bound)
        codes.append(torch.randint(0, 2, (f, c), generator=g).mul(2).sub(1).float())
    s = len(seeds)
    return [torch.stack(params[0]), torch.stack(params[1]), torch.ones(s, 1, f), torch.zeros(s, 1, f),
            torch.stack(codes)]


def project(proj: list[torch.Tensor], y: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, logits) of the stacked projectors on y: (S, B, dim), BatchNorm over the B rows of each seed."""
    w, b, gamma, beta, codes = proj
    pre = torch.baddbmm(b, y, w)
    mean = pre.mean(dim=1, keepdim=True)
    var = pre.var(dim=1, unbiased=False, keepdim=True)
    h = torch.tanh((pre - mean) / torch.sqrt(var + BN_EPS) * gamma + beta)
    return h, torch.bmm(h, codes) / tau


def _per_seed_cplearn(beta: float):
    """(S, B, c), (S, B, c) -> (S,) CPLearn losses of the seeds, :func:`clop.losses.cplearn` mapped by vmap."""
    return torch.func.vmap(lambda a, b: cplearn(a, b, beta))


def train_extra(loss: str, use_clop: bool, data: SyntheticData, *, epochs: int = EPOCHS, batch_size: int = BATCH_SIZE,
                lr: float = LR, hidden: int = HIDDEN, f: int = F, c: int = C, beta: float = BETA,
                noise_var: float | None = None) -> dict[str, torch.Tensor]:
    """Train one FFN per seed of the stacked ``data`` with ``loss`` (:data:`LOSSES`), with or without CLOP; returns
    ``{"y": (S, N, 3)}`` and for CPLearn also ``"h"`` (S, N, f) and ``"logits"`` (S, N, c), float32 on the CPU."""
    loss = check_choice("loss", loss, LOSSES)
    epochs, batch_size = check_size("epochs", epochs, 1), check_size("batch_size", batch_size, 2)
    hidden = check_size("hidden", hidden)
    f, c = check_size("f", f), check_size("c", c, 2)
    lr = check_positive("lr", lr)
    x, labels, protos, params, draw = chunk_setup(data, hidden, NOISE_VAR if noise_var is None else noise_var,
                                                  torch.device("cpu"), torch.float32)
    proj = init_projector(data.seeds, f, c, x.shape[-1]) if loss == "cplearn" else []
    trained = [p.requires_grad_(True) for p in params + proj[:4]]
    opt = torch.optim.Adam(trained, lr=lr)
    tau = cplearn_temperature(f, batch_size, c) if loss == "cplearn" else SUPCON_TAU
    per_seed_cp = _per_seed_cplearn(beta)
    n = x.shape[1]
    rows = torch.arange(x.shape[0])[:, None]
    for _ in range(epochs):
        v1_all, v2_all, order = draw()
        for start in range(0, n, batch_size):
            idx = order[:, start : start + batch_size]
            y1, y2 = ffn(params, torch.cat([v1_all[rows, idx], v2_all[rows, idx]], dim=1)).split(idx.shape[1], dim=1)
            lab = labels[rows, idx]
            if loss == "cplearn":
                total = per_seed_cp(project(proj, y1, tau)[1], project(proj, y2, tau)[1]).sum()
            else:
                total = sum(supcon(y1[s], y2[s], lab[s], SUPCON_TAU) for s in range(y1.shape[0]))
            if use_clop:
                total = total + clop_term_all_seeds(y1, y2, lab, protos)
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
    with torch.no_grad():
        y = ffn(params, x)
        out = {"y": y.detach().clone()}
        if loss == "cplearn":
            h, logits = project(proj, y, cplearn_temperature(f, batch_size, c))
            out.update(h=h.detach().clone(), logits=logits.detach().clone())
    if not all(torch.isfinite(v).all() for v in out.values()):
        raise FloatingPointError(f"{loss}{' + CLOP' if use_clop else ''} diverged (non-finite outputs) at lr={lr:g}")
    return out
