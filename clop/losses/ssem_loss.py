"""SSEM's loss: supervised and self-supervised contrastive losses mixed, (1 - alpha) L_sup + alpha L_self.

Lee, Oh, Lee & Sohn (2025), arXiv 2503.08203: one of the two other remedies for class collapse that the
suite checks beside CLOP (arXiv 2403.18699).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from clop.losses.common import check_labels, check_pair, two_view_logits, unit_rows
from clop.util.checks import check_choice as _check_choice
from clop.util.checks import check_positive as _check_positive
from clop.util.checks import is_finite_real as _is_finite_real

__all__ = ["SSEM_CONVENTIONS", "ssem", "ssem_terms", "SSEMLoss"]

# --------------------------------------------------------------------------------------------
# SSEM: supervised + self-supervised contrastive loss (Lee, Oh, Lee & Sohn 2025)
# --------------------------------------------------------------------------------------------

SSEM_CONVENTIONS = ("pairs", "anchors")


def _check_fraction(name: str, value: object) -> float:
    """``value`` as a float if it is a finite real number in [0, 1], else ``ValueError`` naming ``name``."""
    if _is_finite_real(value) and 0 <= value <= 1:
        return float(value)
    raise ValueError(f"{name} must be a real number in [0, 1]; got {value!r}")


@functools.lru_cache(maxsize=16)
def _same_instance(m: int, n: int, device: torch.device) -> torch.Tensor:
    """(m, m) bool, True where rows a and b of the m = 2N views come from the same sample (a mod N = b mod N),
    the diagonal included. Cached like :func:`clop.losses.common.excluded_pairs`."""
    sample = torch.arange(m, device=device) % n
    return sample[:, None] == sample[None, :]


def ssem_terms(
    z1: torch.Tensor,
    z2: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 0.1,
    convention: str = "pairs",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two parts ``(L_sup, L_self)`` of :func:`ssem` (0-dim tensors each); see there for the formulas.

    :func:`ssem` returns (1 - alpha) L_sup + alpha L_self; a study that records both parts separately
    calls this function.
    """
    z1, z2 = check_pair(z1, z2)
    t = _check_positive("temperature", temperature)
    convention = _check_choice("convention", convention, SSEM_CONVENTIONS)
    labels = check_labels(labels, z1.shape[0], z1.device)
    if convention == "pairs":
        return _ssem_pairs(z1, z2, labels, t)
    return _ssem_anchors(z1, z2, labels, t)


def ssem(
    z1: torch.Tensor,
    z2: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 0.5,
    temperature: float = 0.1,
    convention: str = "pairs",
) -> torch.Tensor:
    """Supervised contrastive learning as a mix of two losses, L = (1 - alpha) L_sup + alpha L_self.

    Lee, Oh, Lee & Sohn (2025), "A Theoretical Framework for Preventing Class Collapse in Supervised
    Contrastive Learning", AISTATS, arXiv 2503.08203 (the loss their Simplex-to-Simplex Embedding Model
    analyses). alpha = 0 is purely supervised, alpha = 1 purely self-supervised. The paper's theorem text
    was not available to us; the two conventions below are what the authors' two official implementations
    compute, and they differ.

    With u = normalize(cat(z1, z2)) (2N rows), s_ab = u_a . u_b / tau, y = cat(labels, labels), and
    "same sample" meaning a mod N = b mod N:

    ``convention="pairs"`` (the authors' CIFAR code): a softmax over all 2N rows, normalised column-wise
    with the self term kept, log P_ab = s_ab - log sum_c exp(s_cb), and global means over pairs:

        L_self = -mean of log P_ab over the 4N pairs (a, b) from the same sample (a = b included)
        L_sup  = -mean of log P_ab over S = {(a, b): y_a = y_b >= 0, different samples}

    The pair sets are symmetric and s is symmetric, so normalising by columns or by rows gives the same
    value.

    ``convention="anchors"`` (the authors' ImageNet code, SupCon-style): the anchor itself is removed from
    its denominator and its positives, and the means are per anchor. With A(i) = {a != i}:

        L_self = 1/(2N) sum_i [ -s_{i p(i)} + log sum_{a in A(i)} exp(s_ia) ]     (= :func:`info_nce`)
        L_sup  = 1/|Y| sum_{i in Y} [ -1/|P(i)| sum_{p in P(i)} s_ip + log sum_{a in A(i)} exp(s_ia) ]

    with Y = {i : y_i >= 0} the labeled views and P(i) = {p != i : y_p = y_i} (the anchor's own other view
    included, as in SupCon's L_out); on a fully labeled batch L_sup equals :func:`supcon`.

    Unlabeled samples (label -1) are in no supervised pair (in both conventions): they contribute to
    L_self and serve as negatives in every denominator, but never enter L_sup (:func:`supcon` instead
    gives an unlabeled anchor its own other view as positive). A batch with no supervised pair (no
    labeled pair of different samples sharing a class in ``"pairs"``; no labeled sample in ``"anchors"``)
    has L_sup = 0 exactly, with zero gradient: a mean over an empty set is undefined, and replacing it
    by L_self would silently change the weight alpha that the caller chose; with L_sup = 0 the batch
    pulls only through the terms it has evidence for, alpha * grad L_self.

    Defaults alpha = 0.5 and tau = 0.1: the values of the authors' published CIFAR training command
    (``--alpha 0.5 --temperature 0.1``).

    Args:
        z1, z2: (N, D) two views, N >= 2, unnormalised allowed (rows divided by max(||z||, 1e-6)).
        labels: (N,) integer class of each sample, -1 = unlabeled.
        alpha: weight of the self-supervised part, in [0, 1].
        temperature: tau > 0.
        convention: ``"pairs"`` or ``"anchors"`` (above).

    Returns:
        0-dim tensor.

    >>> z = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    >>> y = torch.tensor([0, 0, 1, 1, 2, 2])
    >>> torch.allclose(ssem(z, z, y, alpha=1.0, convention="anchors"), info_nce(z, z, 0.1))
    True
    >>> torch.allclose(ssem(z, z, y, alpha=0.0, convention="anchors"), supcon(z, z, y, 0.1))
    True
    """
    a = _check_fraction("alpha", alpha)
    sup, self_ = ssem_terms(z1, z2, labels, temperature, convention)
    return (1.0 - a) * sup + a * self_


def _ssem_pairs(
    z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor, t: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_sup, L_self) of the ``"pairs"`` convention on validated inputs. No host sync."""
    n = z1.shape[0]
    u = unit_rows(torch.cat([z1, z2], dim=0))
    logits = (u @ u.T) / t  # (2N, 2N), the self term kept
    log_p = logits - torch.logsumexp(logits, dim=0, keepdim=True)  # column-wise: b is the anchor
    same = _same_instance(2 * n, n, u.device)
    y = torch.cat([labels, labels])
    sup = (y[:, None] == y[None, :]) & (y >= 0)[:, None] & ~same
    l_self = -torch.where(same, log_p, 0.0).sum() / (4 * n)
    l_sup = -torch.where(sup, log_p, 0.0).sum() / sup.sum().clamp_min(1)  # an empty S gives exactly 0
    return l_sup, l_self


def _ssem_anchors(
    z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor, t: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_sup, L_self) of the ``"anchors"`` convention on validated inputs. No host sync."""
    logits, positive = two_view_logits(z1, z2, t)  # diagonal -inf
    lse = torch.logsumexp(logits, dim=1)
    l_self = (lse - positive).mean()
    y = torch.cat([labels, labels])
    labeled = y >= 0
    positives = (y[:, None] == y[None, :]) & labeled[:, None]
    positives.diagonal().fill_(False)
    per_anchor = lse - torch.where(positives, logits, 0.0).sum(dim=1) / positives.sum(dim=1).clamp_min(1)
    l_sup = torch.where(labeled, per_anchor, 0.0).sum() / labeled.sum().clamp_min(1)  # no labeled view: 0
    return l_sup, l_self


class SSEMLoss(nn.Module):
    """Module form of :func:`ssem` (Lee et al. 2025); defaults alpha = 0.5, tau = 0.1, ``"pairs"``. Needs labels.

    >>> SSEMLoss(alpha=0.25, convention="anchors")
    SSEMLoss(alpha=0.25, temperature=0.1, convention='anchors')
    """

    def __init__(self, alpha: float = 0.5, temperature: float = 0.1, convention: str = "pairs") -> None:
        super().__init__()
        self.alpha = _check_fraction("alpha", alpha)
        self.temperature = _check_positive("temperature", temperature)
        self.convention = _check_choice("convention", convention, SSEM_CONVENTIONS)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """z1, z2: (N, D); labels: (N,) with -1 = unlabeled (required)."""
        if labels is None:
            raise ValueError("labels=None: SSEMLoss needs labels of shape (N,) (use -1 for unlabeled samples)")
        return ssem(z1, z2, labels, self.alpha, self.temperature, self.convention)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, temperature={self.temperature}, convention={self.convention!r}"
