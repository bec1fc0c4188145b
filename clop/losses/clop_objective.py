"""The CLOP paper's own losses: the CLOP term of Eq. (4) with its prototypes, and L_class of Eq. (3).

"Preventing collapse in contrastive learning with orthonormal prototypes" (CLOP), arXiv 2403.18699.
:func:`clop_term` is the prototype-pulling term, :class:`CLOPLoss` holds it with its prototypes as a
buffer, :class:`CLOPObjective` adds it to any contrastive module of :mod:`clop.losses` (Eq. (4));
:func:`l_class` is the class-embedding loss that Theorem 1 analyses (Eq. (3)).
"""

from __future__ import annotations

import torch
from torch import nn

from clop import prototypes as _prototypes
from clop.losses.common import check_embeddings, check_labels, check_pair, unit_rows
from clop.losses.contrastive import SupConLoss, supcon_unchecked
from clop.util.checks import check_choice as _check_choice
from clop.util.checks import check_dtype as _check_dtype
from clop.util.checks import check_nonnegative as _check_nonnegative
from clop.util.checks import check_size as _check_size
from clop.util.device import default_device

__all__ = ["SIMILARITIES", "REDUCTIONS", "PROTOTYPE_KINDS", "clop_term", "l_class", "CLOPLoss", "CLOPObjective"]

SIMILARITIES = ("cosine", "euclidean", "manhattan")
REDUCTIONS = ("sum", "mean", "batch")
PROTOTYPE_KINDS = ("orthonormal", "simplex_etf")
_PROTOTYPE_ALIASES = {"orthonormal": "orthonormal", "simplex_etf": "simplex_etf", "etf": "simplex_etf"}


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
    that); they are cast to z's dtype. Normalisation divides by max(||z||, 1e-6) (:mod:`clop.losses.common`).

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
    z = check_embeddings("z", z)
    similarity = _check_choice("similarity", similarity, SIMILARITIES)
    reduction = _check_choice("reduction", reduction, REDUCTIONS)
    lam = _check_nonnegative("lam", lam)
    k = _check_prototypes(prototypes, z)
    labels = check_labels(labels, z.shape[0], z.device, num_classes=k)
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
    u = unit_rows(zs)
    if similarity == "cosine":
        dissim = 1.0 - (u * unit_rows(c)).sum(dim=1)
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
# Modules: the prototypes as state, and Eq. (4) as a whole
# --------------------------------------------------------------------------------------------


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
            z1, z2 = check_pair(z1, z2)
            t = self.base.temperature
            clop = self.clop
            k = _check_prototypes(clop.prototypes, z1)
            labels = check_labels(labels, z1.shape[0], z1.device, num_classes=k)
            contrastive = supcon_unchecked(z1, z2, labels, t)
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
