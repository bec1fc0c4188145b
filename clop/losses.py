"""Contrastive losses, the CLOP term of Eq. (4) and L_class of Eq. (3).

(Helper H1 owns this file; l_class and info_nce were written first so that theory/ and
simulations/ can import them.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def l_class(x: torch.Tensor) -> torch.Tensor:
    """Total pairwise similarity of k class embeddings, L_class of Eq. (3) with the sign the text means.

    L_class(X) = sum_{i != j} x_i . x_j  for x: (..., k, m) whose rows are unit vectors; returns (...).
    The paper prints Eq. (3) with a leading minus sign, but the text minimises the pairwise cosine
    similarity and gives the optimum as -k; that is this sign (see theory/ for the check).
    Uses the identity sum_{i != j} x_i.x_j = ||sum_i x_i||^2 - sum_i ||x_i||^2, exact for any rows.

    >>> l_class(torch.eye(3))
    tensor(0.)
    """
    if x.dim() < 2:
        raise ValueError(f"x must have shape (..., k, m); got shape {tuple(x.shape)}")
    s = x.sum(dim=-2)
    return (s * s).sum(dim=-1) - (x * x).sum(dim=(-2, -1))
