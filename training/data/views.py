"""The pre-training's view of a dataset: the class-stratified labelled fraction and the two augmented views.

The CLOP paper (arXiv 2403.18699, Sec. 5) pre-trains in the SimCLR framework with 10 % of the labels in the
semi-supervised setting (all of them for SupCon):

- :func:`labeled_subset`, :func:`masked_labels`: the class-stratified labelled fraction, and the labels with
  the others hidden (-1, the convention of ``clop.losses``);
- :class:`TwoViewDataset`: two augmented views per image, the (masked) label and the index, drawn under a
  generator seeded with :func:`view_seed` ``(seed, epoch, index)``.

Example (no network; the synthetic set is generated on first use)::

    >>> import tempfile
    >>> from training.data.augment import pretrain_transform
    >>> from training.data.catalog import DATASET_INFO
    >>> from training.data.datasets import load_dataset
    >>> from training.data.views import TwoViewDataset, labeled_subset, masked_labels
    >>> tmp = tempfile.TemporaryDirectory()
    >>> ds = load_dataset("synthetic", tmp.name, "train")
    >>> labels = masked_labels(ds.targets, labeled_subset(ds.targets, 0.1, seed=0))
    >>> int((labels >= 0).sum())
    50
    >>> info = DATASET_INFO["synthetic"]
    >>> views = TwoViewDataset(ds, pretrain_transform("simclr", 32, info.mean, info.std), labels)
    >>> v1, v2, label, index = views[0]
    >>> v1.shape, v1.dtype
    (torch.Size([3, 32, 32]), torch.float32)
    >>> tmp.cleanup()
    >>> digits = load_dataset("digits", "unused", "train")
    >>> info = DATASET_INFO["digits"]
    >>> tuple(pretrain_transform("digits", 8, info.mean, info.std)(digits[0][0]).shape)
    (3, 8, 8)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from clop.util.checks import check_size
from training.data.catalog import as_label_array

__all__ = ["labeled_subset", "masked_labels", "view_seed", "TwoViewDataset"]


def labeled_subset(targets: Sequence[int] | np.ndarray | torch.Tensor, fraction: float, seed: int) -> np.ndarray:
    """Class-stratified random subset of indices: the labelled part of the semi-supervised setting.

    The paper uses 10% of the labels (Sec. 5). From each class ``c`` with ``n_c`` samples, take
    ``k_c = max(1, floor(fraction * n_c + 0.5))`` indices (rounded half up, so ``n_c = 25`` at 10% gives 3)
    drawn without replacement by ``np.random.default_rng(seed)``, classes visited in increasing label order.

    Args:
        targets: ``(N,)`` integer labels >= 0.
        fraction: in ``(0, 1]``; ``1.0`` returns every index.
        seed: integer >= 0.

    Returns:
        sorted int64 indices ``(M,)``, ``M = sum_c k_c``.
    """
    labels = as_label_array("targets", targets)
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, numbers.Real)
        or not math.isfinite(fraction)
        or not 0 < fraction <= 1
    ):
        raise ValueError(f"fraction must be a real number in (0, 1]; got {fraction!r}")
    seed = check_size("seed", seed, 0)
    if fraction == 1:
        return np.arange(labels.size, dtype=np.int64)
    rng = np.random.default_rng(seed)
    order = np.argsort(labels, kind="stable")  # indices grouped by class, increasing within a class
    classes, counts = np.unique(labels, return_counts=True)
    chosen = []
    for idx in np.split(order, np.cumsum(counts)[:-1]):
        k = max(1, math.floor(float(fraction) * idx.size + 0.5))
        chosen.append(rng.choice(idx, size=min(k, idx.size), replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def masked_labels(targets: Sequence[int] | np.ndarray | torch.Tensor, labeled: np.ndarray) -> torch.Tensor:
    """Labels with the unlabelled samples hidden: ``(N,)`` int64 tensor, ``targets[i]`` where ``i`` is in
    ``labeled`` and ``-1`` elsewhere (the convention of ``clop.losses`` for unlabelled samples).

    Args:
        targets: ``(N,)`` integer labels >= 0.
        labeled: ``(M,)`` integer indices in ``[0, N)``, e.g. from :func:`labeled_subset`.
    """
    labels = as_label_array("targets", targets)
    if isinstance(labeled, torch.Tensor):
        labeled = labeled.detach().cpu().numpy()
    idx = np.asarray(labeled)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise ValueError(f"labeled must be a 1-D array of integer indices; got dtype {idx.dtype}, shape {idx.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= labels.size):
        raise ValueError(
            f"labeled must hold indices in [0, {labels.size}); got values from {idx.min()} to {idx.max()}"
        )
    out = torch.full((labels.size,), -1, dtype=torch.long)
    if idx.size:
        sel = torch.from_numpy(idx.astype(np.int64))
        out[sel] = torch.from_numpy(labels)[sel]
    return out


def view_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of the generator that draws the two views of image ``index`` in ``epoch`` of a run with
    ``seed`` (:class:`TwoViewDataset`; :mod:`training.data.loader` seeds its generators with it too)."""
    return ((seed * 1_000_003 + epoch) * 10_000_019 + index) % (2**63)


class TwoViewDataset(Dataset):
    """Two independently augmented views of each image, for SimCLR-style pre-training (Chen et al. 2020a).

    ``ds[i] -> (view1, view2, label, i)``: the views are two separate draws of ``transform`` on the same
    image (float tensors ``(3, S, S)`` for :func:`pretrain_transform`), ``label = int(labels[i])`` is the
    true label or ``-1`` when unlabelled (see :func:`masked_labels`), ``i`` the index in ``base``.
    With ``seed=None`` the randomness is torch's global generator (torchvision's transforms draw from it).
    With an integer ``seed`` the two views of image i in epoch e (see :meth:`set_epoch`) are a pure function
    of (seed, e, i): they are drawn under a forked generator seeded from those three numbers, so they do not
    depend on the number of loader workers, on the process that loads them, or on where a resumed run
    restarted (the pre-training relies on this for exact resumption and for distributed runs).

    Args:
        base: a dataset whose items are ``(PIL image, label)`` (:func:`load_dataset` with ``transform=None``).
        transform: callable PIL image -> tensor.
        labels: ``(len(base),)`` int64 tensor of labels >= -1.
        seed: None, or an int making the views a function of (seed, epoch, index).
    """

    def __init__(self, base: Dataset, transform: Callable, labels: torch.Tensor, seed: int | None = None) -> None:
        if not hasattr(base, "__getitem__") or not hasattr(base, "__len__"):
            raise ValueError(f"base must be a map-style dataset with __getitem__ and __len__; got {base!r}")
        if transform is None or not callable(transform):
            raise ValueError(f"transform must be a callable (PIL image -> tensor); got {transform!r}")
        n = len(base)  # type: ignore[arg-type]
        if (
            not isinstance(labels, torch.Tensor)
            or labels.dtype != torch.long
            or labels.shape != (n,)
            or (n and int(labels.min()) < -1)
        ):
            shown = f"tensor of dtype {labels.dtype} and shape {tuple(labels.shape)}" if isinstance(
                labels, torch.Tensor
            ) else repr(labels)
            raise ValueError(f"labels must be an int64 tensor of shape ({n},) with values >= -1; got {shown}")
        self.base = base
        self.transform = transform
        self.labels = labels.detach().cpu()
        self.seed = None if seed is None else check_size("seed", seed, 0)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose views :meth:`__getitem__` draws (only matters with a seed)."""
        self.epoch = check_size("epoch", epoch, 0)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, Any, int, int]:
        image, _ = self.base[index]
        if self.seed is None:
            return self.transform(image), self.transform(image), int(self.labels[index]), int(index)
        with torch.random.fork_rng(devices=[]):
            # the CPU generator alone (the transforms draw from it): torch.manual_seed would also seed every
            # accelerator's generator, which costs more than a small image's two views
            torch.default_generator.manual_seed(view_seed(self.seed, self.epoch, int(index)))
            v1, v2 = self.transform(image), self.transform(image)
        return v1, v2, int(self.labels[index]), int(index)
