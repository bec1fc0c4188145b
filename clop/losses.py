"""Contrastive losses, the CLOP term of Eq. (4) and L_class of Eq. (3).

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

Paper of the suite: "Preventing collapse in contrastive learning with orthonormal prototypes"
(CLOP), arXiv 2403.18699.

Conventions shared by the contrastive losses (InfoNCE, DCL, SupCon), following SimCLR's
2N-view form (Chen et al. 2020): the 2N embeddings u = normalize(cat(z1, z2)) are L2-normalised,
every one of the 2N rows is an anchor, the partner of anchor i is p(i) = (i + N) mod 2N, and the
loss is the MEAN over the 2N anchors. The CLOP paper writes Eq. (1) as a sum over anchors; the
mean differs by the constant factor 2N only (see :class:`CLOPObjective` for what this means for
the weight of the CLOP term).

L2 normalisation (contrastive losses and the CLOP term) divides each row by max(||z||, 1e-6):
exact for every row with norm >= 1e-6; a row with a smaller norm is scaled by 1e6 instead (so it
is no longer a unit vector, and a zero row stays zero). The floor bounds the gradient at a zero
row by 1e6 x the upstream gradient; ``F.normalize``'s default floor 1e-12 gives ~1e12 there.
Embeddings of a trained network are many orders of magnitude above 1e-6, so the floor only
matters for (near-)zero rows. :mod:`clop.metrics` computes on detached values and normalises
exactly (it needs no gradient); both map a zero row to the zero vector.

Deviations of the reference implementation in the ``lightly`` library, checked against
lightly 1.6.0 in tests/clop/test_losses.py (optional tests; lightly is not a dependency):

* NT-Xent, DCL: same formula, same reduction, same defaults (0.5, 0.1).
* Barlow Twins: lightly standardises with ``F.batch_norm`` (biased variance, eps = 1e-5), as our
  default does; same lambda = 5e-3.
* VICReg: lightly (like the authors' code) uses 0.5 * (v(Z) + v(Z')) for the variance term, the
  paper's Eq. (6) and Algorithm 1 use v(Z) + v(Z'); we follow the paper, so ours with
  ``var_weight=12.5`` equals lightly's ``mu_param=25``.

Validation and device syncs: every function checks its arguments (shape, dtype, device) without
touching tensor values, except the range check of integer ``labels`` (one host sync per call:
one ``aminmax``); :class:`CLOPObjective` range-checks its labels once per forward.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from clop import prototypes as _prototypes
from clop.util.checks import check_choice as _check_choice
from clop.util.checks import check_dtype as _check_dtype
from clop.util.checks import check_nonnegative as _check_nonnegative
from clop.util.checks import check_positive as _check_positive
from clop.util.checks import check_size as _check_size
from clop.util.checks import is_finite_real as _is_finite_real
from clop.util.checks import is_integer as _is_integer
from clop.util.device import default_device

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

SIMILARITIES = ("cosine", "euclidean", "manhattan")
REDUCTIONS = ("sum", "mean", "batch")
PROTOTYPE_KINDS = ("orthonormal", "simplex_etf")
_PROTOTYPE_ALIASES = {"orthonormal": "orthonormal", "simplex_etf": "simplex_etf", "etf": "simplex_etf"}


# --------------------------------------------------------------------------------------------
# Input validation (scikit-learn style: name the argument, the value received, what is accepted)
# --------------------------------------------------------------------------------------------


def _check_embeddings(name: str, z: object, *, min_batch: int = 1) -> torch.Tensor:
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


def _check_pair(z1: object, z2: object, *, min_batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Both views valid, same shape, dtype and device, and N >= ``min_batch``; each checked once."""
    z1 = _check_embeddings("z1", z1)
    z2 = _check_embeddings("z2", z2)
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


def _check_labels(
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


_NORM_FLOOR = 1e-6  # floor of ||z|| in _unit_rows (module doc)


def _unit_rows(z: torch.Tensor) -> torch.Tensor:
    """z / max(||z||_2, 1e-6) row-wise, z: (..., D); a zero row stays zero with a bounded gradient."""
    return z / torch.linalg.vector_norm(z, dim=-1, keepdim=True).clamp_min(_NORM_FLOOR)


@functools.lru_cache(maxsize=16)
def _excluded_pairs(m: int, n: int, drop_partner: bool, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(m, m) additive mask: -inf where a = i (and a = p(i) when ``drop_partner``), 0 elsewhere. Cached:
    it depends on the batch size only, and a training run asks for the same one at every step."""
    mask = torch.zeros(m, m, dtype=dtype, device=device)
    mask.fill_diagonal_(float("-inf"))
    if drop_partner:
        mask.diagonal(n).fill_(float("-inf"))
        mask.diagonal(-n).fill_(float("-inf"))
    return mask


def _two_view_logits(
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
    u = _unit_rows(torch.cat([z1, z2], dim=0))
    mask = _excluded_pairs(2 * n, n, drop_partner, u.dtype, u.device)
    logits = torch.addmm(mask, u, u.T, alpha=1.0 / temperature)
    pos = (u[:n] * u[n:]).sum(dim=1).div(temperature)
    return logits, torch.cat([pos, pos])


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
    z1, z2 = _check_pair(z1, z2)
    t = _check_positive("temperature", temperature)
    logits, positive = _two_view_logits(z1, z2, t)
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
    z1, z2 = _check_pair(z1, z2)
    t = _check_positive("temperature", temperature)
    logits, positive = _two_view_logits(z1, z2, t, drop_partner=True)
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
    z1, z2 = _check_pair(z1, z2)
    t = _check_positive("temperature", temperature)
    labels = _check_labels(labels, z1.shape[0], z1.device)
    return _supcon(z1, z2, labels, t)


def _supcon(z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor, t: float) -> torch.Tensor:
    """The maths of :func:`supcon` on validated inputs (labels: (N,) long on z1's device).

    -1/|P| sum_p log(exp(s_ip) / sum_a exp(s_ia)) = lse_i - (1/|P|) sum_p s_ip, so one (2N, 2N)
    float temporary (the positives' logits) besides the logits themselves.
    """
    n = z1.shape[0]
    logits, _ = _two_view_logits(z1, z2, t)  # diagonal already -inf
    y = torch.cat([labels, labels])
    positives = (y[:, None] == y[None, :]) & (y >= 0)[:, None]  # (2N, 2N) bool
    positives.diagonal().fill_(False)
    positives.diagonal(n).fill_(True)  # the anchor's own other view, labeled or not
    positives.diagonal(-n).fill_(True)
    lse = torch.logsumexp(logits, dim=1)
    positive_sum = torch.where(positives, logits, 0.0).sum(dim=1)  # never touches the -inf diagonal
    return (lse - positive_sum / positives.sum(dim=1)).mean()


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
    z1, z2 = _check_pair(z1, z2)
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
    z1, z2 = _check_pair(z1, z2)
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
# The CLOP term, Eq. (4) of the CLOP paper
# --------------------------------------------------------------------------------------------


def clop_term(
    z: torch.Tensor,
    labels: torch.Tensor,
    prototypes: torch.Tensor,
    *,
    similarity: str = "cosine",
    lam: float = 1.0,
    reduction: str = "sum",
) -> torch.Tensor:
    """The prototype-pulling term of CLOP, Eq. (4): lam * sum_{i labeled} (1 - s(z_i, c_{y_i})).

    CLOP paper, Sec. 4: L_CLOP = L_CL + lambda sum_{i in S} (1 - s(z_i, c_{y_i})), where S is the
    set of labeled samples and c_1..c_k are the (unit-norm) prototypes. Unlabeled samples
    (label -1) are ignored. Similarities, defined so that s(c, c) = 1 for a unit prototype c:

    * ``"cosine"``:    1 - s = 1 - cos(z, c)             (the paper's main choice, Sec. 4)
    * ``"euclidean"``: 1 - s = || z/||z|| - c ||_2
    * ``"manhattan"``: 1 - s = || z/||z|| - c ||_1

    The paper names the Euclidean and Manhattan similarities (Table 2) but does not define them;
    the two definitions above are OUR choice: z is L2-normalised first because the prototypes are
    unit vectors, so all three terms are scale-invariant in z and vanish exactly at z = c.
    The prototypes are used as given (expected to be unit vectors: :class:`CLOPLoss` checks
    that); they are cast to z's dtype. Normalisation divides by max(||z||, 1e-6) (module doc).

    Reductions (M = number of labeled samples, N = batch size, labeled or not):

    * ``"sum"``:   lam * sum_{i in S} d_i, Eq. (4) as printed (the default). Grows with the batch.
    * ``"mean"``:  lam * sum_{i in S} d_i / M, the average over labeled samples.
    * ``"batch"``: lam * sum_{i in S} d_i / N. Eq. (4) adds a SUM over labeled samples to L_CL, and
      Eq. (1) prints L_CL as a SUM over anchors too; our contrastive losses are MEANS over the 2N
      anchors, so Eq. (4) with both sums as printed, divided by 2N, is exactly mean-L_CL + this
      reduction of the term on both views (see :class:`CLOPObjective`). It is the scale-consistent
      reading of Eq. (4): the term's weight relative to L_CL does not change with the batch size
      or with the fraction of labeled samples.

    A batch with no labeled sample returns an exact 0 that keeps the autograd graph (zero
    gradients, never NaN) for every reduction. No host sync besides the labels' range check:
    the term is computed for every row (unlabeled rows use their class-0 prototype as a stand-in
    for z and are then zeroed with ``torch.where``), so no boolean indexing, and unlabeled rows
    affect neither the value nor the gradient, whatever (even non-finite) values they hold.

    Args:
        z: (N, D) embeddings, N >= 1.
        labels: (N,) integer, values in {-1, 0, ..., k-1}; -1 = unlabeled.
        prototypes: (k, D), on z's device.
        similarity: one of ``SIMILARITIES``.
        lam: lambda >= 0 (the paper uses 1.0).
        reduction: one of ``REDUCTIONS``: ``"sum"`` (default), ``"mean"`` or ``"batch"``.

    >>> c = torch.eye(3, 4)
    >>> float(clop_term(2 * c, torch.tensor([0, 1, 2]), c))  # each z on its prototype's ray
    0.0
    >>> float(clop_term(c, torch.tensor([1, -1, -1]), c))    # 1 - cos(c_0, c_1) = 1
    1.0
    >>> float(clop_term(c, torch.tensor([1, -1, -1]), c, reduction="batch"))  # 1 / N
    0.3333333432674408
    """
    z = _check_embeddings("z", z)
    similarity = _check_choice("similarity", similarity, SIMILARITIES)
    reduction = _check_choice("reduction", reduction, REDUCTIONS)
    lam = _check_nonnegative("lam", lam)
    k = _check_prototypes(prototypes, z)
    labels = _check_labels(labels, z.shape[0], z.device, num_classes=k)
    return _clop_term(z, labels, prototypes, similarity, lam, reduction)


def _check_prototypes(prototypes: object, z: torch.Tensor) -> int:
    """(k, D) floating tensor on z's device, k >= 1; returns k. No tensor value is read."""
    if not isinstance(prototypes, torch.Tensor) or prototypes.dim() != 2 or not prototypes.is_floating_point():
        got = (
            f"{prototypes.dtype} of shape {tuple(prototypes.shape)}"
            if isinstance(prototypes, torch.Tensor)
            else type(prototypes).__name__
        )
        raise ValueError(f"prototypes must be a floating-point tensor of shape (k, D); got {got}")
    k, d = prototypes.shape
    if k == 0:
        raise ValueError("prototypes must hold at least one prototype; got k=0")
    if d != z.shape[1]:
        raise ValueError(
            f"prototypes have dimension {d} but z has dimension D={z.shape[1]}; shapes {tuple(prototypes.shape)} "
            f"and {tuple(z.shape)}"
        )
    if prototypes.device != z.device:
        raise ValueError(f"prototypes are on {prototypes.device} but z is on {z.device}; move one of them")
    return k


def _clop_term(
    z: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor, similarity: str, lam: float, reduction: str
) -> torch.Tensor:
    """The maths of :func:`clop_term` on validated inputs (labels: (N,) long on z's device). No host sync."""
    labeled = labels >= 0  # (N,) bool
    c = prototypes.to(dtype=z.dtype)[labels.clamp_min(0)]  # (N, D): c_{y_i}, c_0 for unlabeled rows
    # unlabeled rows see z = c (finite whatever z holds there); torch.where also blocks their gradient
    zs = torch.where(labeled[:, None], z, c)
    u = _unit_rows(zs)
    if similarity == "cosine":
        dissim = 1.0 - (u * _unit_rows(c)).sum(dim=1)
    else:
        order = 2 if similarity == "euclidean" else 1
        dissim = torch.linalg.vector_norm(u - c, ord=order, dim=1)
    total = torch.where(labeled, dissim, 0.0).sum()
    if reduction == "mean":
        total = total / labeled.sum().clamp_min(1)
    elif reduction == "batch":
        total = total / z.shape[0]
    return lam * total


# --------------------------------------------------------------------------------------------
# L_class, Eq. (3) of the CLOP paper
# --------------------------------------------------------------------------------------------


def l_class(x: torch.Tensor) -> torch.Tensor:
    """Total pairwise similarity of k class embeddings, L_class of Eq. (3) with the sign the text means.

    L_class(X) = sum_{i != j} x_i . x_j  for x: (..., k, m) whose rows are unit vectors; returns (...).
    The paper prints Eq. (3) with a leading minus sign, but the text minimises the pairwise cosine
    similarity and gives the optimum as -k; that is this sign (see theory/ for the check).
    Uses the identity sum_{i != j} x_i.x_j = ||sum_i x_i||^2 - sum_i ||x_i||^2, exact for any rows.
    Its minimum over unit rows is -k, reached exactly when sum_i x_i = 0 (e.g. a simplex ETF);
    k orthonormal rows give 0. ``x`` must be a non-empty floating-point tensor (else ``ValueError``).

    >>> l_class(torch.eye(3))
    tensor(0.)
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor of shape (..., k, m); got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"x must have shape (..., k, m); got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor; got dtype {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"x is empty (no embeddings or no dimensions); shape {tuple(x.shape)}")
    s = x.sum(dim=-2)
    return (s * s).sum(dim=-1) - (x * x).sum(dim=(-2, -1))


# --------------------------------------------------------------------------------------------
# Modules: settings and state around the functions above
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


class CLOPLoss(nn.Module):
    """The CLOP term of Eq. (4) with its prototypes held as a buffer named ``prototypes``: (k, dim).

    The buffer moves with ``.to(device)`` / ``.to(dtype)`` and is saved in ``state_dict``.
    ``prototypes`` selects how they are made: ``"orthonormal"`` (the paper's choice, Sec. 4:
    :func:`clop.prototypes.orthonormal`), ``"simplex_etf"`` (alias ``"etf"``, the comparison of
    Sec. 5: :func:`clop.prototypes.simplex_etf`), both drawn with ``seed``; or a (k, dim) tensor
    of custom prototypes. Custom prototypes must have unit rows (the CLOP term is defined for unit
    prototypes, and the Euclidean/Manhattan terms use c as given): | ||c_i|| - 1 | <= max(1e-5,
    10 eps(their dtype)), else ``ValueError``. Generated or custom, the buffer is made in ``dtype``
    (default float32) on ``device`` (None: CUDA when present, else CPU); a custom tensor is
    detached and copied, never shared.

    Args:
        num_classes: k >= 1.
        dim: embedding dimension D >= 1.
        lam, similarity, reduction: as in :func:`clop_term` (paper: lam = 1.0, cosine, sum;
            ``reduction="batch"`` is the scale-consistent reading of Eq. (4), see
            :class:`CLOPObjective`).
        prototypes: ``"orthonormal"``, ``"simplex_etf"`` or a (k, dim) tensor with unit rows.
        seed: seed of the prototype draw (ignored for a custom tensor).
        device: device of the buffer.
        dtype: floating dtype of the buffer (default float32).

    >>> loss = CLOPLoss(3, 8, device="cpu")
    >>> float(loss(loss.prototypes.clone(), torch.tensor([0, 1, 2]))) < 1e-6
    True
    """

    def __init__(
        self,
        num_classes: int,
        dim: int,
        *,
        lam: float = 1.0,
        similarity: str = "cosine",
        prototypes: str | torch.Tensor = "orthonormal",
        reduction: str = "sum",
        seed: int = 0,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.num_classes = _check_size("num_classes", num_classes)
        self.dim = _check_size("dim", dim)
        self.lam = _check_nonnegative("lam", lam)
        self.similarity = _check_choice("similarity", similarity, SIMILARITIES)
        self.reduction = _check_choice("reduction", reduction, REDUCTIONS)
        dtype = _check_dtype(dtype)
        dev = default_device(device)
        if isinstance(prototypes, torch.Tensor):
            c = self._check_custom(prototypes)
            self.prototype_kind = "custom"
            c = c.detach().to(device=dev, dtype=dtype, copy=True)
        else:
            if not isinstance(prototypes, str) or prototypes.lower() not in _PROTOTYPE_ALIASES:
                raise ValueError(
                    f"prototypes={prototypes!r} is not supported; expected one of "
                    f"{list(_PROTOTYPE_ALIASES)} or a ({self.num_classes}, {self.dim}) tensor"
                )
            self.prototype_kind = _PROTOTYPE_ALIASES[prototypes.lower()]
            make = _prototypes.orthonormal if self.prototype_kind == "orthonormal" else _prototypes.simplex_etf
            c = make(self.num_classes, self.dim, seed=seed, dtype=dtype, device=dev)
        self.seed = seed
        self.register_buffer("prototypes", c)

    def _check_custom(self, c: torch.Tensor) -> torch.Tensor:
        if c.shape != (self.num_classes, self.dim) or not c.is_floating_point():
            raise ValueError(
                f"prototypes tensor must be floating point with shape ({self.num_classes}, {self.dim}); "
                f"got {c.dtype} of shape {tuple(c.shape)}"
            )
        norms = torch.linalg.vector_norm(c.detach().to(torch.float64), dim=1)
        tol = max(1e-5, 10 * torch.finfo(c.dtype).eps)
        worst = float((norms - 1.0).abs().max())  # once, at construction
        if not worst <= tol:  # also catches NaN
            raise ValueError(
                f"prototypes tensor must have unit rows (| ||c_i|| - 1 | <= {tol:g}); got row norms from "
                f"{float(norms.min()):.6g} to {float(norms.max()):.6g}. Normalise them first, e.g. "
                "torch.nn.functional.normalize(c, dim=1)"
            )
        return c

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """z: (N, dim), labels: (N,) with -1 = unlabeled; returns the 0-dim CLOP term."""
        return clop_term(
            z, labels, self.prototypes, similarity=self.similarity, lam=self.lam, reduction=self.reduction
        )

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, dim={self.dim}, lam={self.lam}, similarity={self.similarity!r}, "
            f"prototypes={self.prototype_kind!r}, reduction={self.reduction!r}, seed={self.seed}"
        )


class CLOPObjective(nn.Module):
    """L_CLOP = L_CL + CLOP term, Eq. (4): a contrastive module plus an optional :class:`CLOPLoss`.

    ``forward(z1, z2, labels)`` returns ``{"loss": total, "contrastive": base part, "clop": clop part}``
    (all 0-dim tensors). The CLOP term is applied to BOTH views: it is evaluated on
    cat(z1, z2) with cat(labels, labels), so every labeled image contributes twice. With
    ``clop=None`` the CLOP part is a zero.

    Scale of the two parts. Eq. (4) adds lambda * SUM over labeled samples to L_CL, and Eq. (1)
    prints L_CL (InfoNCE) as a SUM over anchors too. Our contrastive losses are MEANS over the 2N
    anchors (SimCLR's and Khosla et al.'s reference code). Hence:

    * ``reduction="sum"`` (the default, Eq. (4) as printed, what the spec asks for): the CLOP part
      is a sum over the 2M labeled views while the contrastive part is a mean, so the CLOP term's
      weight relative to the contrastive loss GROWS LINEARLY WITH THE BATCH SIZE. Example (fully
      labeled, N = 512, D = 128, 100 classes, independent Gaussian embeddings, tau = 0.1, measured
      with this module): SupCon ~ 7.3 against a CLOP part ~ 1027 (2N = 1024 views, 1 - cos ~ 1 each).
    * ``reduction="batch"``: the CLOP part is divided by the number of views 2N (labeled or not).
      Eq. (4) with both sums as printed, divided by 2N, is EXACTLY
      mean-L_CL + lambda * (CLOP "batch" term on both views): the scale-consistent reading of Eq. (4),
      independent of the batch size.
    * ``reduction="mean"``: divided by the 2M labeled views instead.

    Labels are range-checked once per forward (one host sync): by the CLOP term, or, with a
    :class:`SupConLoss` base, once for both parts.

    Args:
        base: a module called as ``base(z1, z2, labels)`` returning a 0-dim loss (any of ``LOSSES``).
        clop: a :class:`CLOPLoss` or None.

    >>> obj = CLOPObjective(InfoNCELoss(), CLOPLoss(3, 8, device="cpu"))
    >>> z1, z2 = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(0))
    >>> out = obj(z1, z2, torch.tensor([0, 2, -1, 1]))
    >>> sorted(out)
    ['clop', 'contrastive', 'loss']
    """

    def __init__(self, base: nn.Module, clop: CLOPLoss | None = None) -> None:
        super().__init__()
        if not isinstance(base, nn.Module):
            raise ValueError(f"base must be an nn.Module (e.g. make_loss('infonce')); got {type(base).__name__}")
        if clop is not None and not isinstance(clop, CLOPLoss):
            raise ValueError(f"clop must be a CLOPLoss or None; got {type(clop).__name__}")
        self.base = base
        self.clop = clop

    def forward(
        self, z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """z1, z2: (N, D); labels: (N,) with -1 = unlabeled (needed when a CLOP term is present)."""
        if self.clop is None:
            contrastive = self.base(z1, z2, labels)
            clop_part = contrastive.new_zeros(())
        elif labels is None:
            raise ValueError("labels=None: the CLOP term needs labels of shape (N,) with -1 = unlabeled")
        elif type(self.base) is SupConLoss:
            # validate once, then run the maths of both parts on the validated inputs
            z1, z2 = _check_pair(z1, z2)
            t = self.base.temperature
            clop = self.clop
            k = _check_prototypes(clop.prototypes, z1)
            labels = _check_labels(labels, z1.shape[0], z1.device, num_classes=k)
            contrastive = _supcon(z1, z2, labels, t)
            clop_part = _clop_term(
                torch.cat([z1, z2]), torch.cat([labels, labels]), clop.prototypes, clop.similarity, clop.lam,
                clop.reduction,
            )
        else:
            contrastive = self.base(z1, z2, labels)  # the LOSSES modules validate z1, z2 here
            if not isinstance(labels, torch.Tensor):
                raise ValueError(f"labels must be an integer torch.Tensor of shape (N,); got {type(labels).__name__}")
            clop_part = self.clop(torch.cat([z1, z2]), torch.cat([labels, labels]))  # validates labels
        return {"loss": contrastive + clop_part, "contrastive": contrastive, "clop": clop_part}


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
    the diagonal included. Cached like :func:`_excluded_pairs`."""
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
    z1, z2 = _check_pair(z1, z2)
    t = _check_positive("temperature", temperature)
    convention = _check_choice("convention", convention, SSEM_CONVENTIONS)
    labels = _check_labels(labels, z1.shape[0], z1.device)
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
    u = _unit_rows(torch.cat([z1, z2], dim=0))
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
    logits, positive = _two_view_logits(z1, z2, t)  # diagonal -inf
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


# --------------------------------------------------------------------------------------------
# CPLearn (Sansone, Lebailly & Tuytelaars 2025)
# --------------------------------------------------------------------------------------------


def cplearn_temperature(f: int, n: int, c: int, eps: float = 1e-8) -> float:
    """The temperature of CPLearn's logits, tau = f / (sqrt(n) * log((1 - eps (c - 1)) / eps)).

    Sansone, Lebailly & Tuytelaars (2025), "Collapse-Proof Non-Contrastive Self-Supervised Learning", ICML,
    arXiv 2410.04959; the formula and eps = 1e-8 as the authors' code computes them (the projector's
    forward pass). f: width of the projector's tanh layer (the rows of the code matrix), n: batch size,
    c: number of codes. The log is positive only for eps < 1/c, so eps must lie in (0, 1/c).

    >>> round(cplearn_temperature(2048, 64, 16384), 4)
    13.8975
    """
    f = _check_size("f", f)
    n = _check_size("n", n)
    c = _check_size("c", c, 2)
    eps = _check_code_eps(eps, c)
    return f / (math.sqrt(n) * math.log((1.0 - eps * (c - 1)) / eps))


def _check_code_eps(eps: object, c: int) -> float:
    """``eps`` as a float if it lies in (0, 1/c) (where CPLearn's temperature is positive and finite)."""
    if _is_finite_real(eps) and 0 < eps < 1 / c:
        return float(eps)
    raise ValueError(f"eps must be a real number in (0, 1/c) = (0, {1 / c:.6g}) for c={c}; got {eps!r}")


def _check_logits(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (n, c); got {type(x).__name__}")
    if x.dim() != 2 or not x.is_floating_point():
        raise ValueError(
            f"{name} must be a floating-point tensor of shape (n, c); got {x.dtype} of shape {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (n=0); shape {tuple(x.shape)}")
    if x.shape[1] < 2:
        raise ValueError(f"{name} must have c >= 2 columns (codes); got shape {tuple(x.shape)}")
    return x


def cplearn(logits1: torch.Tensor, logits2: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """CPLearn loss on the logits of two views (Sansone, Lebailly & Tuytelaars 2025, arXiv 2410.04959).

    The logits are hW / tau (:class:`CPLearnProjector`). With p^v = softmax of view v's logits per row,
    (n, c), and p-bar^v = (1/n) sum_i p^v_i its batch mean, (c,):

        L = 1/2 [beta CE(p^2, p^1) + KL(p-bar^2 || U_c)] + 1/2 [beta CE(p^1, p^2) + KL(p-bar^1 || U_c)]
        CE(t, q) = -(1/n) sum_i sum_j t_ij log q_ij,      KL(p-bar || U_c) = sum_j p-bar_j log(c p-bar_j)

    U_c the uniform distribution on the c codes. No stop-gradient: both arguments of each CE are
    differentiated, as in the authors' code. The cross-entropies pull each sample's two views onto the same
    code; the KL terms spread the batch over all codes. log q and log p-bar are computed in the log
    domain (log-softmax, and log p-bar_j = logsumexp_i log p_ij - log n), which gives the same value as the
    authors' log(c * p.mean(0)) and stays finite where a probability underflows to 0.

    Default beta = 1: the authors' configuration (their CIFAR pretraining config, with f = 2048 and
    c = 16384); their loss function's signature and docstring give other values (0.05, 0.01).

    Args:
        logits1, logits2: (n, c) logits of the two views, the same shape, c >= 2.
        beta: weight of the cross-entropy terms, >= 0.

    Returns:
        0-dim tensor.

    >>> x = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    >>> bool(cplearn(x, x) < cplearn(x, -x))  # agreeing views: lower loss
    True
    """
    l1 = _check_logits("logits1", logits1)
    l2 = _check_logits("logits2", logits2)
    if l1.shape != l2.shape:
        raise ValueError(
            f"logits1 and logits2 must have the same shape (n, c); got {tuple(l1.shape)} and {tuple(l2.shape)}"
        )
    if l1.dtype != l2.dtype or l1.device != l2.device:
        raise ValueError(
            f"logits1 and logits2 must share dtype and device; got {l1.dtype}/{l1.device} and {l2.dtype}/{l2.device}"
        )
    b = _check_nonnegative("beta", beta)
    log_p1 = torch.log_softmax(l1, dim=1)
    log_p2 = torch.log_softmax(l2, dim=1)
    half1 = b * _cross_entropy_rows(log_p2, log_p1) + _kl_to_uniform(log_p2)
    half2 = b * _cross_entropy_rows(log_p1, log_p2) + _kl_to_uniform(log_p1)
    return 0.5 * half1 + 0.5 * half2


def _cross_entropy_rows(log_target: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """CE(t, q) = -(1/n) sum_i sum_j t_ij log q_ij from log t, log q: (n, c)."""
    return -(log_target.exp() * log_q).sum(dim=1).mean()


def _kl_to_uniform(log_p: torch.Tensor) -> torch.Tensor:
    """KL(p-bar || U_c) = sum_j p-bar_j log(c p-bar_j), p-bar the row mean of p = exp(log_p): (n, c)."""
    n, c = log_p.shape
    log_mean = torch.logsumexp(log_p, dim=0) - math.log(n)
    return (log_mean.exp() * (log_mean + math.log(c))).sum()


class CPLearnLoss(nn.Module):
    """Module form of :func:`cplearn` (Sansone et al. 2025); default beta = 1. Takes the two views' LOGITS.

    >>> CPLearnLoss()
    CPLearnLoss(beta=1.0)
    """

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = _check_nonnegative("beta", beta)

    def forward(
        self, logits1: torch.Tensor, logits2: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """logits1, logits2: (n, c) from :class:`CPLearnProjector`; ``labels`` is accepted and ignored."""
        return cplearn(logits1, logits2, self.beta)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


class CPLearnProjector(nn.Module):
    """CPLearn's projector: Linear -> BatchNorm1d -> tanh -> fixed +-1 codes -> logits hW / tau.

    Sansone, Lebailly & Tuytelaars (2025), arXiv 2410.04959, as the authors' code builds it:
    h = tanh(BN(Linear(x))) in (-1, 1)^f, and the logits hW / tau with W in {-1, +1}^(f x c) a fixed random
    code matrix that is never trained and tau = :func:`cplearn_temperature` (f, n, c, eps). W is drawn
    from ``seed`` (each entry +-1 with probability 1/2; the same seed gives the same codes) and held as a
    registered buffer named ``codes``: it moves with ``.to(device)`` / ``.to(dtype)``, is saved in
    ``state_dict`` and is not a parameter. The Linear and BatchNorm layers have PyTorch's default
    initialisation (affine BatchNorm), as in the authors' code.

    The authors' configuration: f = 2048, c = 16384 (then W alone holds 2048 x 16384 floats, 128 MiB
    in float32). ``n`` is the batch size in tau: an integer fixes tau at construction; ``n=None`` takes
    the size of each forward batch, as the authors' code does.

    Args:
        in_features: width of the encoder's features, >= 1.
        f: width of the tanh layer, >= 1.
        c: number of codes, >= 2.
        n: batch size used in tau (>= 1), or None (each forward batch's size).
        seed: seed of the code matrix.
        eps: as in :func:`cplearn_temperature`, in (0, 1/c).

    Shapes: ``forward(x)``: x (B, in_features) -> logits (B, c); :meth:`embed`: x -> h (B, f).

    >>> proj = CPLearnProjector(16, 8, 32, n=4, seed=0)
    >>> proj(torch.randn(4, 16, generator=torch.Generator().manual_seed(1))).shape
    torch.Size([4, 32])
    """

    def __init__(
        self, in_features: int, f: int, c: int, n: int | None, *, seed: int = 0, eps: float = 1e-8
    ) -> None:
        super().__init__()
        self.in_features = _check_size("in_features", in_features)
        self.f = _check_size("f", f)
        self.c = _check_size("c", c, 2)
        self.n = None if n is None else _check_size("n", n)
        self.eps = _check_code_eps(eps, self.c)
        self.tau = None if self.n is None else cplearn_temperature(self.f, self.n, self.c, self.eps)
        if not _is_integer(seed):
            raise ValueError(f"seed must be an integer; got {seed!r}")
        self.seed = int(seed)
        self.linear = nn.Linear(self.in_features, self.f)
        self.bn = nn.BatchNorm1d(self.f)
        gen = torch.Generator().manual_seed(self.seed)
        codes = torch.randint(0, 2, (self.f, self.c), generator=gen).mul_(2).sub_(1).to(torch.float32)
        self.register_buffer("codes", codes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """h = tanh(BN(Linear(x))): (B, f), the representation whose collapse the paper's claims concern."""
        return torch.tanh(self.bn(self.linear(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, in_features) -> logits hW / tau: (B, c)."""
        tau = self.tau if self.tau is not None else cplearn_temperature(self.f, x.shape[0], self.c, self.eps)
        return (self.embed(x) @ self.codes) / tau

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, f={self.f}, c={self.c}, n={self.n}, seed={self.seed}, eps={self.eps}"


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

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
