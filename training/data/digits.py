"""scikit-learn's 8x8 digits as a dataset of the training pipeline (ours; the CLOP paper has no such run).

The UCI handwritten digits ship inside scikit-learn's wheel (``sklearn.datasets.load_digits``: 1,797 real
8x8 greyscale images, 10 classes; no download, no data folder), so the pipeline runs on real images on any
CPU. The split (:func:`digits_split`) is fixed: seed 0, the same on every machine and run, class-stratified,
a fifth of each class to test: 1,438 train / 359 test images. Pixels 0..16 are scaled to [0, 1]; an item
is a ``torchvision.tv_tensors.Image`` float32 ``(1, 8, 8)``. The transforms of :mod:`training.data.augment`
replicate the grey channel to three (``v2.RGB``), so every encoder takes the digits like the other datasets;
their pre-training policy is ``"digits"`` (no flips: a mirrored digit is another symbol).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from clop.util.checks import check_size
from training.data.catalog import as_label_array

__all__ = ["DIGITS_SPLIT_SEED", "DIGITS_TEST_FRACTION", "digits_split", "DigitsDataset"]

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits of ``sklearn.datasets.load_digits``: images float64 ``(1797, 8, 8)`` with values
    0..16 (ink counts of 4x4 blocks of the 32x32 bitmaps), labels int64 ``(1797,)``."""
    from sklearn.datasets import load_digits  # a core dependency; imported here to keep this module light

    bunch = load_digits()
    return np.asarray(bunch.images, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


def digits_split(labels: np.ndarray | None = None, *, seed: int = DIGITS_SPLIT_SEED,
                 test_fraction: float = DIGITS_TEST_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """The fixed class-stratified train/test split of the digits: (train indices, test indices), sorted int64.

    For each class ``c`` in increasing order, its indices (in ``load_digits`` order) are permuted by one
    ``np.random.default_rng(seed)`` and the first ``floor(test_fraction * n_c + 0.5)`` go to test. With the
    defaults (seed 0, a fifth) that is 36, 36, 35, 37, 36, 36, 36, 36, 35, 36 test images for the digits
    0-9: 359 test, 1,438 train, the same on every machine and in every run (``--seed`` does not change it;
    the tests pin the indices by a checksum). ``labels``: the 1,797 labels (default: load_digits').
    """
    labels = _digits_arrays()[1] if labels is None else as_label_array("labels", labels)
    seed = check_size("seed", seed, 0)
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real) or not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be a real number in (0, 1); got {test_fraction!r}")
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        test.append(members[: math.floor(test_fraction * members.size + 0.5)])
    test_idx = np.sort(np.concatenate(test)).astype(np.int64)
    train_idx = np.setdiff1d(np.arange(labels.size), test_idx).astype(np.int64)
    return train_idx, test_idx


class DigitsDataset(Dataset):
    """One split of the digits: ``ds[i] -> (image, label)``, image a ``tv_tensors.Image`` float32
    ``(1, 8, 8)`` with values in [0, 1] (the 0..16 counts divided by 16), or ``transform(image)``.

    Attributes as the other datasets: ``targets`` (list of int), ``classes`` (``"0"`` .. ``"9"``), and
    ``indices``, the positions of the split's images in ``load_digits()``.
    """

    def __init__(self, train: bool, transform: Callable | None) -> None:
        images, labels = _digits_arrays()
        train_idx, test_idx = digits_split(labels)
        self.indices = train_idx if train else test_idx
        self.data = torch.from_numpy(images[self.indices] / 16.0).to(torch.float32).unsqueeze(1)
        self.targets = [int(c) for c in labels[self.indices]]
        self.classes = [str(c) for c in range(10)]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = tv_tensors.Image(self.data[index].clone())
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]


# ----------------------------------------------------------------------------------------------------
# Image folders: Tiny-ImageNet and ImageNet
# ----------------------------------------------------------------------------------------------------
