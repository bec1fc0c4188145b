"""Optimisation for SimCLR-style pre-training: the LARS optimiser, its parameter groups, and the
warm-up + cosine learning-rate schedule.

The CLOP paper (arXiv 2403.18699, Sec. 5) pre-trains ResNet-50 "in the SimCLR
framework" with learning rate 0.3 x batch/256. SimCLR (Chen, Kornblith, Norouzi & Hinton 2020a, "A simple
framework for contrastive learning of visual representations", ICML, Sec. 2.3 "Default setting") trains with
LARS (You, Gitman & Ginsburg 2017, "Large batch training of convolutional networks", arXiv:1708.03888,
Eq. 6 and Alg. 1), learning rate 0.3 x batch/256, weight decay 1e-6, a linear warm-up for the first 10
epochs and cosine decay without restarts (Loshchilov & Hutter 2017, "SGDR"). Momentum 0.9, trust
coefficient 1e-3 and the exclusion of BatchNorm and bias parameters from both weight decay and the LARS
adaptation are the settings of SimCLR's released LARS optimiser (google-research/simclr). The defaults
below are those settings. ``torch.optim`` has no LARS; :class:`LARS` is written here from the formula.
:data:`OPTIMIZERS` names the two optimisers of ``--optimizer`` (:func:`training.engine.build.build_optimizer`).
This module sits beside the packages because the engine (LARS, the schedule) and the probe (the schedule)
both use it.

>>> import torch
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
>>> opt = LARS(param_groups(model, weight_decay=1e-6), lr=0.3 * 512 / 256)
>>> [g["lars_adaptation"] for g in opt.param_groups]  # Linear weight; Linear bias + BN weight/bias
[True, False]
>>> sched = make_scheduler(opt, total_steps=100, warmup_steps=10)
>>> round(opt.param_groups[0]["lr"], 6)  # step 0 of the warm-up: base_lr * 1/10
0.06
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from clop.util.checks import check_nonnegative, check_size, is_finite_real, is_integer

__all__ = ["OPTIMIZERS", "LARS", "param_groups", "warmup_cosine", "make_scheduler"]

OPTIMIZERS = ("lars", "sgd")
"""lars: SimCLR's (the paper's framework); sgd: momentum SGD, the same but for the trust ratio."""


def _check_hyper(group: dict[str, Any], where: str = "") -> None:
    """ValueError naming the hyper-parameter when a LARS hyper-parameter is out of range."""
    checks = (
        ("lr", lambda v: is_finite_real(v) and v >= 0, "a finite real number >= 0"),
        ("momentum", lambda v: is_finite_real(v) and 0 <= v < 1, "a real number in [0, 1)"),
        ("weight_decay", lambda v: is_finite_real(v) and v >= 0, "a finite real number >= 0"),
        ("trust_coefficient", lambda v: is_finite_real(v) and v > 0, "a finite real number > 0"),
        ("eps", lambda v: is_finite_real(v) and v >= 0, "a finite real number >= 0"),
        ("lars_adaptation", lambda v: isinstance(v, bool), "a bool"),
    )
    for name, ok, accepted in checks:
        value = group[name]
        if not ok(value):
            raise ValueError(f"{name}{where} must be {accepted}; got {value!r}")


class LARS(torch.optim.Optimizer):
    r"""Layer-wise Adaptive Rate Scaling (You et al. 2017) with SimCLR's settings (Chen et al. 2020a).

    For every parameter tensor ``p`` (one "layer" in You et al.'s sense) that has a gradient ``g``, with
    the hyper-parameters of its group (``lr``, ``momentum`` m, ``weight_decay`` wd, ``trust_coefficient``
    eta, ``eps``, ``lars_adaptation``), one :meth:`step` does, in this order::

        d     = g + wd * p                                           # L2 weight decay
        if lars_adaptation and ||p|| > 0 and ||d|| > 0:
            d = d * (eta * ||p|| / (||d|| + eps))                    # the trust ratio
        buf   = d                      on the first step of p        # PyTorch SGD convention
        buf   = m * buf + d            on every later step
        p     = p - lr * buf

    Norms are Euclidean norms of the whole tensor ``p`` (resp. ``d``), computed in its dtype. The
    trust ratio is 1 (plain momentum SGD on ``d``) when ``lars_adaptation`` is False, when ``||p|| == 0``
    (e.g. a zero-initialised layer: a trust ratio of 0 would freeze it for ever) or when ``||d|| == 0``.

    Choices made here, against the two sources:

    * Trust-ratio denominator. You et al. (2017, Alg. 1) write the local rate as
      eta ||w|| / (||grad|| + wd ||w||); SimCLR's LARS uses the norm of the decayed gradient,
      eta ||w|| / ||grad + wd w||. We follow SimCLR (the framework CLOP uses): ``||d||`` with ``d`` the
      decayed gradient.
    * ``eps`` is added to ``||d||`` in the denominator, and only there (not to ``||p||``). With the default
      1e-8 it changes nothing measurable for real gradients; ``eps=0`` is exactly the ratio above. Its job
      is to bound the adapted step: ``||eta ||p|| d / (||d|| + eps)|| = eta ||p|| * ||d|| / (||d|| + eps)``
      which is < eta ||p|| and goes smoothly to 0 as ``d`` does, instead of jumping to eta ||p|| for a
      vanishing but non-zero ``d``.
    * Momentum follows :class:`torch.optim.SGD` (dampening 0, no Nesterov): the buffer accumulates the
      adapted direction ``d`` and the learning rate multiplies the buffer (``p -= lr * buf``); the first
      step sets ``buf = d``, which equals starting from a zero buffer. SimCLR's TensorFlow LARS instead
      puts the learning rate inside the buffer (``v = m v + lr * trust * d; p -= v``); the two agree while
      ``lr`` is constant and differ slightly while a schedule changes it.

    Parameters
    ----------
    params : iterable of tensors or of dicts (parameter groups, e.g. from :func:`param_groups`).
    lr : float >= 0. SimCLR / CLOP Sec. 5: 0.3 x batch_size / 256 (scaled by the schedule).
    momentum : float in [0, 1), default 0.9 (SimCLR's released LARS).
    weight_decay : float >= 0, default 1e-6 (Chen et al. 2020a).
    trust_coefficient : float > 0, the eta of You et al. (2017); default 1e-3 (SimCLR's released LARS).
    eps : float >= 0, default 1e-8 (see above).

    Every group also carries ``lars_adaptation`` (bool, default True); :func:`param_groups` sets it to
    False, with ``weight_decay=0``, for biases and BatchNorm parameters as SimCLR does. Bad values, in the
    constructor or in any group, raise ``ValueError`` naming the hyper-parameter. Works on CPU and CUDA:
    the step never moves a tensor to the host (the trust-ratio branches are ``torch.where``). Sparse
    gradients are not supported (ValueError).

    >>> w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))       # ||w|| = 5
    >>> w.grad = torch.tensor([0.0, 1.0])
    >>> opt = LARS([w], lr=1.0, weight_decay=0.0, trust_coefficient=0.1, eps=0.0)
    >>> _ = opt.step()                                         # d = (0, 1) * 0.1 * 5 / 1
    >>> w.detach()
    tensor([3.0000, 3.5000])
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 1e-6,
        trust_coefficient: float = 1e-3,
        eps: float = 1e-8,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            trust_coefficient=trust_coefficient,
            eps=eps,
            lars_adaptation=True,
        )
        _check_hyper(defaults)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """As :meth:`torch.optim.Optimizer.add_param_group`, then validate the group's hyper-parameters."""
        super().add_param_group(param_group)
        index = len(self.param_groups) - 1
        _check_hyper(self.param_groups[index], where=f" (param group {index})")

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("lars_adaptation", True)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One LARS update of every parameter that has a ``.grad``; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr = group["lr"]
            momentum = group["momentum"]
            weight_decay = group["weight_decay"]
            eta = group["trust_coefficient"]
            eps = group["eps"]
            adapt = group["lars_adaptation"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise ValueError("LARS does not support sparse gradients; got a sparse .grad")
                d = grad.add(p, alpha=weight_decay) if weight_decay != 0 else grad.clone()
                if adapt:
                    p_norm = torch.linalg.vector_norm(p)
                    d_norm = torch.linalg.vector_norm(d)
                    ratio = torch.where(
                        (p_norm > 0) & (d_norm > 0),
                        eta * p_norm / (d_norm + eps),
                        torch.ones_like(p_norm),
                    )
                    d.mul_(ratio)
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = d
                    state["momentum_buffer"] = buf
                else:
                    buf.mul_(momentum).add_(d)
                p.add_(buf, alpha=-lr)
        return loss


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split ``model``'s trainable parameters into SimCLR's two LARS groups.

    Chen et al. (2020a) exclude "batch normalization and bias parameters" from weight decay and from the
    LARS adaptation. Here a parameter is excluded when ``p.ndim <= 1``: that covers every bias and the
    weights and biases of BatchNorm / LayerNorm / GroupNorm, while convolution and linear weights
    (ndim >= 2) are adapted.

    Returns up to two dicts, in this order, empty ones dropped:

    * ``{"params": [...], "weight_decay": weight_decay, "lars_adaptation": True}`` (ndim >= 2),
    * ``{"params": [...], "weight_decay": 0.0, "lars_adaptation": False}`` (ndim <= 1).

    Parameters with ``requires_grad=False`` are left out; a parameter shared by several modules appears
    once (``model.named_parameters()`` deduplicates). Order within a group is the model's order.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    check_nonnegative("weight_decay", weight_decay)
    adapted: list[nn.Parameter] = []
    excluded: list[nn.Parameter] = []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (excluded if p.ndim <= 1 else adapted).append(p)
    groups = [
        {"params": adapted, "weight_decay": float(weight_decay), "lars_adaptation": True},
        {"params": excluded, "weight_decay": 0.0, "lars_adaptation": False},
    ]
    return [g for g in groups if g["params"]]


def _check_schedule(total_steps: object, warmup_steps: object) -> None:
    check_size("total_steps", total_steps)
    if not is_integer(warmup_steps) or not 0 <= warmup_steps <= total_steps:
        raise ValueError(
            f"warmup_steps must be an integer with 0 <= warmup_steps <= total_steps={total_steps}; "
            f"got {warmup_steps!r}"
        )


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate multiplier at optimiser step ``step`` (0-based): linear warm-up, then cosine decay.

    ::

        (step + 1) / warmup_steps                                        if step < warmup_steps
        0.5 * (1 + cos(pi * (step - warmup_steps) / max(1, total_steps - warmup_steps)))   otherwise

    SimCLR (Chen et al. 2020a): linear warm-up for the first 10 epochs, then cosine decay without
    restarts (Loshchilov & Hutter 2017). The warm-up starts at 1/warmup_steps rather than 0 so that the
    first step moves the weights; it reaches 1 at ``step = warmup_steps - 1`` and the cosine starts at 1 at
    ``step = warmup_steps``. The cosine reaches 0 at ``step = total_steps`` (the value after the last of
    ``total_steps`` steps); steps beyond ``total_steps`` keep the value at ``total_steps`` (0, or 1 when
    ``warmup_steps == total_steps``, a warm-up-only schedule). Values lie in (0, 1] for
    ``step < total_steps``.

    ValueError for ``total_steps < 1``, ``warmup_steps`` outside ``[0, total_steps]``, ``step < 0`` or
    non-integers.
    """
    _check_schedule(total_steps, warmup_steps)
    check_size("step", step, 0)
    step = min(int(step), total_steps)
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A :class:`~torch.optim.lr_scheduler.LambdaLR` with multiplier :func:`warmup_cosine`.

    Call ``scheduler.step()`` once after every ``optimizer.step()``; at optimiser step ``s`` (0-based) each
    group's ``lr`` is then ``initial_lr * warmup_cosine(s, total_steps, warmup_steps)``. Steps, not epochs:
    SimCLR's 10 warm-up epochs are ``warmup_steps = 10 * steps_per_epoch``. ValueError as in
    :func:`warmup_cosine`.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError(f"optimizer must be a torch.optim.Optimizer; got {type(optimizer).__name__}")
    _check_schedule(total_steps, warmup_steps)
    fn = functools.partial(warmup_cosine, total_steps=int(total_steps), warmup_steps=int(warmup_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
