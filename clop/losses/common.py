"""What every loss of :mod:`clop.losses` shares: argument checks and SimCLR's two-view logits.

Paper of the suite: "Preventing collapse in contrastive learning with orthonormal prototypes" (CLOP),
arXiv 2403.18699.

L2 normalisation (contrastive losses and the CLOP term) divides each row by max(||z||, 1e-6):
exact for every row with norm >= 1e-6; a row with a smaller norm is scaled by 1e6 instead (so it
is no longer a unit vector, and a zero row stays zero). The floor bounds the gradient at a zero
row by 1e6 x the upstream gradient; ``F.normalize``'s default floor 1e-12 gives ~1e12 there.
Embeddings of a trained network are many orders of magnitude above 1e-6, so the floor only
matters for (near-)zero rows. :mod:`clop.metrics` computes on detached values and normalises
exactly (it needs no gradient); both map a zero row to the zero vector.

Validation and device syncs: every loss checks its arguments (shape, dtype, device) without
touching tensor values, except the range check of integer ``labels`` (one host sync per call:
one ``aminmax``); :class:`clop.losses.CLOPObjective` range-checks its labels once per forward.
"""

from __future__ import annotations

import functools

import torch

__all__ = [
    "NORM_FLOOR", "check_embeddings", "check_pair", "check_labels", "unit_rows", "excluded_pairs", "two_view_logits",
]

# --------------------------------------------------------------------------------------------
# Input validation (scikit-learn style: name the argument, the value received, what is accepted)
# --------------------------------------------------------------------------------------------


def check_embeddings(name: str, z: object, *, min_batch: int = 1) -> torch.Tensor:
    """``z`` if it is a floating (N, D) tensor with N >= ``min_batch`` and D >= 1, else ``ValueError``
    naming ``name``."""
    if not isinstance(z, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (N, D); got {type(z).__name__}")
    if z.dim() != 2:
        raise ValueError(f"{name} must have shape (N, D); got shape {tuple(z.shape)}")
    if not z.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor; got dtype {z.dtype}")
    n, d = z.shape
    if n == 0:
        raise ValueError(f"{name} is an empty batch (N=0); shape {tuple(z.shape)}")
    if d == 0:
        raise ValueError(f"{name} has no embedding dimensions (D=0); shape {tuple(z.shape)}")
    if n < min_batch:
        raise ValueError(
            f"{name} has N={n} sample(s); this loss needs N >= {min_batch} "
            "(other samples serve as negatives or batch statistics)"
        )
    return z


def check_pair(z1: object, z2: object, *, min_batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Both views valid, same shape, dtype and device, and N >= ``min_batch``; each checked once."""
    z1 = check_embeddings("z1", z1)
    z2 = check_embeddings("z2", z2)
    if z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must have the same shape (N, D); got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.dtype != z2.dtype or z1.device != z2.device:
        raise ValueError(
            f"z1 and z2 must share dtype and device; got {z1.dtype}/{z1.device} and {z2.dtype}/{z2.device}"
        )
    n = z1.shape[0]
    if n < min_batch:
        raise ValueError(
            f"z1 and z2 have N={n} sample(s); this loss needs N >= {min_batch} "
            "(other samples serve as negatives or batch statistics)"
        )
    return z1, z2


def check_labels(
    labels: object, n: int, device: torch.device, name: str = "labels", num_classes: int | None = None
) -> torch.Tensor:
    """Validate (N,) integer labels in {-1, ..., num_classes - 1}; returns them as long on ``device``."""
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"{name} must be an integer torch.Tensor of shape ({n},); got {type(labels).__name__}")
    if labels.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match the batch; got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{name} must have an integer dtype (class index, -1 = unlabeled); got {labels.dtype}")
    labels = labels.to(device=device, dtype=torch.long)
    if n > 0:
        lo, hi = torch.stack(torch.aminmax(labels)).tolist()  # one device sync
        if lo < -1:
            raise ValueError(f"{name} must be >= -1 (-1 = unlabeled); got minimum {lo}")
        if num_classes is not None and hi >= num_classes:
            raise ValueError(f"{name} must be < k={num_classes} (the number of prototypes); got maximum {hi}")
    return labels


# --------------------------------------------------------------------------------------------
# Shared two-view machinery (SimCLR's 2N-view form)
# --------------------------------------------------------------------------------------------


NORM_FLOOR = 1e-6  # floor of ||z|| in unit_rows (module doc)


def unit_rows(z: torch.Tensor) -> torch.Tensor:
    """z / max(||z||_2, 1e-6) row-wise, z: (..., D); a zero row stays zero with a bounded gradient.

    >>> unit_rows(torch.tensor([[3.0, 4.0], [3e-7, 4e-7], [0.0, 0.0]]))  # exact, below the floor, zero
    tensor([[0.6000, 0.8000],
            [0.3000, 0.4000],
            [0.0000, 0.0000]])
    """
    return z / torch.linalg.vector_norm(z, dim=-1, keepdim=True).clamp_min(NORM_FLOOR)


@functools.lru_cache(maxsize=16)
def excluded_pairs(m: int, n: int, drop_partner: bool, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(m, m) additive mask: -inf where a = i (and a = p(i) when ``drop_partner``), 0 elsewhere. Cached:
    it depends on the batch size only, and a training run asks for the same one at every step."""
    mask = torch.zeros(m, m, dtype=dtype, device=device)
    mask.fill_diagonal_(float("-inf"))
    if drop_partner:
        mask.diagonal(n).fill_(float("-inf"))
        mask.diagonal(-n).fill_(float("-inf"))
    return mask


def two_view_logits(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float, *, drop_partner: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine logits of the 2N views, z1, z2: (N, D).

    Returns ``(logits, positive)``: logits (2N, 2N) = u u^T / tau with the diagonal (a = i) set to
    -inf, and also the partner entries (a = p(i)) when ``drop_partner``; positive (2N,) =
    s_{i p(i)} = u_i . u_p(i) / tau, computed from the row pairs (2N values, no read of the matrix). The
    logits are one ``addmm`` of the cached -inf mask and u u^T scaled by 1/tau: no in-place writes and no
    diagonal views, whose backward passes would each allocate and fill a (2N, 2N) gradient (measured:
    1.3-1.5x faster per step than masking in place, forward + backward, benchmarks/bench_ffn.py).
    """
    n = z1.shape[0]
    u = unit_rows(torch.cat([z1, z2], dim=0))
    mask = excluded_pairs(2 * n, n, drop_partner, u.dtype, u.device)
    logits = torch.addmm(mask, u, u.T, alpha=1.0 / temperature)
    pos = (u[:n] * u[n:]).sum(dim=1).div(temperature)
    return logits, torch.cat([pos, pos])
