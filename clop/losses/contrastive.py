"""The contrastive losses: InfoNCE (NT-Xent), DCL and SupCon, as functions and modules.

Paper of the suite: "Preventing collapse in contrastive learning with orthonormal prototypes" (CLOP),
arXiv 2403.18699; its Eq. (1) is InfoNCE.

Conventions shared by the three losses, following SimCLR's 2N-view form (Chen et al. 2020): the 2N
embeddings u = normalize(cat(z1, z2)) are L2-normalised, every one of the 2N rows is an anchor, the
partner of anchor i is p(i) = (i + N) mod 2N, and the loss is the MEAN over the 2N anchors. The CLOP
paper writes Eq. (1) as a sum over anchors; the mean differs by the constant factor 2N only (see
:class:`clop.losses.CLOPObjective` for what this means for the weight of the CLOP term).

Against the reference implementation in the ``lightly`` library (lightly 1.6.0, checked in
tests/clop/losses/; lightly is not a dependency): NT-Xent and DCL have the same formula, the same
reduction and the same defaults (0.5, 0.1).
"""

from __future__ import annotations

import torch
from torch import nn

from clop.losses.common import check_labels, check_pair, two_view_logits
from clop.util.checks import check_positive as _check_positive

__all__ = ["info_nce", "dcl", "supcon", "supcon_unchecked", "InfoNCELoss", "DCLLoss", "SupConLoss"]

# --------------------------------------------------------------------------------------------
# InfoNCE / NT-Xent (Chen et al. 2020, SimCLR)
# --------------------------------------------------------------------------------------------


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent loss of SimCLR in its 2N-view form; Eq. (1) of the CLOP paper up to the mean.

    Chen, Kornblith, Norouzi & Hinton (2020), "A Simple Framework for Contrastive Learning of
    Visual Representations", ICML, Sec. 2.1 (NT-Xent). With u = normalize(cat(z1, z2)) (2N rows),
    s_ia = u_i . u_a / tau and p(i) = (i + N) mod 2N the other view of anchor i:

        L = 1/(2N) sum_{i=1}^{2N} [ -s_{i p(i)} + log sum_{a != i} exp(s_ia) ]

    The denominator runs over all 2N - 1 other views (the positive included).

    Default tau = 0.5: the temperature of SimCLR's CIFAR-10 experiments (Chen et al. 2020,
    Appendix B.9; the authors' CIFAR-10 command uses ``--temperature=0.5``); their ImageNet runs
    use a smaller one (tau = 0.1; Table 5 compares temperatures). 0.5 is also lightly's default.

    Args:
        z1, z2: (N, D) two views, N >= 2, unnormalised allowed.
        temperature: tau > 0.

    Returns:
        0-dim tensor.

    >>> g = torch.Generator().manual_seed(0)
    >>> z = torch.randn(8, 16, generator=g)
    >>> info_nce(z, z).shape
    torch.Size([])
    >>> bool(info_nce(z, z) < info_nce(z, torch.randn(8, 16, generator=g)))  # aligned views: lower loss
    True
    """
    z1, z2 = check_pair(z1, z2)
    t = _check_positive("temperature", temperature)
    logits, positive = two_view_logits(z1, z2, t)
    return (torch.logsumexp(logits, dim=1) - positive).mean()


# --------------------------------------------------------------------------------------------
# Decoupled Contrastive Learning (Yeh et al. 2022)
# --------------------------------------------------------------------------------------------


def dcl(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Decoupled contrastive loss: NT-Xent with the positive removed from the denominator.

    Yeh, Hong, Hsu, Liu, Chen & LeCun (2022), "Decoupled Contrastive Learning", ECCV, Eq. (6)
    without the weighting function (w = 1). With u, s and p(i) as in :func:`info_nce`:

        L = 1/(2N) sum_{i=1}^{2N} [ -s_{i p(i)} + log sum_{a not in {i, p(i)}} exp(s_ia) ]

    Unlike NT-Xent the value can be negative. Default tau = 0.1, the temperature used in the
    experiments of Yeh et al. (2022) and lightly's ``DCLLoss`` default.

    Args:
        z1, z2: (N, D) two views, N >= 2 (each anchor needs at least one negative).
        temperature: tau > 0.

    >>> z = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    >>> bool(dcl(z, z) < info_nce(z, z, temperature=0.1))  # removing the positive lowers the loss
    True
    """
    z1, z2 = check_pair(z1, z2)
    t = _check_positive("temperature", temperature)
    logits, positive = two_view_logits(z1, z2, t, drop_partner=True)
    return (torch.logsumexp(logits, dim=1) - positive).mean()


# --------------------------------------------------------------------------------------------
# Supervised contrastive loss, L_out (Khosla et al. 2020)
# --------------------------------------------------------------------------------------------


def supcon(z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SupCon loss L_out^sup (Khosla et al. 2020, "Supervised Contrastive Learning", NeurIPS, Eq. 2).

    With u, s_ia and p(i) as in :func:`info_nce`, y = cat(labels, labels) and A(i) = {a != i}:

        L = 1/(2N) sum_i -1/|P(i)| sum_{p in P(i)} log( exp(s_ip) / sum_{a in A(i)} exp(s_ia) )

    The average over positives sits OUTSIDE the log (L_out, the variant Khosla et al. recommend).
    Positives: for a labeled anchor (y_i >= 0), P(i) = {p != i : y_p = y_i} (its own other view
    included); for an unlabeled anchor (y_i = -1), P(i) = {p(i)}, its own other view only.
    Unlabeled samples are never positives of other samples. With all labels -1 the loss equals
    :func:`info_nce` at the same temperature. Khosla et al. sum over anchors; we take the mean
    (as their reference code does). Default tau = 0.1 (Khosla et al. 2020, Sec. 4).

    Args:
        z1, z2: (N, D) two views, N >= 2.
        labels: (N,) integer class of each sample, -1 = unlabeled.
        temperature: tau > 0.

    >>> z = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    >>> unlabeled = torch.full((4,), -1)
    >>> torch.allclose(supcon(z, 2 * z, unlabeled, 0.3), info_nce(z, 2 * z, 0.3))
    True
    """
    z1, z2 = check_pair(z1, z2)
    t = _check_positive("temperature", temperature)
    labels = check_labels(labels, z1.shape[0], z1.device)
    return supcon_unchecked(z1, z2, labels, t)


def supcon_unchecked(z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor, t: float) -> torch.Tensor:
    """The maths of :func:`supcon` on validated inputs (labels: (N,) long on z1's device): for a caller that
    has checked them already (:class:`clop.losses.CLOPObjective` checks once for both of its parts).

    -1/|P| sum_p log(exp(s_ip) / sum_a exp(s_ia)) = lse_i - (1/|P|) sum_p s_ip, so one (2N, 2N)
    float temporary (the positives' logits) besides the logits themselves.
    """
    n = z1.shape[0]
    logits, _ = two_view_logits(z1, z2, t)  # diagonal already -inf
    y = torch.cat([labels, labels])
    positives = (y[:, None] == y[None, :]) & (y >= 0)[:, None]  # (2N, 2N) bool
    positives.diagonal().fill_(False)
    positives.diagonal(n).fill_(True)  # the anchor's own other view, labeled or not
    positives.diagonal(-n).fill_(True)
    lse = torch.logsumexp(logits, dim=1)
    positive_sum = torch.where(positives, logits, 0.0).sum(dim=1)  # never touches the -inf diagonal
    return (lse - positive_sum / positives.sum(dim=1)).mean()


# --------------------------------------------------------------------------------------------
# Modules: the settings around the functions above
# --------------------------------------------------------------------------------------------


class InfoNCELoss(nn.Module):
    """Module form of :func:`info_nce` (NT-Xent, Chen et al. 2020); default tau = 0.5.

    >>> z1, z2 = torch.randn(2, 8, 16, generator=torch.Generator().manual_seed(0))
    >>> InfoNCELoss()(z1, z2).shape
    torch.Size([])
    """

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
        self.temperature = _check_positive("temperature", temperature)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """z1, z2: (N, D); ``labels`` is accepted for a uniform interface and ignored."""
        return info_nce(z1, z2, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class DCLLoss(nn.Module):
    """Module form of :func:`dcl` (Yeh et al. 2022); default tau = 0.1."""

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = _check_positive("temperature", temperature)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """z1, z2: (N, D); ``labels`` is ignored."""
        return dcl(z1, z2, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class SupConLoss(nn.Module):
    """Module form of :func:`supcon` (Khosla et al. 2020, L_out); default tau = 0.1. Needs labels."""

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = _check_positive("temperature", temperature)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """z1, z2: (N, D); labels: (N,) with -1 = unlabeled (required)."""
        if labels is None:
            raise ValueError("labels=None: SupConLoss needs labels of shape (N,) (use -1 for unlabeled samples)")
        return supcon(z1, z2, labels, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
