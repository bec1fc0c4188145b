"""The redundancy-reduction losses: Barlow Twins and VICReg, as functions and modules.

Paper of the suite: "Preventing collapse in contrastive learning with orthonormal prototypes" (CLOP),
arXiv 2403.18699, which compares CLOP with these two in Sec. 5.

Against the reference implementation in the ``lightly`` library (lightly 1.6.0, checked in
tests/clop/losses/; lightly is not a dependency):

* Barlow Twins: lightly standardises with ``F.batch_norm`` (biased variance, eps = 1e-5), as our
  default does; same lambda = 5e-3.
* VICReg: lightly (like the authors' code) uses 0.5 * (v(Z) + v(Z')) for the variance term, the
  paper's Eq. (6) and Algorithm 1 use v(Z) + v(Z'); we follow the paper, so ours with
  ``var_weight=12.5`` equals lightly's ``mu_param=25``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clop.losses.common import check_pair
from clop.util.checks import check_nonnegative as _check_nonnegative
from clop.util.checks import check_positive as _check_positive

__all__ = ["barlow_twins", "vicreg", "BarlowTwinsLoss", "VICRegLoss"]

# --------------------------------------------------------------------------------------------
# Barlow Twins (Zbontar et al. 2021)
# --------------------------------------------------------------------------------------------


def _standardise(z: torch.Tensor, eps: float, unbiased: bool) -> torch.Tensor:
    return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=unbiased) + eps)


def barlow_twins(
    z1: torch.Tensor,
    z2: torch.Tensor,
    lambda_offdiag: float = 5e-3,
    *,
    eps: float = 1e-5,
    unbiased: bool = False,
) -> torch.Tensor:
    """Barlow Twins redundancy-reduction loss (Zbontar, Jing, Misra, LeCun & Deny 2021, ICML, Eq. 1).

    Each dimension d of each view is standardised over the batch,
    zn[:, d] = (z[:, d] - mean_d) / sqrt(var_d + eps); the cross-correlation is
    C = zn1^T zn2 / N, (D, D), and

        L = sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2.

    Normalisation: by default var_d is the BIASED (1/N) batch variance with eps = 1e-5, i.e.
    ``BatchNorm1d(affine=False)`` in training mode as in the authors' released code; then C is the
    Pearson correlation matrix shrunk by eps (|C_ij| <= 1). The paper's Algorithm 1 divides by the
    unbiased std (``z.std(0)``) with no eps: pass ``unbiased=True, eps=0.0`` for that variant.
    eps > 0 keeps the loss finite when a dimension collapses to a constant.
    Default lambda = 5e-3, the paper's value (Zbontar et al. 2021, implementation details).

    Args:
        z1, z2: (N, D), N >= 2.
        lambda_offdiag: lambda >= 0, weight of the redundancy-reduction term.
        eps: >= 0, added to the variance before the square root.
        unbiased: use the 1/(N-1) variance instead of 1/N.

    >>> z = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    >>> bool(barlow_twins(z, z, eps=0.0) < barlow_twins(z, -z, eps=0.0))
    True
    """
    z1, z2 = check_pair(z1, z2)
    lam = _check_nonnegative("lambda_offdiag", lambda_offdiag)
    eps = _check_nonnegative("eps", eps)
    n, d = z1.shape
    c = _standardise(z1, eps, unbiased).T @ _standardise(z2, eps, unbiased) / n
    eye = torch.eye(d, dtype=torch.bool, device=c.device)
    on_diag = (1.0 - torch.diagonal(c)).pow(2).sum()
    off_diag = c.masked_fill(eye, 0.0).pow(2).sum()
    return on_diag + lam * off_diag


# --------------------------------------------------------------------------------------------
# VICReg (Bardes, Ponce & LeCun 2022)
# --------------------------------------------------------------------------------------------


def _vicreg_variance(z: torch.Tensor, eps: float, gamma: float) -> torch.Tensor:
    std = torch.sqrt(z.var(dim=0) + eps)  # unbiased variance, as in the paper's Algorithm 1
    return F.relu(gamma - std).mean()


def _vicreg_covariance(z: torch.Tensor) -> torch.Tensor:
    n, d = z.shape
    zc = z - z.mean(dim=0)
    cov = zc.T @ zc / (n - 1)
    eye = torch.eye(d, dtype=torch.bool, device=z.device)
    return cov.masked_fill(eye, 0.0).pow(2).sum() / d


def vicreg(
    z1: torch.Tensor,
    z2: torch.Tensor,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
    eps: float = 1e-4,
    *,
    gamma: float = 1.0,
) -> torch.Tensor:
    """VICReg loss (Bardes, Ponce & LeCun 2022, "VICReg", ICLR, Eqs. 1-6 and Algorithm 1).

        s(Z, Z') = 1/(N D) sum_n sum_d (z_nd - z'_nd)^2                      (invariance, MSE)
        v(Z)     = 1/D sum_d max(0, gamma - sqrt(Var(z_:d) + eps))            (variance hinge)
        c(Z)     = 1/D sum_{i != j} Cov(Z)_ij^2,  Cov(Z) = (Z - mean)^T (Z - mean) / (N - 1)
        L = lambda s(Z, Z') + mu [v(Z) + v(Z')] + nu [c(Z) + c(Z')]          (Eq. 6)

    Var is the unbiased (1/(N-1)) batch variance. Defaults are the paper's: lambda = mu = 25,
    nu = 1, gamma = 1, eps = 1e-4.

    Where the sources differ:

    * Invariance: we follow Algorithm 1 (``F.mse_loss(z_a, z_b)``: the MEAN over N and D). The
      printed Eq. (4), s = 1/N sum_n ||z_n - z'_n||^2, sums over D, i.e. is D times larger.
    * Variance: no factor 0.5, as in Eq. (6) and Algorithm 1 (``std_loss = mean(relu(1 - std_a)) +
      mean(relu(1 - std_b))``). The authors' released code (facebookresearch/vicreg) and lightly use
      ``mean(relu(1 - std_a)) / 2 + mean(relu(1 - std_b)) / 2``: ours with ``var_weight = mu / 2``
      equals theirs with ``mu``.

    Args:
        z1, z2: (N, D), N >= 2.
        sim_weight, var_weight, cov_weight: lambda, mu, nu >= 0.
        eps: > 0, added to the variance inside the square root. It must be positive: with eps = 0
            a constant dimension has std 0, where the derivative of the square root is infinite
            and the gradient becomes NaN.
        gamma: target standard deviation of each dimension, >= 0.

    >>> z = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    >>> bool(vicreg(z, z) < vicreg(z, torch.zeros_like(z)))  # a collapsed view is penalised
    True
    """
    z1, z2 = check_pair(z1, z2)
    lam = _check_nonnegative("sim_weight", sim_weight)
    mu = _check_nonnegative("var_weight", var_weight)
    nu = _check_nonnegative("cov_weight", cov_weight)
    eps = _check_positive("eps", eps)
    gamma = _check_nonnegative("gamma", gamma)
    invariance = F.mse_loss(z1, z2)
    variance = _vicreg_variance(z1, eps, gamma) + _vicreg_variance(z2, eps, gamma)
    covariance = _vicreg_covariance(z1) + _vicreg_covariance(z2)
    return lam * invariance + mu * variance + nu * covariance


# --------------------------------------------------------------------------------------------
# Modules: the settings around the functions above
# --------------------------------------------------------------------------------------------


class BarlowTwinsLoss(nn.Module):
    """Module form of :func:`barlow_twins` (Zbontar et al. 2021); default lambda = 5e-3."""

    def __init__(self, lambda_offdiag: float = 5e-3, *, eps: float = 1e-5, unbiased: bool = False) -> None:
        super().__init__()
        self.lambda_offdiag = _check_nonnegative("lambda_offdiag", lambda_offdiag)
        self.eps = _check_nonnegative("eps", eps)
        self.unbiased = bool(unbiased)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """z1, z2: (N, D); ``labels`` is ignored."""
        return barlow_twins(z1, z2, self.lambda_offdiag, eps=self.eps, unbiased=self.unbiased)

    def extra_repr(self) -> str:
        return f"lambda_offdiag={self.lambda_offdiag}, eps={self.eps}, unbiased={self.unbiased}"


class VICRegLoss(nn.Module):
    """Module form of :func:`vicreg` (Bardes et al. 2022); defaults 25, 25, 1, eps = 1e-4."""

    def __init__(
        self,
        sim_weight: float = 25.0,
        var_weight: float = 25.0,
        cov_weight: float = 1.0,
        eps: float = 1e-4,
        *,
        gamma: float = 1.0,
    ) -> None:
        super().__init__()
        self.sim_weight = _check_nonnegative("sim_weight", sim_weight)
        self.var_weight = _check_nonnegative("var_weight", var_weight)
        self.cov_weight = _check_nonnegative("cov_weight", cov_weight)
        self.eps = _check_positive("eps", eps)
        self.gamma = _check_nonnegative("gamma", gamma)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """z1, z2: (N, D); ``labels`` is ignored."""
        return vicreg(z1, z2, self.sim_weight, self.var_weight, self.cov_weight, self.eps, gamma=self.gamma)

    def extra_repr(self) -> str:
        return (
            f"sim_weight={self.sim_weight}, var_weight={self.var_weight}, cov_weight={self.cov_weight}, "
            f"eps={self.eps}, gamma={self.gamma}"
        )
