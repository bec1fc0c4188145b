"""The losses by name: ``LOSSES`` and :func:`make_loss`, what ``--loss`` and the studies choose from.

Paper of the suite: "Preventing collapse in contrastive learning with orthonormal prototypes" (CLOP),
arXiv 2403.18699.
"""

from __future__ import annotations

from torch import nn

from clop.losses.contrastive import DCLLoss, InfoNCELoss, SupConLoss
from clop.losses.cplearn_loss import CPLearnLoss
from clop.losses.redundancy import BarlowTwinsLoss, VICRegLoss
from clop.losses.ssem_loss import SSEMLoss

__all__ = ["LOSSES", "make_loss"]

LOSSES: dict[str, type[nn.Module]] = {
    "infonce": InfoNCELoss,
    "dcl": DCLLoss,
    "supcon": SupConLoss,
    "barlowtwins": BarlowTwinsLoss,
    "vicreg": VICRegLoss,
    "ssem": SSEMLoss,
    "cplearn": CPLearnLoss,
}


def make_loss(name: str, **kwargs) -> nn.Module:
    """Build a contrastive loss module by name (case-insensitive); kwargs go to its constructor.

    >>> make_loss("dcl", temperature=0.2)
    DCLLoss(temperature=0.2)
    """
    key = name.lower() if isinstance(name, str) else None
    if key not in LOSSES:
        raise ValueError(f"name={name!r} is not a known loss; expected one of {sorted(LOSSES)}")
    return LOSSES[key](**kwargs)
