"""The class-folder datasets of the CLOP paper's ResNet-50 benchmarks: Tiny-ImageNet and ImageNet.

Tiny-ImageNet (Le & Yang 2015): ``root`` is the ``tiny-imagenet-200`` folder or the folder that contains it;
train is ``train/<wnid>/images/*.JPEG``, test its labelled validation split (``val/images`` labelled by
``val/val_annotations.txt``); ``download=True`` fetches and extracts the official archive. ImageNet
(ILSVRC-2012): ``root/train/<wnid>/*`` and ``root/val/<wnid>/*``; it cannot be downloaded. A failed download
(no network, a bad checksum) is a DatasetNotFoundError saying so. Both splits of a
dataset share one class -> index map (the sorted wnids). Items are ``(PIL RGB image, int label)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset
from torchvision import datasets as tv_datasets
from torchvision.datasets.folder import default_loader
from torchvision.datasets.utils import download_and_extract_archive

from training.data.catalog import DatasetNotFoundError

__all__ = ["TINY_IMAGENET_FOLDER", "TINY_IMAGENET_URL", "TINY_IMAGENET_MD5", "load_tiny_imagenet", "load_imagenet"]

TINY_IMAGENET_FOLDER = "tiny-imagenet-200"
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
#: md5 of tiny-imagenet-200.zip (248,100,043 bytes) as recorded by many independent loaders.
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"


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


def load_tiny_imagenet(root: Path, train: bool, transform: Callable | None, download: bool) -> Dataset:
    """One split of Tiny-ImageNet under ``root`` (module docstring); DatasetNotFoundError naming the paths."""
    candidates = [root] if root.name == TINY_IMAGENET_FOLDER else [root, root / TINY_IMAGENET_FOLDER]
    base = next((c for c in candidates if _tiny_split_present(c, train)), None)
    if base is None and download:
        parent = root.parent if root.name == TINY_IMAGENET_FOLDER else root
        try:
            download_and_extract_archive(TINY_IMAGENET_URL, download_root=str(parent), md5=TINY_IMAGENET_MD5)
        except (OSError, RuntimeError) as exc:  # urllib's URLError is an OSError; a bad md5 a RuntimeError
            reason = getattr(exc, "reason", None) or exc
            raise DatasetNotFoundError(
                f"tiny-imagenet: --download of {TINY_IMAGENET_URL} into {parent} failed ({reason}); check the "
                f"network, or download the archive by hand and extract it into {parent}") from None
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


def load_imagenet(root: Path, train: bool, transform: Callable | None) -> Dataset:
    """One split of ImageNet under ``root`` (module docstring); DatasetNotFoundError saying how to get it."""
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
