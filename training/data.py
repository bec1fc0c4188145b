"""The training-side data plumbing of the CLOP paper's ResNet-50 benchmarks (arXiv 2403.18699, Section 5).

The paper pre-trains a ResNet-50 in the SimCLR framework and uses 10% of the labels in the semi-supervised
setting. This module provides:

- :func:`load_dataset`: the paper's three datasets, ``"synthetic"`` (a small generated CIFAR-format set for
  smoke runs and tests) and ``"digits"`` (ours, see :mod:`training.datasets`) as torch datasets of
  ``(image, int label)`` with ``targets`` and ``classes`` attributes; the image is a PIL RGB image, for
  digits a float tensor image. Nothing is downloaded unless ``download=True``.
- :func:`labeled_subset`, :func:`masked_labels`: the class-stratified labelled fraction.
- :class:`TwoViewDataset`: two augmented views per image, the (masked) label and the index, drawn under a
  generator seeded with :func:`view_seed` ``(seed, epoch, index)``.

It is also the one import point of the training code and the tests: it re-exports the public names of
:mod:`training.datasets` (the dataset facts and errors, :func:`digits_split`), :mod:`training.cifar`
(:func:`write_synthetic_cifar`) and :mod:`training.augment` (:func:`pretrain_transform`,
:func:`eval_transform`, :class:`DigitsPolicy`, the policies), so ``training.data.<name>`` keeps working.

Example (no network; the synthetic set is generated on first use)::

    >>> import tempfile
    >>> from training.data import DATASET_INFO, TwoViewDataset, labeled_subset, load_dataset
    >>> from training.data import masked_labels, pretrain_transform
    >>> tmp = tempfile.TemporaryDirectory()
    >>> ds = load_dataset("synthetic", tmp.name, "train")
    >>> len(ds), len(ds.classes), ds[0][0].size
    (500, 10, (32, 32))
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
    >>> len(digits), len(load_dataset("digits", "unused", "test")), tuple(digits[0][0].shape)
    (1438, 359, (1, 8, 8))
    >>> info = DATASET_INFO["digits"]
    >>> tuple(pretrain_transform("digits", 8, info.mean, info.std)(digits[0][0]).shape)
    (3, 8, 8)
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import datasets as tv_datasets  # noqa: F401 - re-exported: tests patch tv_datasets.CIFAR100

from clop.util.checks import check_choice, check_size

# The readers and the augmentations live in their own modules; their public names are re-exported here, so
# that training.data stays the one import point of the training scripts and the tests.
from training.augment import (  # noqa: F401
    DIGITS_BRIGHTNESS,
    DIGITS_CONTRAST,
    DIGITS_JITTER_P,
    DIGITS_MAX_SHIFT,
    DIGITS_NOISE_SIGMA,
    DIGITS_SCALE,
    FLIPPING_POLICIES,
    POLICIES,
    DigitsPolicy,
    default_policy,
    eval_transform,
    pretrain_transform,
)
from training.cifar import CIFAR100_URL, CIFAR_FILES, CIFAR_FOLDER, write_synthetic_cifar  # noqa: F401
from training.cifar import _load_cifar100, _load_synthetic
from training.datasets import (  # noqa: F401
    DATASET_INFO,
    DATASETS,
    DIGITS_SPLIT_SEED,
    DIGITS_TEST_FRACTION,
    SPLITS,
    TINY_IMAGENET_FOLDER,
    TINY_IMAGENET_MD5,
    TINY_IMAGENET_URL,
    DatasetCorruptError,
    DatasetInfo,
    DatasetNotFoundError,
    _as_label_array,
    _check_root,
    _Digits,
    _load_imagenet,
    _load_tiny_imagenet,
    digits_split,
)

__all__ = [
    "DATASETS",
    "SPLITS",
    "POLICIES",
    "DatasetInfo",
    "DATASET_INFO",
    "DatasetNotFoundError",
    "DatasetCorruptError",
    "load_dataset",
    "write_synthetic_cifar",
    "digits_split",
    "default_policy",
    "labeled_subset",
    "masked_labels",
    "TwoViewDataset",
    "view_seed",
    "pretrain_transform",
    "DigitsPolicy",
    "eval_transform",
]


# ----------------------------------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------------------------------


def _check_transform(transform: object, name: str = "transform") -> None:
    if transform is not None and not callable(transform):
        raise ValueError(f"{name} must be a callable (PIL image -> anything) or None; got {transform!r}")


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False; got {value!r}")
    return bool(value)


# ----------------------------------------------------------------------------------------------------
# Public loader
# ----------------------------------------------------------------------------------------------------


def load_dataset(
    name: str,
    root: str | os.PathLike,
    split: str,
    transform: Callable | None = None,
    *,
    download: bool = False,
) -> Dataset:
    """One split of a dataset as a torch ``Dataset`` of ``(image, int label)``.

    Args:
        name: one of :data:`DATASETS`.
            ``"cifar100"``: ``root/cifar-100-python/{train,test,meta}`` (torchvision's layout; ``root`` may
            also be the ``cifar-100-python`` folder itself). ``"synthetic"``:
            ``root/synthetic/cifar-100-python/...``, written by :func:`write_synthetic_cifar` (seed 0) when
            missing. ``"tiny-imagenet"``: ``root`` is the ``tiny-imagenet-200`` folder or a folder that
            contains it. ``"imagenet"``: ``root/train/<wnid>/*`` and ``root/val/<wnid>/*``. ``"digits"``:
            read from scikit-learn (``root`` and ``download`` are checked but not used).
        root: the data folder.
        split: ``"train"`` or ``"test"``; ``"test"`` is the official test split of CIFAR-100, the
            labelled validation split of Tiny-ImageNet and ImageNet, and :func:`digits_split`'s test part
            for digits. Both splits of a dataset share one class -> index map (sorted class names / wnids).
        transform: applied to the image (PIL RGB; for digits a float tensor image ``(1, 8, 8)`` in
            [0, 1]); ``None`` returns the image.
        download: fetch CIFAR-100 (torchvision, md5-checked) or Tiny-ImageNet (``download_and_extract_archive``)
            when missing. Default ``False``: nothing touches the network. ImageNet cannot be downloaded.

    Returns:
        a ``Dataset`` with ``targets: list[int]`` (len N) and ``classes: list[str]``; ``ds[i]`` is
        ``(image, label)``.

    Raises:
        DatasetNotFoundError: the files are missing (the message says where it looked and how to get them).
        ValueError: a bad argument (the message names it).
    """
    name = check_choice("name", name, DATASETS)
    split = check_choice("split", split, SPLITS)
    root_path = _check_root(root)
    _check_transform(transform)
    download = _check_bool("download", download)
    train = split == "train"
    if name == "cifar100":
        return _load_cifar100(root_path, train, transform, download)
    if name == "synthetic":
        return _load_synthetic(root_path, train, transform)
    if name == "digits":
        return _Digits(train, transform)  # shipped with scikit-learn: root and download are not used
    if name == "tiny-imagenet":
        return _load_tiny_imagenet(root_path, train, transform, download)
    return _load_imagenet(root_path, train, transform)


# ----------------------------------------------------------------------------------------------------
# Labelled subsets
# ----------------------------------------------------------------------------------------------------


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
    labels = _as_label_array("targets", targets)
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
    labels = _as_label_array("targets", targets)
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
    ``seed`` (:class:`TwoViewDataset`; :mod:`training.loader` seeds its generators with it too)."""
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
