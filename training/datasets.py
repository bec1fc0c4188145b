"""The datasets of the CLOP paper's ResNet-50 benchmarks (arXiv 2403.18699, Section 5): their facts and readers.

The paper pre-trains a ResNet-50 in the SimCLR framework on CIFAR-100 (Krizhevsky et al. 2009),
Tiny-ImageNet (Le & Yang 2015) and ImageNet (Deng et al. 2009). This module holds what is fixed about each
dataset and the readers of the image folders and of the digits:

- :data:`DATASETS`, :data:`SPLITS`, :class:`DatasetInfo`, :data:`DATASET_INFO`: the dataset names, the
  splits, and each dataset's class count, native image size and per-channel pixel statistics.
- :class:`DatasetNotFoundError`, :class:`DatasetCorruptError`: what a reader raises when the files are
  missing or unreadable.
- the readers of Tiny-ImageNet and ImageNet (class folders) and of the digits, and :func:`digits_split`.
  The CIFAR-100 files (real and synthetic) are read and written by :mod:`training.cifar`;
  :func:`training.data.load_dataset` picks the reader.
- ``"digits"`` (ours, not in the paper): the UCI handwritten digits that scikit-learn ships inside its
  wheel (``sklearn.datasets.load_digits``: 1,797 real 8x8 greyscale images, 10 classes; no download,
  ``root`` is not used), so that the training pipeline can run on real images on any CPU. Split
  :func:`digits_split`: fixed (seed 0, the same on every machine and run), class-stratified, a fifth of
  each class to test: 1,438 train / 359 test images. Pixels 0..16 are scaled to [0, 1] (divided by 16);
  an item is a ``torchvision.tv_tensors.Image`` float32 ``(1, 8, 8)``, and the transforms of
  :mod:`training.augment` replicate the grey channel to three (``v2.RGB``), so every encoder takes the
  digits like the other datasets. Its pre-training policy is ``"digits"`` (small translations, mild scale,
  brightness/contrast, noise; no flips, no colour: see :func:`training.augment.pretrain_transform`).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import datasets as tv_datasets
from torchvision import tv_tensors
from torchvision.datasets.folder import default_loader
from torchvision.datasets.utils import download_and_extract_archive

from clop.util.checks import check_size

__all__ = [
    "DATASETS",
    "SPLITS",
    "DatasetInfo",
    "DATASET_INFO",
    "DatasetNotFoundError",
    "DatasetCorruptError",
    "digits_split",
]

DATASETS: tuple[str, ...] = ("cifar100", "tiny-imagenet", "imagenet", "synthetic", "digits")
SPLITS: tuple[str, ...] = ("train", "test")
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2

TINY_IMAGENET_FOLDER = "tiny-imagenet-200"
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
#: md5 of tiny-imagenet-200.zip (248,100,043 bytes) as recorded by many independent loaders.
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"


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
    """The dataset's files are not where :func:`training.data.load_dataset` looked.

    The message names the dataset, the exact path(s) looked at, the layout expected and how to get the data.
    """


class DatasetCorruptError(ValueError):
    """A dataset file is there but cannot be read (truncated, damaged, not the expected format).

    The message names the file, what is wrong with it and how to get a good copy.
    """


# ----------------------------------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------------------------------


def _check_root(root: object) -> Path:
    if isinstance(root, bytes) or not isinstance(root, (str, os.PathLike)) or str(root) == "":
        raise ValueError(f"root must be a non-empty str or os.PathLike path; got {root!r}")
    return Path(root).expanduser()


def _as_label_array(name: str, targets: object) -> np.ndarray:
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


# ----------------------------------------------------------------------------------------------------
# Digits: scikit-learn's copy of the UCI handwritten digits
# ----------------------------------------------------------------------------------------------------


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
    labels = _digits_arrays()[1] if labels is None else _as_label_array("labels", labels)
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


class _Digits(Dataset):
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


def _subdirs(path: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir())


class _ImageFolderWithClasses(tv_datasets.ImageFolder):
    """``ImageFolder`` whose class list is given (so two splits share one class -> index map).

    ``allow_empty``: classes without a folder or without images are skipped instead of an error (used for
    evaluation splits, which may cover a subset of the classes); at least one image is still required.
    """

    def __init__(
        self, root: Path, classes: Sequence[str], transform: Callable | None = None, allow_empty: bool = False
    ) -> None:
        self._given_classes = list(classes)
        super().__init__(str(root), transform=transform, allow_empty=allow_empty)
        if not self.samples:
            raise FileNotFoundError(f"no images found in the class folders of {root}")

    def find_classes(self, directory: str | os.PathLike) -> tuple[list[str], dict[str, int]]:
        return list(self._given_classes), {c: i for i, c in enumerate(self._given_classes)}


class _TinyImageNetVal(Dataset):
    """Tiny-ImageNet's labelled validation split: ``val/images/*.JPEG`` labelled by ``val/val_annotations.txt``.

    Each annotation line is ``file <tab> wnid <tab> x0 y0 x1 y1``; the label is the index of ``wnid`` in
    ``classes``. Samples keep the order of the annotation file. ``__getitem__`` -> (PIL RGB image, int).
    """

    def __init__(self, base: Path, classes: Sequence[str], transform: Callable | None = None) -> None:
        self.root = str(base / "val")
        self.transform = transform
        self.classes = list(classes)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        annotations = base / "val" / "val_annotations.txt"
        images = base / "val" / "images"
        self.samples: list[tuple[str, int]] = []
        for lineno, line in enumerate(annotations.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise ValueError(f"{annotations}, line {lineno}: expected 'file<TAB>wnid<TAB>box'; got {line!r}")
            fname, wnid = fields[0], fields[1]
            if wnid not in self.class_to_idx:
                raise ValueError(
                    f"{annotations}, line {lineno}: wnid {wnid!r} is not one of the {len(self.classes)} "
                    "classes of wnids.txt / train/"
                )
            self.samples.append((str(images / fname), self.class_to_idx[wnid]))
        missing = [p for p, _ in self.samples if not os.path.isfile(p)]
        if missing:
            raise DatasetNotFoundError(
                f"tiny-imagenet: {len(missing)} image(s) named in {annotations} are missing, e.g. {missing[0]}"
            )
        self.targets = [t for _, t in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, target = self.samples[index]
        image = default_loader(path)
        if self.transform is not None:
            image = self.transform(image)
        return image, target


def _tiny_split_present(base: Path, train: bool) -> bool:
    if train:
        return (base / "train").is_dir()
    return (base / "val" / "images").is_dir() and (base / "val" / "val_annotations.txt").is_file()


def _tiny_error(candidates: list[Path], train: bool) -> DatasetNotFoundError:
    wanted = "train/" if train else "val/images/ and val/val_annotations.txt"
    looked = " and ".join(str(c) for c in candidates)
    return DatasetNotFoundError(
        f"tiny-imagenet: no {wanted} found in {looked}. Expected layout: {TINY_IMAGENET_FOLDER}/{{wnids.txt, "
        "train/<wnid>/images/<wnid>_<i>.JPEG, val/images/val_<i>.JPEG, val/val_annotations.txt}, with root "
        f"either the {TINY_IMAGENET_FOLDER} folder or the folder containing it. Get it with --download "
        f"(load_dataset(..., download=True)), which downloads and extracts {TINY_IMAGENET_URL}."
    )


def _load_tiny_imagenet(root: Path, train: bool, transform: Callable | None, download: bool) -> Dataset:
    candidates = [root] if root.name == TINY_IMAGENET_FOLDER else [root, root / TINY_IMAGENET_FOLDER]
    base = next((c for c in candidates if _tiny_split_present(c, train)), None)
    if base is None and download:
        parent = root.parent if root.name == TINY_IMAGENET_FOLDER else root
        download_and_extract_archive(TINY_IMAGENET_URL, download_root=str(parent), md5=TINY_IMAGENET_MD5)
        base = next((c for c in candidates if _tiny_split_present(c, train)), None)
    if base is None:
        raise _tiny_error(candidates, train)
    # One class list for both splits: the sorted wnids of wnids.txt, else the sorted train folders.
    wnids_file = base / "wnids.txt"
    if wnids_file.is_file():
        classes = sorted({w.strip() for w in wnids_file.read_text().splitlines() if w.strip()})
    elif (base / "train").is_dir():
        classes = _subdirs(base / "train")
    else:
        raise DatasetNotFoundError(
            f"tiny-imagenet: neither {wnids_file} nor {base / 'train'} exists, so the class list of the "
            "val split is unknown; the official archive contains both."
        )
    if not classes:
        raise DatasetNotFoundError(f"tiny-imagenet: no classes listed in {wnids_file} or {base / 'train'}")
    if not train:
        return _TinyImageNetVal(base, classes, transform)
    try:
        return _ImageFolderWithClasses(base / "train", classes, transform)
    except FileNotFoundError as exc:
        raise DatasetNotFoundError(
            f"tiny-imagenet: {base / 'train'} does not hold train/<wnid>/images/*.JPEG for every wnid "
            f"({len(classes)} classes): {exc}"
        ) from exc


_IMAGENET_HOWTO = (
    "ImageNet (ILSVRC-2012) cannot be downloaded automatically: download ILSVRC2012_img_train.tar and "
    "ILSVRC2012_img_val.tar from https://image-net.org (registration required), extract the training images "
    "to <root>/train/<wnid>/*.JPEG and the validation images to <root>/val/<wnid>/*.JPEG; val/ must be in "
    "class folders like train/ (sort the 50,000 flat validation images into their wnid folders using the "
    "devkit's ground truth first)."
)


def _load_imagenet(root: Path, train: bool, transform: Callable | None) -> Dataset:
    split_dir = root / ("train" if train else "val")
    if not split_dir.is_dir():
        raise DatasetNotFoundError(f"imagenet: {split_dir} does not exist. {_IMAGENET_HOWTO}")
    class_source = root / "train" if (root / "train").is_dir() else split_dir
    classes = _subdirs(class_source)
    found = _subdirs(split_dir)
    if not classes or not found:
        raise DatasetNotFoundError(f"imagenet: no class folders in {split_dir}. {_IMAGENET_HOWTO}")
    extra = sorted(set(found) - set(classes))
    if extra:
        raise ValueError(
            f"imagenet: {split_dir} has class folders that {class_source} lacks, e.g. {extra[:3]}; "
            "train/ and val/ must use the same wnid folders"
        )
    try:
        return _ImageFolderWithClasses(split_dir, classes, transform, allow_empty=not train)
    except FileNotFoundError as exc:
        raise DatasetNotFoundError(f"imagenet: {split_dir}: {exc}. {_IMAGENET_HOWTO}") from exc
