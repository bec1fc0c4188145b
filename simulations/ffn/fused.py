"""Fused training of stacked FFN runs for the synthetic 3-D experiment (CLOP paper, arXiv 2403.18699, Sec. 4).

The same training as the autograd engine of :mod:`simulations.ffn.autograd` (same network, data, views, batch
order, losses and Adam), written out by hand for S independent runs at once: the forward pass of the three
layers keeps its activations, the gradient of every run's loss with respect to its outputs comes in closed
form from :mod:`simulations.ffn.grads`, the backward pass through the layers is six batched products, and
Adam updates one flat (S, P) parameter buffer in six element-wise operations. A step is about 50 tensor
operations whatever the loss, none of them in autograd or vmap.

Network (run s): ``h1 = relu(x W1 + b1)``, ``h2 = relu(h1 W2 + b2)``, ``z = h2 W3 + b3`` with x: (S, 2B, 3);
backward: ``dW3 = h2^T g``, ``db3 = sum g``, ``g2 = (g W3^T) [h2 > 0]``, ``dW2 = h1^T g2``, ``db2 = sum g2``,
``g1 = (g2 W2^T) [h1 > 0]``, ``dW1 = x^T g1``, ``db1 = sum g1``. Adam exactly as ``torch.optim.Adam``'s
single-tensor code (betas 0.9, 0.999, eps 1e-8, no weight decay): ``m <- lerp(m, g, 1 - b1)``,
``v <- b2 v + (1 - b2) g^2``, ``p <- p - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.

The same formulas run either as torch operations on the S stacked runs (any device) or in the native kernel
of :mod:`simulations.ffn.native`, one run at a time (:func:`train_chunk`'s ``kernel``). In exact arithmetic
every run follows the autograd engine's trajectory; in float32 the sums come in another order (the closed
forms, one product for two), so the per-run numbers differ by round-off that training amplifies (how much,
for Table 5: docs/performance.md). Inputs and outputs follow :func:`simulations.ffn.train.train_runs`;
:func:`train_chunk` is its per-chunk step.
"""

from __future__ import annotations

from typing import Callable

import torch

from simulations.ffn import native
from simulations.ffn.grads import CLOP_LAMBDA, LOSS_PARAMS, loss_grad

__all__ = ["ADAM_BETAS", "ADAM_EPS", "Network", "row_prototypes", "train_chunk"]

ADAM_BETAS = (0.9, 0.999)
"""Adam's betas (torch.optim.Adam's defaults, as the autograd engine uses them)."""
ADAM_EPS = 1e-8
"""Adam's eps (torch.optim.Adam's default)."""

Draw = Callable[[], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
"""() -> (v1, v2, order): one epoch's two views of every point, (S, N, 3) each, and the point order (S, N)."""


class Network:
    """S stacked FFNs with their parameters in one flat (S, P) buffer, Adam state beside it.

    params: [W1 (S, d, h), b1 (S, 1, h), W2 (S, h, h), b2 (S, 1, h), W3 (S, h, d), b3 (S, 1, d)] as
    :func:`simulations.ffn.train.init_params` returns them (copied, not modified).
    """

    def __init__(self, params: list[torch.Tensor], lr: float):
        s_ = params[0].shape[0]
        self.shapes = [tuple(p.shape[1:]) for p in params]
        self.flat = torch.cat([p.reshape(s_, -1) for p in params], dim=1).contiguous()
        self.views: list[torch.Tensor] = []
        start = 0
        for shape in self.shapes:
            size = shape[0] * shape[1]
            self.views.append(self.flat[:, start : start + size].view(s_, *shape))
            start += size
        self.m = torch.zeros_like(self.flat)
        self.v = torch.zeros_like(self.flat)
        self.lr = lr
        self.t = 0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(h1, h2, z) for x: (S, R, d)."""
        w1, b1, w2, b2, w3, b3 = self.views
        h1 = torch.baddbmm(b1, x, w1).relu_()
        h2 = torch.baddbmm(b2, h1, w2).relu_()
        return h1, h2, torch.baddbmm(b3, h2, w3)

    def backward(self, x: torch.Tensor, h1: torch.Tensor, h2: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """The flat gradient (S, P) of the loss whose gradient with respect to z is g: (S, R, d)."""
        _, _, w2, _, w3, _ = self.views
        g2 = torch.ops.aten.threshold_backward(torch.bmm(g, w3.transpose(1, 2)), h2, 0)
        g1 = torch.ops.aten.threshold_backward(torch.bmm(g2, w2.transpose(1, 2)), h1, 0)
        parts = [torch.bmm(x.transpose(1, 2), g1), g1.sum(dim=1), torch.bmm(h1.transpose(1, 2), g2), g2.sum(dim=1),
                 torch.bmm(h2.transpose(1, 2), g), g.sum(dim=1)]
        return torch.cat([p.reshape(p.shape[0], -1) for p in parts], dim=1)

    def adam_step(self, grad: torch.Tensor) -> None:
        """One Adam step on the flat buffer (torch.optim.Adam's single-tensor arithmetic)."""
        b1, b2 = ADAM_BETAS
        self.t += 1
        bias1 = 1 - b1**self.t
        bias2_sqrt = (1 - b2**self.t) ** 0.5
        self.m.lerp_(grad, 1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (self.v.sqrt() / bias2_sqrt).add_(ADAM_EPS)
        self.flat.addcdiv_(self.m, denom, value=-self.lr / bias1)


def row_prototypes(labels: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """(S, N, D): the unit prototype of each labeled point's class, zero rows for the unlabeled points."""
    unit = protos / torch.linalg.vector_norm(protos, dim=-1, keepdim=True).clamp_min(1e-6)
    rows = torch.arange(labels.shape[0], device=labels.device)[:, None]
    picked = unit[rows, labels.clamp_min(0)]
    return torch.where((labels >= 0)[..., None], picked, torch.zeros((), dtype=unit.dtype, device=unit.device))


def train_chunk(loss: str, use_clop: bool, x: torch.Tensor, labels: torch.Tensor, protos: torch.Tensor,
                params: list[torch.Tensor], draw: Draw, *, epochs: int, batch_size: int, lr: float,
                progress=None, history: list | None = None, kernel=None) -> torch.Tensor:
    """Train the S stacked runs through all epochs; returns f(x): (S, N, d).

    x: (S, N, d) clean inputs; labels: (S, N), -1 = unlabeled; protos: (S, k, d) prototypes; params: the
    initial weights (:class:`Network`); draw: the epoch's views and point order (:data:`Draw`), called once
    per epoch. ``progress.update(S)`` once per epoch; ``history`` gets one (S,) tensor per epoch, the base
    loss averaged over the epoch's batches (as the autograd engine records it). ``kernel``: a native kernel
    (:func:`simulations.ffn.native.open_kernel`) to run the same formulas in, one run at a time (CPU tensors
    only); None: torch operations on x's device.
    """
    row_protos = row_prototypes(labels, protos) if use_clop else None
    args = (loss, x, row_protos, params, draw, epochs, batch_size, lr, progress, history)
    return _train_native(kernel, *args) if kernel is not None else _train_torch(*args)


def _train_native(lib, loss, x, row_protos, params, draw, epochs, batch_size, lr, progress, history):
    """:func:`train_chunk` in the native kernel (:class:`simulations.ffn.native.Kernel`), one call per epoch."""
    state = native.Kernel(lib, params, batch_size, x.shape[1])
    settings = native.loss_settings(loss, LOSS_PARAMS[loss])
    for _ in range(epochs):
        v1, v2, order = draw()
        value = state.epoch(v1, v2, order, row_protos, loss, settings, CLOP_LAMBDA, lr, ADAM_BETAS, ADAM_EPS,
                            history is not None)
        if history is not None:
            history.append(torch.from_numpy(value).to(torch.float32))
        if progress is not None:
            progress.update(x.shape[0])
    return state.forward(x).to(x.dtype)


def _train_torch(loss, x, row_protos, params, draw, epochs, batch_size, lr, progress, history):
    """:func:`train_chunk` as torch operations on S stacked runs (:class:`Network`, :func:`loss_grad`)."""
    net = Network(params, lr)
    s_, n, _ = x.shape
    rows = torch.arange(s_, device=x.device)[:, None]
    want_value = history is not None
    for _ in range(epochs):
        v1, v2, order = draw()
        v1, v2 = v1[rows, order], v2[rows, order]
        p_epoch = row_protos[rows, order] if row_protos is not None else None
        total = torch.zeros(s_, dtype=x.dtype, device=x.device) if want_value else None
        batches = 0
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            xb = torch.cat([v1[:, start:stop], v2[:, start:stop]], dim=1)
            pb = None
            if p_epoch is not None:
                pb = p_epoch[:, start:stop]
                pb = torch.cat([pb, pb], dim=1)
            h1, h2, z = net.forward(xb)
            g, value = loss_grad(loss, z, pb, with_value=want_value)
            net.adam_step(net.backward(xb, h1, h2, g))
            if total is not None:
                total += value
            batches += 1
        if history is not None:
            history.append((total / max(batches, 1)).cpu())
        if progress is not None:
            progress.update(s_)
    with torch.no_grad():
        return net.forward(x)[2]
