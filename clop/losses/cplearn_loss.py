"""CPLearn's loss, its temperature and its projector with fixed codes.

Sansone, Lebailly & Tuytelaars (2025), arXiv 2410.04959: one of the two other remedies for collapse that
the suite checks beside CLOP (arXiv 2403.18699).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from clop.util.checks import check_nonnegative as _check_nonnegative
from clop.util.checks import check_size as _check_size
from clop.util.checks import is_finite_real as _is_finite_real
from clop.util.checks import is_integer as _is_integer

__all__ = ["cplearn", "cplearn_temperature", "CPLearnLoss", "CPLearnProjector"]

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
