"""Linear evaluation of frozen features: a standardised linear classifier and top-k accuracy.

The CLOP paper (arXiv 2403.18699, Sec. 5) reports "top-1 (Figure 6, 7) and top-5
(Appendix B) classification accuracy using the supervised linear classifier" trained on the frozen
ResNet-50 representation, following the linear evaluation protocol of SimCLR (Chen et al. 2020a, "A simple
framework for contrastive learning of visual representations", ICML, Sec. 2.3 "Evaluation protocol"). The paper gives no
optimiser settings for that classifier; the defaults here (100 epochs, batch 256, SGD with Nesterov momentum
0.9, learning rate 0.1 with cosine decay, no weight decay) are a standard choice, and the features are
standardised per dimension first so that one learning rate suits any backbone's feature scale.

>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> y = torch.arange(40) % 2
>>> x = torch.randn(40, 3, generator=g) + 4.0 * y[:, None]       # two well separated blobs
>>> probe = fit_linear_probe(x, y, num_classes=2, epochs=20, batch_size=8, device="cpu")
>>> topk_accuracy(probe(x), y, ks=(1,))
{1: 1.0}
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from clop.util.checks import (
    check_nonnegative,
    check_positive,
    check_size,
    is_finite_real,
    is_integer,
)
from clop.util.device import default_device
from clop.util.progress import progress_bar
from training.optim import warmup_cosine

__all__ = ["LinearProbe", "fit_linear_probe", "topk_accuracy"]

_STATS_CHUNK = 65536  # rows per chunk when computing the feature mean/std in float64


class LinearProbe(nn.Module):
    """``forward(x) = linear((x - mean) / std)``: a linear classifier on standardised features.

    Parameters
    ----------
    in_features : D, the feature dimension.
    num_classes : C.
    mean, std : optional (D,) tensors, the per-feature standardisation (default 0 and 1). Stored as float32
        buffers ``mean`` and ``std`` (they move with ``.to(device)`` and are saved in the state dict);
        ``std`` must be > 0 everywhere.

    ``linear`` is an ``nn.Linear(D, C)``. Input ``x: (N, D)`` (any float dtype; cast to float32) ->
    logits ``(N, C)``.
    """

    def __init__(
        self, in_features: int, num_classes: int, mean: Tensor | None = None, std: Tensor | None = None
    ) -> None:
        super().__init__()
        check_size("in_features", in_features)
        check_size("num_classes", num_classes)
        mean = torch.zeros(in_features) if mean is None else torch.as_tensor(mean).detach()
        std = torch.ones(in_features) if std is None else torch.as_tensor(std).detach()
        for name, t in (("mean", mean), ("std", std)):
            if t.shape != (in_features,):
                raise ValueError(f"{name} must have shape ({in_features},); got {tuple(t.shape)}")
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name} must be finite")
        if not bool((std > 0).all()):
            raise ValueError(f"std must be > 0 everywhere; got min {float(std.min())!r}")
        self.register_buffer("mean", mean.to(torch.float32).clone())
        self.register_buffer("std", std.to(torch.float32).clone())
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, D) -> logits (N, C)."""
        if x.ndim != 2 or x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"x must have shape (N, {self.mean.shape[0]}); got {tuple(x.shape)}")
        return self.linear((x.to(self.mean.dtype) - self.mean) / self.std)


def _feature_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-feature mean and population standard deviation (1/N) of x: (N, D), in float64, chunked.

    Two passes (mean, then the mean of squared deviations) so that large offsets do not cancel. A feature
    with zero spread (e.g. a ReLU unit that is dead on every sample) gets std 1, i.e. it is only centred.
    """
    n = x.shape[0]
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    for start in range(0, n, _STATS_CHUNK):
        total += x[start : start + _STATS_CHUNK].to(torch.float64).sum(0)
    mean = total / n
    sq = torch.zeros_like(total)
    for start in range(0, n, _STATS_CHUNK):
        sq += (x[start : start + _STATS_CHUNK].to(torch.float64) - mean).square().sum(0)
    std = (sq / n).sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std))
    return mean, std


def fit_linear_probe(
    x: Tensor,
    y: Tensor,
    num_classes: int,
    *,
    epochs: int = 100,
    batch_size: int = 256,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> LinearProbe:
    """Train a :class:`LinearProbe` on frozen features by mini-batch softmax regression.

    Parameters
    ----------
    x : (N, D) float features (any device; copied to ``device`` once, as float32).
    y : (N,) integer labels in ``[0, num_classes)``.
    num_classes : C >= 2.
    epochs, batch_size : passes over the data and samples per step; the last batch of an epoch may be
        smaller (no sample is dropped); steps = epochs * ceil(N / batch_size).
    lr, momentum : SGD with Nesterov momentum (plain SGD when ``momentum == 0``); the learning rate
        follows a cosine decay from ``lr`` to 0 over all steps (:func:`training.optim.warmup_cosine` with
        no warm-up).
    weight_decay : L2 penalty (coefficient of ``wd * W`` in the gradient) on the weight matrix only; the
        bias is not decayed, as in :func:`training.optim.param_groups`.
    seed : seeds the shuffling (a CPU ``torch.Generator``); the weights start at zero (the problem is
        convex), so the result is a function of the data and the seed alone: the same seed gives
        bit-identical weights on the same device.
    device : default CUDA when present, else CPU (:func:`clop.util.device.default_device`).
    progress : show a tqdm bar over epochs (stderr, on a terminal only).

    Objective: mean cross-entropy of ``linear((x - mean) / std)`` over the batch, where ``mean`` and ``std``
    are the per-feature mean and population standard deviation of the training ``x`` (std 1 for a
    constant feature). Returns the probe on ``device`` in eval mode. Memory: ``x`` is held on ``device``
    (ImageNet, 1.28M x 2048 float32: 10.5 GB).
    """
    _check_probe_arguments(x, y, num_classes, epochs, batch_size, lr, momentum, weight_decay, seed)
    n, dim = x.shape
    dev = default_device(device)

    x = x.detach().to(device=dev, dtype=torch.float32)
    y = y.detach().to(device=dev, dtype=torch.long)
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x must be finite; it contains NaN or inf")
    mean, std = _feature_stats(x)
    probe = LinearProbe(dim, num_classes, mean=mean, std=std).to(dev)
    with torch.no_grad():
        probe.linear.weight.zero_()
        probe.linear.bias.zero_()

    _train(probe, x, y, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay,
           seed=seed, progress=progress)
    probe.eval()
    return probe


def _check_probe_arguments(x: object, y: object, num_classes: int, epochs: int, batch_size: int, lr: float,
                           momentum: float, weight_decay: float, seed: int) -> None:
    """ValueError naming the argument of :func:`fit_linear_probe` that is out of range."""
    if not isinstance(x, Tensor) or x.ndim != 2 or not x.is_floating_point():
        raise ValueError(f"x must be a 2-D floating-point tensor (N, D); got {_describe(x)}")
    n, dim = x.shape
    if n < 1 or dim < 1:
        raise ValueError(f"x must have N >= 1 rows and D >= 1 columns; got shape {tuple(x.shape)}")
    if not isinstance(y, Tensor) or y.ndim != 1 or y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"y must be a 1-D integer tensor (N,); got {_describe(y)}")
    if y.shape[0] != n:
        raise ValueError(f"y must have length N={n} (rows of x); got {y.shape[0]}")
    check_size("num_classes", num_classes, 2)
    y_min, y_max = int(y.min()), int(y.max())
    if y_min < 0 or y_max >= num_classes:
        raise ValueError(f"y must lie in [0, num_classes={num_classes}); got values in [{y_min}, {y_max}]")
    check_size("epochs", epochs)
    check_size("batch_size", batch_size)
    check_positive("lr", lr)
    if not (is_finite_real(momentum) and 0 <= momentum < 1):
        raise ValueError(f"momentum must be a real number in [0, 1); got {momentum!r}")
    check_nonnegative("weight_decay", weight_decay)
    if not is_integer(seed):
        raise ValueError(f"seed must be an integer; got {seed!r}")


def _train(probe: LinearProbe, x: Tensor, y: Tensor, *, epochs: int, batch_size: int, lr: float, momentum: float,
           weight_decay: float, seed: int, progress: bool) -> None:
    """Mini-batch SGD of ``probe.linear`` on (x, y), both on the probe's device (see :func:`fit_linear_probe`)."""
    n, dev = x.shape[0], x.device
    groups = [
        {"params": [probe.linear.weight], "weight_decay": float(weight_decay)},
        {"params": [probe.linear.bias], "weight_decay": 0.0},
    ]
    opt = torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, total, 0))
    gen = torch.Generator().manual_seed(int(seed))
    loss_fn = nn.CrossEntropyLoss()

    probe.train()
    bar = progress_bar(range(epochs), desc="linear probe", unit="epoch", enabled=progress)
    for _ in bar:
        perm = torch.randperm(n, generator=gen).to(dev)
        loss_sum = torch.zeros((), device=dev)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            loss = loss_fn(probe(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach() * idx.numel()
        if progress:
            bar.set_postfix(loss=f"{float(loss_sum) / n:.4f}", refresh=False)


def _describe(t: object) -> str:
    if isinstance(t, Tensor):
        return f"tensor of shape {tuple(t.shape)} and dtype {t.dtype}"
    return type(t).__name__


def topk_accuracy(logits: Tensor, labels: Tensor, ks: Iterable[int] | int = (1, 5)) -> dict[int, float]:
    """Fraction of samples whose true class is among the k highest logits, for each k in ``ks``.

    logits: (N, C) real; labels: (N,) integers in [0, C); ks: integers in [1, C] (or a single int).
    Returns ``{k: fraction in [0, 1]}``.

    Ties are counted against the prediction: sample i is correct at k when fewer than k OTHER classes have
    a logit ``>=`` the true class's logit, i.e. when its worst-case rank among tied classes is within the
    top k. The result therefore does not depend on the order of the classes, and a constant (collapsed)
    output scores 0 for every k < C instead of a tie-breaking artefact. Without ties this is the usual
    top-k accuracy (sklearn.metrics.top_k_accuracy_score). A row containing NaN counts as wrong.

    ValueError when a k is not in [1, C], when the shapes disagree, N == 0, or a label is out of range.
    """
    if not isinstance(logits, Tensor) or logits.ndim != 2:
        raise ValueError(f"logits must be a 2-D tensor (N, C); got {_describe(logits)}")
    n, c = logits.shape
    if not isinstance(labels, Tensor) or labels.ndim != 1 or labels.is_floating_point():
        raise ValueError(f"labels must be a 1-D integer tensor (N,); got {_describe(labels)}")
    if labels.shape[0] != n:
        raise ValueError(f"labels must have length N={n} (rows of logits); got {labels.shape[0]}")
    if n == 0:
        raise ValueError("logits must have at least one row; got N = 0")
    ks_t = (ks,) if is_integer(ks) else tuple(ks)  # type: ignore[arg-type]
    if not ks_t:
        raise ValueError("ks must contain at least one k; got an empty sequence")
    for k in ks_t:
        if not is_integer(k) or not 1 <= k <= c:
            raise ValueError(f"ks must hold integers in [1, C={c}]; got k={k!r}")
    labels = labels.to(device=logits.device, dtype=torch.long)
    if int(labels.min()) < 0 or int(labels.max()) >= c:
        raise ValueError(f"labels must lie in [0, C={c}); got values in [{int(labels.min())}, {int(labels.max())}]")
    scores = logits.detach()
    true = scores.gather(1, labels[:, None])  # (N, 1)
    others_ge = (scores >= true).sum(1) - 1  # classes other than the true one scoring >= it
    valid = ~torch.isnan(scores).any(1)
    return {int(k): float(((others_ge < k) & valid).double().mean()) for k in ks_t}
