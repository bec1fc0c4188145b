"""Datasets, label subsets and augmentations for the ResNet-50 benchmarks of the CLOP paper (Section 5).

The paper pre-trains a ResNet-50 in the SimCLR framework on CIFAR-100 (Krizhevsky et al. 2009),
Tiny-ImageNet (Le & Yang 2015) and ImageNet (Deng et al. 2009), uses 10% of the labels in the
semi-supervised setting, and ablates the augmentation policy on Tiny-ImageNet: RandAugment with three
operations, AutoAugment with the ImageNet policy (Cubuk et al. 2018) and the SimCLR policy
(Chen et al. 2020a). This module provides:

- :func:`load_dataset`: the four datasets (``"synthetic"`` is a small generated CIFAR-format set for
  smoke runs and tests) as torch datasets of ``(PIL RGB image, int label)`` with ``targets`` and
  ``classes`` attributes. Nothing is downloaded unless ``download=True``.
- :func:`write_synthetic_cifar`: writes the synthetic set in the real CIFAR-100 pickle format.
- :func:`labeled_subset`, :func:`masked_labels`: the class-stratified labelled fraction.
- :class:`TwoViewDataset`: two augmented views per image, the (masked) label and the index.
- :func:`pretrain_transform`, :func:`eval_transform`: the augmentation policies and the evaluation
  transform (PIL image -> normalised float tensor ``(3, S, S)``).

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
"""

from __future__ import annotations

import math
import numbers
import os
import pickle
import struct
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import datasets as tv_datasets
from torchvision.datasets.folder import default_loader
from torchvision.datasets.utils import download_and_extract_archive
from torchvision.transforms import v2

from clop._checks import check_choice, check_size

__all__ = [
    "DATASETS",
    "SPLITS",
    "POLICIES",
    "DatasetInfo",
    "DATASET_INFO",
    "DatasetNotFoundError",
    "load_dataset",
    "write_synthetic_cifar",
    "labeled_subset",
    "masked_labels",
    "TwoViewDataset",
    "pretrain_transform",
    "eval_transform",
]

DATASETS: tuple[str, ...] = ("cifar100", "tiny-imagenet", "imagenet", "synthetic")
SPLITS: tuple[str, ...] = ("train", "test")
POLICIES: tuple[str, ...] = ("simclr", "randaugment", "autoaugment")

CIFAR_FOLDER = "cifar-100-python"
CIFAR_FILES = ("train", "test", "meta")
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
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
}


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are not where :func:`load_dataset` looked.

    The message names the dataset, the exact path(s) looked at, the layout expected and how to get the data.
    """


# ----------------------------------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------------------------------


def _check_root(root: object) -> Path:
    if isinstance(root, bytes) or not isinstance(root, (str, os.PathLike)) or str(root) == "":
        raise ValueError(f"root must be a non-empty str or os.PathLike path; got {root!r}")
    return Path(root).expanduser()


def _check_transform(transform: object, name: str = "transform") -> None:
    if transform is not None and not callable(transform):
        raise ValueError(f"{name} must be a callable (PIL image -> anything) or None; got {transform!r}")


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def _check_triple(name: str, value: object, *, positive: bool) -> tuple[float, float, float]:
    """``value`` as three finite floats (``> 0`` when ``positive``), else ValueError naming ``name``."""
    what = "three finite real numbers > 0" if positive else "three finite real numbers"
    try:
        items = [float(v) for v in value]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of {what} (one per RGB channel); got {value!r}") from None
    if len(items) != 3 or not all(math.isfinite(v) and (v > 0 or not positive) for v in items):
        raise ValueError(f"{name} must be a sequence of {what} (one per RGB channel); got {value!r}")
    return items[0], items[1], items[2]


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
# CIFAR-100 files (real and synthetic)
# ----------------------------------------------------------------------------------------------------


class _CIFAR100Files(tv_datasets.CIFAR100):
    """torchvision's CIFAR-100 reader without the md5 checks.

    The real files are verified by ``torchvision.datasets.CIFAR100(download=True)`` when they are
    downloaded; skipping the checks here lets files written by :func:`write_synthetic_cifar` (and by the
    tests) load through exactly the same code as the real ones. ``data``: uint8 ``(N, 32, 32, 3)``.
    """

    def _check_integrity(self) -> bool:
        folder = Path(self.root) / self.base_folder
        return all((folder / f).is_file() for f in CIFAR_FILES)

    def _load_meta(self) -> None:
        path = Path(self.root) / self.base_folder / self.meta["filename"]
        with open(path, "rb") as f:
            meta = pickle.load(f, encoding="latin1")
        self.classes = list(meta[self.meta["key"]])
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


def _cifar_missing(folder: Path) -> list[Path]:
    return [folder / f for f in CIFAR_FILES if not (folder / f).is_file()]


def _load_cifar100(root: Path, train: bool, transform: Callable | None, download: bool) -> Dataset:
    if root.name == CIFAR_FOLDER and not _cifar_missing(root):
        root = root.parent  # the cifar-100-python folder itself was given
    folder = root / CIFAR_FOLDER
    missing = _cifar_missing(folder)
    if missing and download:
        # torchvision downloads the archive, checks its md5 and extracts it to root/cifar-100-python.
        tv_datasets.CIFAR100(str(root), train=train, download=True)
        missing = _cifar_missing(folder)
    if missing:
        raise DatasetNotFoundError(
            f"cifar100: CIFAR-100 (python version) not found; looked for {', '.join(map(str, missing))}. "
            f"Expected layout: <root>/{CIFAR_FOLDER}/{{train,test,meta}} with root={root}, as extracted "
            f"from {CIFAR100_URL}. Get it with --download (load_dataset(..., download=True)), which "
            "downloads the archive with torchvision and checks its md5."
        )
    return _CIFAR100Files(str(root), train=train, transform=transform)


def _load_synthetic(root: Path, train: bool, transform: Callable | None) -> Dataset:
    syn_root = root / "synthetic"
    if _cifar_missing(syn_root / CIFAR_FOLDER):
        write_synthetic_cifar(syn_root)  # deterministic generation (seed 0), not a download
    return _CIFAR100Files(str(syn_root), train=train, transform=transform)


class _Py2StrPickler(pickle._Pickler):  # type: ignore[name-defined]
    """Protocol-2 pickler that writes ``bytes`` as Python 2 ``str`` and numpy's reconstructor as
    ``numpy.core.multiarray._reconstruct``, i.e. what Python 2's cPickle wrote for the CIFAR files.

    Loading then behaves as for the real files: ``pickle.load(f, encoding="bytes")`` (the recipe on the
    CIFAR web page) gives ``bytes`` keys such as ``b"data"``; ``encoding="latin1"`` (torchvision) gives
    ``str`` keys. Built on the pure-Python pickler of the standard library.
    """

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def _save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if obj is _NP_RECONSTRUCT:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


_NP_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1, np.uint8))[0]


def _atomic_write_pickle(obj: object, path: Path) -> None:
    """Write ``obj`` to ``path`` through a temporary file and ``os.replace`` (safe under parallel writers)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            _Py2StrPickler(f, protocol=2).dump(obj)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


_SYN_SIZE = 32
_SYN_MAX_SHIFT = 4  # circular shift of the template, pixels per axis
_SYN_NOISE = 30.0  # std of the per-pixel Gaussian noise, grey levels
_SYN_BRIGHTNESS = 12.0  # std of the per-image brightness offset, grey levels
_SYN_CONTRAST = (0.75, 1.25)  # range of the per-image contrast factor around the class colour


def _synthetic_templates(rng: np.random.Generator, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Class templates ``(C, 32, 32, 3)`` float and their base colours ``(C, 3)``, grey levels 0..255.

    Each template is a base colour plus three 2-D sinusoids per class with integer frequencies (1 to 3
    cycles per image, so the template tiles the torus and a circular shift is seamless), each with its own
    colour direction: a smooth colour texture that a CNN can recognise at any shift.
    """
    coords = np.arange(_SYN_SIZE) / _SYN_SIZE
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    colours = rng.uniform(85.0, 170.0, size=(num_classes, 3))
    templates = np.empty((num_classes, _SYN_SIZE, _SYN_SIZE, 3))
    for c in range(num_classes):
        t = np.broadcast_to(colours[c], (_SYN_SIZE, _SYN_SIZE, 3)).copy()
        for _ in range(3):
            fy, fx = 0, 0
            while fy == 0 and fx == 0:
                fy, fx = rng.integers(-3, 4, size=2)
            phase = rng.uniform(0.0, 2 * np.pi)
            colour_dir = rng.normal(0.0, 1.0, size=3)
            colour_dir *= 28.0 / np.linalg.norm(colour_dir)
            wave = np.sin(2 * np.pi * (fy * yy + fx * xx) + phase)
            t += wave[:, :, None] * colour_dir[None, None, :]
        templates[c] = t
    return templates, colours


def _synthetic_split(
    rng: np.random.Generator, templates: np.ndarray, colours: np.ndarray, per_class: int
) -> tuple[np.ndarray, list[int]]:
    """``per_class`` samples of each class in a shuffled order: data uint8 ``(N, 3072)``, labels (N,)."""
    num_classes = templates.shape[0]
    labels = np.repeat(np.arange(num_classes), per_class)
    labels = labels[rng.permutation(labels.size)]
    images = np.empty((labels.size, _SYN_SIZE, _SYN_SIZE, 3))
    for i, c in enumerate(labels):
        dy, dx = rng.integers(-_SYN_MAX_SHIFT, _SYN_MAX_SHIFT + 1, size=2)
        shifted = np.roll(templates[c], (dy, dx), axis=(0, 1))
        contrast = rng.uniform(*_SYN_CONTRAST)
        brightness = rng.normal(0.0, _SYN_BRIGHTNESS)
        noise = rng.normal(0.0, _SYN_NOISE, size=shifted.shape)
        images[i] = colours[c] + contrast * (shifted - colours[c]) + brightness + noise
    pixels = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    # CIFAR row layout: the 1024 red values, then green, then blue, each plane row-major 32 x 32.
    data = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2).reshape(labels.size, 3 * _SYN_SIZE * _SYN_SIZE))
    return data, [int(c) for c in labels]


def write_synthetic_cifar(
    root: str | os.PathLike,
    *,
    num_classes: int = 10,
    train_per_class: int = 50,
    test_per_class: int = 20,
    seed: int = 0,
) -> Path:
    """Write a small learnable image-classification set in the real CIFAR-100 file format.

    Files: ``root/cifar-100-python/{train,test,meta}``, pickles (protocol 2, Python 2 strings, as the
    originals) of dicts with keys ``b"data"`` (uint8 ``(N, 3072)``: R plane, G plane, B plane, each
    row-major 32 x 32), ``b"fine_labels"`` (N ints), ``b"coarse_labels"`` (N ints, ``c // 5``),
    ``b"filenames"`` (N bytes), ``b"batch_label"``; meta: ``b"fine_label_names"``,
    ``b"coarse_label_names"``. ``N = num_classes * per_class``, classes balanced, order shuffled.

    Images: each class has a template (base colour + three smooth coloured sinusoidal gratings); a sample
    is its template circularly shifted by up to 4 px per axis, with a random contrast factor in
    [0.75, 1.25], a brightness offset (std 12 grey levels) and per-pixel Gaussian noise (std 30). Classes
    overlap in colour, so no single pixel separates them, while the class mean images differ clearly.
    Same arguments -> byte-identical files (for one numpy version and platform: the pixels go through
    ``np.sin`` and rounding). Each file is replaced atomically (temporary file + ``os.replace``), so
    several processes may generate the set at once. Returns the
    ``cifar-100-python`` folder.
    """
    root_path = _check_root(root)
    num_classes = check_size("num_classes", num_classes, minimum=2)
    if num_classes > 100:
        raise ValueError(f"num_classes must be an integer in [2, 100] (CIFAR-100 fine labels); got {num_classes!r}")
    train_per_class = check_size("train_per_class", train_per_class, minimum=1)
    test_per_class = check_size("test_per_class", test_per_class, minimum=1)
    seed = check_size("seed", seed, 0)

    templates_ss, train_ss, test_ss = np.random.SeedSequence(seed).spawn(3)
    templates, colours = _synthetic_templates(np.random.default_rng(templates_ss), num_classes)
    num_coarse = (num_classes + 4) // 5
    folder = root_path / CIFAR_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for split, ss, per_class, batch_label in (
        ("train", train_ss, train_per_class, b"training batch 1 of 1"),
        ("test", test_ss, test_per_class, b"testing batch 1 of 1"),
    ):
        data, labels = _synthetic_split(np.random.default_rng(ss), templates, colours, per_class)
        entry = {
            b"filenames": [f"synthetic_{split}_{i:05d}_c{c:03d}.png".encode() for i, c in enumerate(labels)],
            b"batch_label": batch_label,
            b"fine_labels": labels,
            b"coarse_labels": [c // 5 for c in labels],
            b"data": data,
        }
        _atomic_write_pickle(entry, folder / split)
    meta = {
        b"fine_label_names": [f"class_{c:02d}".encode() for c in range(num_classes)],
        b"coarse_label_names": [f"superclass_{c:02d}".encode() for c in range(num_coarse)],
    }
    _atomic_write_pickle(meta, folder / "meta")
    return folder


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
            contains it. ``"imagenet"``: ``root/train/<wnid>/*`` and ``root/val/<wnid>/*``.
        root: the data folder.
        split: ``"train"`` or ``"test"``; ``"test"`` is the official test split of CIFAR-100 and the
            labelled validation split of Tiny-ImageNet and ImageNet. Both splits of a dataset share one
            class -> index map (sorted class names / wnids).
        transform: applied to the PIL RGB image; ``None`` returns the PIL image.
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
            torch.manual_seed(((self.seed * 1_000_003 + self.epoch) * 10_000_019 + int(index)) % (2**63))
            v1, v2 = self.transform(image), self.transform(image)
        return v1, v2, int(self.labels[index]), int(index)


# ----------------------------------------------------------------------------------------------------
# Transforms
# ----------------------------------------------------------------------------------------------------


def _to_normalised_tensor(mean: tuple[float, ...], std: tuple[float, ...]) -> list[Any]:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]


def _simclr_blur_kernel(image_size: int) -> int:
    """Odd Gaussian-blur kernel of about 10% of the image side (SimCLR, Chen et al. 2020a, App. A):
    ``int(0.1 * S)`` made odd by adding 1 when even, e.g. 224 -> 23, 64 -> 7."""
    k = max(1, int(0.1 * image_size))
    return k if k % 2 == 1 else k + 1


def pretrain_transform(
    policy: str, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> Callable[[Any], torch.Tensor]:
    """Augmentation for pre-training: PIL image -> float32 tensor ``(3, S, S)``, normalised by ``mean``/``std``.

    Policies (the three of the paper's augmentation ablation, Sec. 5):

    - ``"simclr"`` (Chen et al. 2020a, Appendix A): ``RandomResizedCrop(S, scale=(0.08, 1))``, horizontal
      flip (p 0.5), colour jitter (brightness, contrast, saturation ``0.8 s``, hue ``0.2 s``) applied with
      p 0.8, grayscale with p 0.2, and for ``S >= 64`` Gaussian blur with p 0.5, kernel ~10% of ``S``
      (odd: ``int(0.1 S)``, +1 if even) and sigma uniform in [0.1, 2.0]. Colour strength ``s = 0.5`` for
      ``S <= 32`` (SimCLR's CIFAR setting, which also drops the blur), else ``s = 1.0`` (ImageNet).
    - ``"randaugment"`` (Cubuk et al. 2020): the same crop and flip, then ``RandAugment(num_ops=3)`` with
      torchvision's default magnitude 9 of 31 bins; the paper uses "three operations".
    - ``"autoaugment"`` (Cubuk et al. 2018): the same crop and flip, then ``AutoAugment`` with the ImageNet
      policy, as the paper states.

    The crop and flip are shared so that the ablation changes only the photometric policy.

    Args:
        policy: one of :data:`POLICIES`.
        image_size: output side ``S`` (e.g. 32 CIFAR, 64 Tiny-ImageNet, 224 ImageNet, 16 smoke runs).
        mean, std: per-channel statistics on the [0, 1] scale (``DATASET_INFO[name].mean``/``.std``).
    """
    policy = check_choice("policy", policy, POLICIES)
    size = check_size("image_size", image_size, minimum=1)
    mean_t = _check_triple("mean", mean, positive=False)
    std_t = _check_triple("std", std, positive=True)
    geometric = [v2.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True), v2.RandomHorizontalFlip(0.5)]
    if policy == "simclr":
        s = 0.5 if size <= 32 else 1.0
        photometric: list[Any] = [
            v2.RandomApply([v2.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8),
            v2.RandomGrayscale(p=0.2),
        ]
        if size >= 64:
            photometric.append(v2.RandomApply([v2.GaussianBlur(_simclr_blur_kernel(size), sigma=(0.1, 2.0))], p=0.5))
    elif policy == "randaugment":
        photometric = [v2.RandAugment(num_ops=3)]
    else:
        photometric = [v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)]
    return v2.Compose(geometric + photometric + _to_normalised_tensor(mean_t, std_t))


def eval_transform(image_size: int, mean: Sequence[float], std: Sequence[float]) -> Callable[[Any], torch.Tensor]:
    """Deterministic evaluation transform: PIL image -> float32 tensor ``(3, S, S)``, normalised.

    ``S >= 224``: ``Resize(round(S * 256 / 224))`` then ``CenterCrop(S)`` (the standard ImageNet evaluation,
    256 -> 224). Smaller ``S``: ``Resize(S)`` (shorter side to ``S``, which also scales 32 px CIFAR images
    down to a 16 px smoke size) then ``CenterCrop(S)``, a no-op on square images that keeps non-square
    ones ``(3, S, S)``.
    """
    size = check_size("image_size", image_size, minimum=1)
    mean_t = _check_triple("mean", mean, positive=False)
    std_t = _check_triple("std", std, positive=True)
    resize = round(size * 256 / 224) if size >= 224 else size
    return v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(size)] + _to_normalised_tensor(mean_t, std_t))
