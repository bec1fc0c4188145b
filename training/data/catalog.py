"""What is fixed about each dataset of the CLOP paper's ResNet-50 benchmarks (arXiv 2403.18699, Sec. 5).

The paper pre-trains on CIFAR-100 (Krizhevsky et al. 2009), Tiny-ImageNet (Le & Yang 2015) and ImageNet
(Deng et al. 2009); ``synthetic`` (a generated CIFAR-format set, :mod:`training.data.cifar`) and ``digits``
(scikit-learn's 8x8 digits, :mod:`training.data.digits`) are ours. This module holds

- :data:`DATASETS`, :data:`SPLITS`, :class:`DatasetInfo`, :data:`DATASET_INFO`: the names, the splits, and each
  dataset's class count, native image size and per-channel pixel statistics on the [0, 1] scale;
- :class:`DatasetNotFoundError`, :class:`DatasetCorruptError`: what a reader raises when the files are
  missing or unreadable (the message names the path and how to get the data);
- :func:`check_root`, :func:`as_label_array`: the argument checks every reader shares;
- :func:`check_classes`: the pipelines' check that what was read has the dataset's class count (a folder of
  another dataset in the expected layout would otherwise train, with the class geometry and the CLOP
  prototypes sized for the wrong number of classes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "DATASETS", "SPLITS", "DatasetInfo", "DATASET_INFO", "DatasetNotFoundError", "DatasetCorruptError",
    "check_root", "as_label_array", "check_classes",
]

DATASETS: tuple[str, ...] = ("cifar100", "tiny-imagenet", "imagenet", "synthetic", "digits")
SPLITS: tuple[str, ...] = ("train", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """Fixed facts about a dataset.

    ``image_size`` is the native training crop (pixels per side); ``mean`` and ``std`` are the per-channel
    pixel statistics of the training split on the [0, 1] scale, used by ``Normalize``.
    """

    name: str
    num_classes: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


DATASET_INFO: dict[str, DatasetInfo] = {
    # CIFAR-100 train split, per-channel mean and std over all 50,000 x 32 x 32 pixels (the values in
    # common use; not recomputed here because the data are not shipped).
    "cifar100": DatasetInfo("cifar100", 100, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    # Tiny-ImageNet train split (100,000 images of 64 x 64), per-channel mean and std over all pixels.
    "tiny-imagenet": DatasetInfo("tiny-imagenet", 200, 64, (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)),
    # ImageNet (ILSVRC-2012) train split: the constants of torchvision's and SimCLR's ImageNet pipelines.
    "imagenet": DatasetInfo("imagenet", 1000, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # write_synthetic_cifar() defaults (seed 0): measured over its 500 training images, checked by the tests.
    "synthetic": DatasetInfo("synthetic", 10, 32, (0.4968, 0.5489, 0.4648), (0.1761, 0.1689, 0.1735)),
    # sklearn's digits, training split of digits_split() (1,438 images x 64 pixels, values / 16), the grey
    # channel's mean and std repeated for the three replicated channels; checked by the tests. Native 8 px.
    "digits": DatasetInfo("digits", 10, 8, (0.3055, 0.3055, 0.3055), (0.3761, 0.3761, 0.3761)),
}


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are not where :func:`training.data.datasets.load_dataset` looked.

    The message names the dataset, the exact path(s) looked at, the layout expected and how to get the data.
    """


class DatasetCorruptError(ValueError):
    """A dataset file is there but cannot be read (truncated, damaged, not the expected format).

    The message names the file, what is wrong with it and how to get a good copy.
    """


def check_root(root: object) -> Path:
    """``root`` as a Path (``~`` expanded); ValueError unless it is a non-empty str or os.PathLike."""
    if isinstance(root, bytes) or not isinstance(root, (str, os.PathLike)) or str(root) == "":
        raise ValueError(f"root must be a non-empty str or os.PathLike path; got {root!r}")
    return Path(root).expanduser()


def as_label_array(name: str, targets: object) -> np.ndarray:
    """``targets`` (list, numpy array or tensor of ints >= 0) as a 1-D int64 numpy array."""
    if isinstance(targets, torch.Tensor):
        arr = targets.detach().cpu().numpy()
    else:
        try:
            arr = np.asarray(targets)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a 1-D sequence of integer labels >= 0; got {targets!r}") from None
    if arr.ndim != 1 or arr.size == 0 or not (np.issubdtype(arr.dtype, np.integer)) or (arr < 0).any():
        shown = targets if arr.size <= 10 else f"array of shape {arr.shape} and dtype {arr.dtype}"
        raise ValueError(f"{name} must be a non-empty 1-D sequence of integer labels >= 0; got {shown!r}")
    return arr.astype(np.int64, copy=False)


def check_classes(name: str, dataset: object, root: object) -> None:
    """DatasetCorruptError (a ValueError) naming ``root`` when ``dataset`` (read as ``name`` from ``root``) has
    another number of classes (its ``classes``) than :data:`DATASET_INFO` gives for ``name``."""
    k = DATASET_INFO[name].num_classes
    found = len(getattr(dataset, "classes", ()))
    if found != k:
        raise DatasetCorruptError(
            f"{name}: the data read from {str(root)!r} has {found} classes, but {name} has {k}: it is another "
            f"dataset in the {name} layout; give the --data-root of {name}, or the --dataset these files are")
