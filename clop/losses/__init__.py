"""Contrastive losses, the CLOP term of Eq. (4) and L_class of Eq. (3).

Paper of the suite: "Preventing collapse in contrastive learning with orthonormal prototypes"
(CLOP), arXiv 2403.18699.

Layout follows PyTorch's functional/module split: the pure functions hold the maths
(:func:`info_nce`, :func:`dcl`, :func:`supcon`, :func:`barlow_twins`, :func:`vicreg`,
:func:`clop_term`, :func:`l_class`); thin :class:`torch.nn.Module` wrappers hold the settings
(:class:`InfoNCELoss`, :class:`DCLLoss`, :class:`SupConLoss`, :class:`BarlowTwinsLoss`,
:class:`VICRegLoss`) and state (:class:`CLOPLoss` keeps its prototypes as a registered buffer).
:class:`CLOPObjective` adds the CLOP term to any of the contrastive modules, as in Eq. (4).

Two other remedies for collapse, checked by the suite beside CLOP: SSEM's mix of supervised and
self-supervised contrastive losses (:func:`ssem`, :class:`SSEMLoss`; Lee et al. 2025, arXiv 2503.08203)
and CPLearn (:func:`cplearn`, :class:`CPLearnLoss` on the logits of :class:`CPLearnProjector`;
Sansone et al. 2025, arXiv 2410.04959).

Shapes: ``z1, z2: (N, D)`` are the embeddings of the two augmented views of the same N samples
(row i of ``z1`` and row i of ``z2`` come from sample i); unnormalised embeddings are allowed.
Every loss returns a 0-dim tensor. ``labels: (N,)`` integer class indices, ``-1`` = unlabeled.

>>> import torch, clop.losses
>>> z1, z2 = torch.randn(2, 8, 16, generator=torch.Generator().manual_seed(0))
>>> clop.losses.make_loss("infonce")(z1, z2).shape
torch.Size([])

Everything public is imported from here (``clop.losses.info_nce``), one family per module:

* :mod:`clop.losses.contrastive`: InfoNCE, DCL, SupCon (their shared 2N-view conventions are in its
  docstring);
* :mod:`clop.losses.redundancy`: Barlow Twins, VICReg;
* :mod:`clop.losses.clop_objective`: the CLOP term, its prototypes, Eq. (4) as a whole, and L_class;
* :mod:`clop.losses.ssem_loss`, :mod:`clop.losses.cplearn_loss`: the two other remedies;
* :mod:`clop.losses.registry`: the losses by name (``LOSSES``, :func:`make_loss`);
* :mod:`clop.losses.common`: argument checks, the L2 normalisation with its floor, SimCLR's two-view logits.

The suite's own modules import each name from the module that defines it (tests/test_layout.py). Each
module's docstring says where ours differs from lightly 1.6.0's implementation, checked in
tests/clop/losses/ (optional tests; lightly is not a dependency).
"""

from __future__ import annotations

from clop.losses.clop_objective import (
    PROTOTYPE_KINDS,
    REDUCTIONS,
    SIMILARITIES,
    CLOPLoss,
    CLOPObjective,
    clop_term,
    l_class,
)
from clop.losses.contrastive import DCLLoss, InfoNCELoss, SupConLoss, dcl, info_nce, supcon
from clop.losses.cplearn_loss import CPLearnLoss, CPLearnProjector, cplearn, cplearn_temperature
from clop.losses.redundancy import BarlowTwinsLoss, VICRegLoss, barlow_twins, vicreg
from clop.losses.registry import LOSSES, make_loss
from clop.losses.ssem_loss import SSEM_CONVENTIONS, SSEMLoss, ssem, ssem_terms

__all__ = [
    "info_nce",
    "dcl",
    "supcon",
    "barlow_twins",
    "vicreg",
    "clop_term",
    "l_class",
    "InfoNCELoss",
    "DCLLoss",
    "SupConLoss",
    "BarlowTwinsLoss",
    "VICRegLoss",
    "CLOPLoss",
    "CLOPObjective",
    "ssem",
    "ssem_terms",
    "SSEMLoss",
    "SSEM_CONVENTIONS",
    "cplearn",
    "cplearn_temperature",
    "CPLearnLoss",
    "CPLearnProjector",
    "LOSSES",
    "make_loss",
    "SIMILARITIES",
    "REDUCTIONS",
    "PROTOTYPE_KINDS",
]
