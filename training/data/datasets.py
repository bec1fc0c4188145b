"""One split of a dataset of the training pipeline: :func:`load_dataset`, the one entry point of the readers.

``"cifar100"``, ``"tiny-imagenet"``, ``"imagenet"`` (the CLOP paper's, arXiv 2403.18699, Sec. 5),
``"synthetic"`` (a generated CIFAR-format set for smoke runs and tests) and ``"digits"`` (scikit-learn's 8x8
digits), as torch datasets of ``(image, int label)`` with ``targets`` and ``classes`` attributes. Nothing
is downloaded unless ``download=True``.

Example (no network; the synthetic set is generated on first use)::

    >>> import tempfile
    >>> from training.data.datasets import load_dataset
    >>> tmp = tempfile.TemporaryDirectory()
    >>> ds = load_dataset("synthetic", tmp.name, "train")
    >>> len(ds), len(ds.classes), ds[0][0].size
    (500, 10, (32, 32))
    >>> tmp.cleanup()
    >>> digits = load_dataset("digits", "unused", "train")
    >>> len(digits), len(load_dataset("digits", "unused", "test")), tuple(digits[0][0].shape)
    (1438, 359, (1, 8, 8))
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
from torch.utils.data import Dataset

from clop.util.checks import check_choice
from training.data.catalog import DATASETS, SPLITS, check_root
from training.data.cifar import load_cifar100, load_synthetic
from training.data.digits import DigitsDataset
from training.data.folders import load_imagenet, load_tiny_imagenet

__all__ = ["load_dataset"]


def _check_transform(transform: object, name: str = "transform") -> None:
    if transform is not None and not callable(transform):
        raise ValueError(f"{name} must be a callable (PIL image -> anything) or None; got {transform!r}")


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False; got {value!r}")
    return bool(value)


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
            ``root/synthetic/cifar-100-python/...``, written by :func:`training.data.cifar.write_synthetic_cifar` (seed 0) when
            missing. ``"tiny-imagenet"``: ``root`` is the ``tiny-imagenet-200`` folder or a folder that
            contains it. ``"imagenet"``: ``root/train/<wnid>/*`` and ``root/val/<wnid>/*``. ``"digits"``:
            read from scikit-learn (``root`` and ``download`` are checked but not used).
        root: the data folder.
        split: ``"train"`` or ``"test"``; ``"test"`` is the official test split of CIFAR-100, the
            labelled validation split of Tiny-ImageNet and ImageNet, and :func:`training.data.digits.digits_split`'s test part
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
    root_path = check_root(root)
    _check_transform(transform)
    download = _check_bool("download", download)
    train = split == "train"
    if name == "cifar100":
        return load_cifar100(root_path, train, transform, download)
    if name == "synthetic":
        return load_synthetic(root_path, train, transform)
    if name == "digits":
        return DigitsDataset(train, transform)  # shipped with scikit-learn: root and download are not used
    if name == "tiny-imagenet":
        return load_tiny_imagenet(root_path, train, transform, download)
    return load_imagenet(root_path, train, transform)
