"""Scale-invariant weights of a network, and holding their norms fixed during training (``--hold-weight-norms``).

A weight ``w`` is *scale-invariant* when the network's output does not change if ``w`` is multiplied by a
positive number: BatchNorm divides its input by the input's standard deviation over the batch, so the weight of a
convolution or linear layer without bias whose output goes only into a BatchNorm is scale-invariant (in training
mode, where BatchNorm uses the batch's statistics). For such a weight the gradient is orthogonal to ``w`` and
scales as 1/||w||, so plain gradient descent turns ``w`` by an angle of about ``lr ||g_1|| / ||w||^2`` per step
(``g_1`` the gradient at unit norm) while its norm grows, ``||w||^2 -> ||w||^2 + lr^2 ||g||^2``: a large learning
rate makes the weights grow until the effective step ``lr / ||w||^2`` is small again. :func:`hold_norms` removes
that mechanism: after every optimiser step it puts each such weight back to its norm at initialisation (Van
Laarhoven 2017, "L2 regularization versus batch and weight normalization", arXiv:1706.05350, derives the
effective step; the ladder's rung 3, docs/ladder.md, uses it to test whether the growth explains why the digits
CNN does not collapse).

:func:`scale_invariant_weights` finds these weights by tracing the network with ``torch.fx``: a
``Conv*d`` or ``Linear`` module without bias all of whose uses are BatchNorm modules. For :class:`SmallConvNet`
these are its three convolutions and the projection head's first linear layer; for the ResNets every
convolution. Other weights (the head's output layer, BatchNorm's own scale and shift, biases) are left alone.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["hold_norms", "scale_invariant_weights"]

_LINEAR = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def scale_invariant_weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(qualified name, parameter) of every weight of ``model`` that only feeds BatchNorm (module docstring), in
    the order of the traced graph. ``model`` must be traceable by ``torch.fx`` (the networks of
    :mod:`training.engine.model` are)."""
    import torch.fx

    graph = torch.fx.symbolic_trace(model).graph
    modules = dict(model.named_modules())
    found: list[tuple[str, nn.Parameter]] = []
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        mod = modules[node.target]
        if not isinstance(mod, _LINEAR) or mod.bias is not None or not node.users:
            continue
        if all(u.op == "call_module" and isinstance(modules[u.target], _BatchNorm) for u in node.users):
            found.append((f"{node.target}.weight", mod.weight))
    return found


def hold_norms(optimizer: torch.optim.Optimizer, params: list[nn.Parameter]) -> torch.utils.hooks.RemovableHandle:
    """Register a step hook on ``optimizer`` that, after every :meth:`step`, rescales each of ``params`` to the
    norm it has now (call this before the first step: at initialisation). Returns the hook's handle.

    The norms are kept by the hook, not in the optimiser's state: a resumed run rebuilds them from the same
    initial weights (the same seed), so its numbers are those of an uninterrupted run. A parameter whose norm
    becomes 0 is left at 0.
    """
    params = list(params)
    if not params:
        raise ValueError("hold_norms: params is empty; there is no scale-invariant weight to hold")
    norms = [torch.linalg.vector_norm(p.detach()).clone() for p in params]

    @torch.no_grad()
    def _restore(opt, args, kwargs) -> None:
        for p, n in zip(params, norms):
            now = torch.linalg.vector_norm(p)
            p.mul_(torch.where(now > 0, n / now, torch.ones_like(now)))

    return optimizer.register_step_post_hook(_restore)
