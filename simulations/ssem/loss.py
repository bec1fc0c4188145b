"""The SSEM loss of R runs at once, each run with its own alpha and temperature.

The loss is :func:`clop.losses.ssem` (Lee, Oh, Lee & Sohn 2025, arXiv 2503.08203; the formulas of both conventions
are in its docstring), L = (1 - alpha) L_sup + alpha L_self, written here over a leading run axis so that one
autograd pass gives the gradients of a whole (alpha, tau) grid: ``clop.losses.ssem`` takes one alpha and one tau
per call, and a grid of a thousand runs called one by one would spend its time in Python. The tests compare
every run with ``clop.losses.ssem`` in float64 (values and gradients).

Shapes: ``z: (R, 2, N, d)`` (run, view, sample, dimension; unnormalised allowed, rows divided by
max(||z||, 1e-6) as in :mod:`clop.losses`), ``labels: (N,)`` class of every sample (all labeled, >= 0),
``alpha, tau: (R,)``. Returns ``(R,)``.
"""

from __future__ import annotations

import math

import torch

from clop.losses.ssem_loss import SSEM_CONVENTIONS
from clop.util.checks import check_choice

__all__ = ["batched_ssem"]

_NORM_FLOOR = 1e-6  # as clop.losses


def batched_ssem(z: torch.Tensor, labels: torch.Tensor, alpha: torch.Tensor, tau: torch.Tensor,
                 convention: str = "pairs") -> torch.Tensor:
    """(R,) SSEM losses of the runs (module docstring); ``convention`` ``"pairs"`` or ``"anchors"``."""
    convention = check_choice("convention", convention, SSEM_CONVENTIONS)
    if z.dim() != 4 or z.shape[1] != 2:
        raise ValueError(f"z must have shape (R, 2, N, d); got {tuple(z.shape)}")
    r, _, n, d = z.shape
    if tuple(labels.shape) != (n,) or bool((labels < 0).any()):
        raise ValueError(f"labels must be (N,) = ({n},) classes >= 0; got shape {tuple(labels.shape)}")
    if tuple(alpha.shape) != (r,) or tuple(tau.shape) != (r,):
        raise ValueError(f"alpha and tau must have shape (R,) = ({r},); got {tuple(alpha.shape)}, {tuple(tau.shape)}")
    flat = z.reshape(r, 2 * n, d)
    u = flat / torch.linalg.vector_norm(flat, dim=-1, keepdim=True).clamp_min(_NORM_FLOOR)
    logits = u @ u.transpose(1, 2) / tau[:, None, None]
    rows = torch.arange(2 * n, device=z.device)
    same = (rows[:, None] % n) == (rows[None, :] % n)
    y = torch.cat([labels, labels]).to(z.device)
    same_class = y[:, None] == y[None, :]
    if convention == "pairs":
        log_p = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # column-wise, the self term kept
        sup = same_class & ~same
        l_self = -torch.where(same, log_p, 0.0).sum((1, 2)) / (4 * n)
        l_sup = -torch.where(sup, log_p, 0.0).sum((1, 2)) / sup.sum().clamp_min(1)
    else:
        eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
        lse = torch.logsumexp(logits.masked_fill(eye, -math.inf), dim=2)
        partner = (rows + n) % (2 * n)
        l_self = (lse - logits[:, rows, partner]).mean(1)
        positives = same_class & ~eye
        l_sup = (lse - torch.where(positives, logits, 0.0).sum(2) / positives.sum(1)).mean(1)
    return (1.0 - alpha) * l_sup + alpha * l_self
