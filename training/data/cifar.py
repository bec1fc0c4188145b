"""CIFAR-100 python-format files: the reader of the real and the synthetic set, and the synthetic set's writer.

CIFAR-100 (Krizhevsky et al. 2009) is one of the three datasets of the CLOP paper's ResNet-50 benchmarks
(arXiv 2403.18699, Section 5). Here:

- the reader of ``cifar-100-python/{train,test,meta}`` (torchvision's layout), used for the real files
  and for the synthetic set alike (:func:`load_cifar100`, :func:`load_synthetic`); a missing file raises
  :class:`training.data.catalog.DatasetNotFoundError`, an unreadable one
  :class:`training.data.catalog.DatasetCorruptError`. The files are pickles, so they are read by a restricted
  unpickler (:class:`CifarUnpickler`) that builds only what the format holds (dicts, lists, strings, bytes,
  numbers and numpy arrays of plain dtypes): a crafted file is refused before anything in it can run.
  ``download=True`` goes through torchvision, which checks the archive's md5 before it reads the files; a
  failed download (no network, a refused connection, a bad checksum) is a DatasetNotFoundError saying so.
- :func:`write_synthetic_cifar`: writes ``"synthetic"`` (ours, not in the paper: a small generated
  CIFAR-format set for smoke runs and tests) in the real CIFAR-100 pickle format.

:func:`training.data.datasets.load_dataset` picks the reader.
"""

from __future__ import annotations

import os
import pickle
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset
from torchvision import datasets as tv_datasets
from torchvision.datasets.vision import VisionDataset

from clop.util.checks import check_size
from clop.util.io import atomic_path
from training.data.catalog import DatasetCorruptError, DatasetNotFoundError, check_root

__all__ = ["CIFAR_FOLDER", "CIFAR_FILES", "CIFAR100_URL", "CIFAR_GLOBALS", "CifarUnpickler", "load_cifar100",
           "load_synthetic", "write_synthetic_cifar"]

CIFAR_FOLDER = "cifar-100-python"
CIFAR_FILES = ("train", "test", "meta")
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"


class _CIFAR100Files(tv_datasets.CIFAR100):
    """torchvision's CIFAR-100 dataset (its ``__getitem__``), read from the files without md5 checks.

    The real files are verified by ``torchvision.datasets.CIFAR100(download=True)`` when they are
    downloaded; skipping the checks here lets files written by :func:`write_synthetic_cifar` (and by the
    tests) load through exactly the same code as the real ones. ``data``: uint8 ``(N, 32, 32, 3)``.
    A file that cannot be read raises :class:`DatasetCorruptError` naming it and ``remedy``.
    """

    def __init__(self, root: str, train: bool, transform: Callable | None, remedy: str) -> None:
        VisionDataset.__init__(self, root, transform=transform)
        self.train = train
        folder = Path(root) / self.base_folder
        path = folder / ("train" if train else "test")
        entry = _read_cifar_pickle(path, ("data", "fine_labels"), remedy)
        try:
            data = np.asarray(entry["data"])
            labels = [int(c) for c in entry["fine_labels"]]
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != len(labels):
                raise ValueError(f"'data' is {data.dtype} of shape {data.shape} for {len(labels)} labels, "
                                 "expected uint8 (N, 3072)")
        except (TypeError, ValueError) as exc:
            raise DatasetCorruptError(f"{path} is not a CIFAR-100 file: {exc}. {remedy}") from None
        self.data = data.reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))  # HWC, as torchvision
        self.targets = labels
        meta_path = folder / self.meta["filename"]
        meta = _read_cifar_pickle(meta_path, (self.meta["key"],), remedy)
        self.classes = [str(c) for c in meta[self.meta["key"]]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        if labels and not 0 <= min(labels) <= max(labels) < len(self.classes):
            raise DatasetCorruptError(f"{path} has labels outside the {len(self.classes)} classes of {meta_path}. "
                                      f"{remedy}")


CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}
"""The only classes and functions a CIFAR python file names: numpy's array reconstructor, the array type and
its dtype (the rest of the format is dicts, lists, strings, bytes and numbers, which need no name), and
``_codecs.encode``, with which Python 3 writes ``bytes`` at pickle protocol 2 (a copy re-pickled by Python 3)."""


class CifarUnpickler(pickle.Unpickler):
    """An unpickler that admits only the names of :data:`CIFAR_GLOBALS` (numpy arrays); any other name in the
    file (``os.system``, ``builtins.eval``, a class of some package) raises ``pickle.UnpicklingError`` before it
    is looked up, so nothing in a crafted file can run."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR file never holds")
        return super().find_class(module, name)


def _read_cifar_pickle(path: Path, keys: tuple[str, ...], remedy: str) -> dict:
    """The dict pickled in a CIFAR python file (str keys), read by :class:`CifarUnpickler`; DatasetCorruptError
    naming the file otherwise."""
    try:
        with open(path, "rb") as f:
            entry = CifarUnpickler(f, encoding="latin1").load()
    except OSError as exc:
        raise DatasetCorruptError(f"{path} cannot be read: {exc.strerror or exc}. {remedy}") from None
    except pickle.UnpicklingError as exc:
        if "a CIFAR file never holds" in str(exc):
            raise DatasetCorruptError(f"{path} is refused and was not read: {exc}. {remedy}") from None
        raise DatasetCorruptError(f"{path} is not a readable CIFAR-100 file: it is truncated or damaged "
                                  f"({path.stat().st_size} bytes; UnpicklingError: {exc}). {remedy}") from None
    except Exception as exc:  # noqa: BLE001 - truncated or damaged pickles fail in many ways (EOFError, ...)
        size = path.stat().st_size if path.exists() else 0
        what = "empty (0 bytes)" if size == 0 else f"truncated or damaged ({size} bytes; {type(exc).__name__}: {exc})"
        raise DatasetCorruptError(f"{path} is not a readable CIFAR-100 file: it is {what}. {remedy}") from None
    missing = [k for k in keys if not isinstance(entry, dict) or k not in entry]
    if missing:
        raise DatasetCorruptError(f"{path} is not a CIFAR-100 file: it lacks {missing}. {remedy}")
    return entry


def _cifar_missing(folder: Path) -> list[Path]:
    return [folder / f for f in CIFAR_FILES if not (folder / f).is_file()]


def load_cifar100(root: Path, train: bool, transform: Callable | None, download: bool) -> Dataset:
    """One split of CIFAR-100 under ``root`` (or ``root`` the ``cifar-100-python`` folder itself); with
    ``download`` torchvision fetches and md5-checks the archive when files are missing."""
    if root.name == CIFAR_FOLDER and not _cifar_missing(root):
        root = root.parent  # the cifar-100-python folder itself was given
    folder = root / CIFAR_FOLDER
    missing = _cifar_missing(folder)
    if missing and download:
        # torchvision downloads the archive, checks its md5 and extracts it to root/cifar-100-python.
        try:
            tv_datasets.CIFAR100(str(root), train=train, download=True)
        except (OSError, RuntimeError) as exc:  # urllib's URLError is an OSError; a bad md5 a RuntimeError
            reason = getattr(exc, "reason", None) or exc
            raise DatasetNotFoundError(
                f"cifar100: --download of {CIFAR100_URL} into {root} failed ({reason}); check the network, or "
                f"download the archive by hand and extract it into {root}") from None
        missing = _cifar_missing(folder)
    if missing:
        raise DatasetNotFoundError(
            f"cifar100: CIFAR-100 (python version) not found; looked for {', '.join(map(str, missing))}. "
            f"Expected layout: <root>/{CIFAR_FOLDER}/{{train,test,meta}} with root={root}, as extracted "
            f"from {CIFAR100_URL}. Get it with --download (load_dataset(..., download=True)), which "
            "downloads the archive with torchvision and checks its md5."
        )
    remedy = (f"Delete {folder} and get the data again with --download (load_dataset(..., download=True)), which "
              "downloads the archive with torchvision and checks its md5.")
    return _CIFAR100Files(str(root), train, transform, remedy)


def load_synthetic(root: Path, train: bool, transform: Callable | None) -> Dataset:
    """One split of the synthetic set under ``root/synthetic``, generated (seed 0) when missing."""
    syn_root = root / "synthetic"
    if root.exists() and not root.is_dir():
        raise DatasetNotFoundError(f"synthetic: the data folder {str(root)!r} is a file; give a folder as --data-root "
                                   "(the set is generated in <data-root>/synthetic when missing)")
    if _cifar_missing(syn_root / CIFAR_FOLDER):
        try:
            write_synthetic_cifar(syn_root)  # deterministic generation (seed 0), not a download
        except OSError as exc:
            raise DatasetNotFoundError(f"synthetic: the set cannot be generated in {str(syn_root)!r}: "
                                       f"{exc.strerror or exc}; give a writable --data-root") from None
    remedy = f"Delete {syn_root} and it is generated again on the next use."
    return _CIFAR100Files(str(syn_root), train, transform, remedy)


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
    """Write ``obj`` in the CIFAR pickle format to ``path`` through a temporary file and an atomic rename
    (:func:`clop.util.io.atomic_path`; safe under parallel writers)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        _Py2StrPickler(f, protocol=2).dump(obj)


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
    root_path = check_root(root)
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
