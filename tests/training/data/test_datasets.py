"""Tests of the dataset readers (training.data.datasets, catalog, cifar, folders) and the synthetic CIFAR writer.

Every dataset here is made by the test itself in tmp_path, in the official on-disk layout, with code that
shares nothing with training.data: CIFAR-100 pickles are assembled opcode by opcode the way Python 2's
cPickle wrote the real files; Tiny-ImageNet and ImageNet trees are written with PIL. No network: a guard
makes any socket connection fail the test.
"""

from __future__ import annotations

import doctest
import pickle
import socket
import struct
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torchvision")
from PIL import Image  # noqa: E402
from torchvision import datasets as tv_datasets  # noqa: E402

from training.data import datasets as datasets_module  # noqa: E402
from training.data import folders as folders_module  # noqa: E402
from training.data.catalog import DATASET_INFO, DatasetNotFoundError
from training.data.cifar import write_synthetic_cifar
from training.data.datasets import load_dataset
from training.data.folders import TINY_IMAGENET_MD5

pytestmark = pytest.mark.usefixtures("one_thread")


def test_module_docstring_example():
    result = doctest.testmod(datasets_module, verbose=False)
    assert result.attempted > 0 and result.failed == 0


@pytest.fixture()
def no_network(monkeypatch):
    """Any attempt to open a network connection fails loudly (not as DatasetNotFoundError)."""

    def refuse(*args, **kwargs):
        raise AssertionError("training.data tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# --------------------------------------------------------------------------------------------------
# CIFAR-100 files written by hand: pickle protocol 2 with Python 2 strings, as in the real archive
# --------------------------------------------------------------------------------------------------


def _p2str(b: bytes) -> bytes:
    """A Python 2 ``str`` (SHORT_BINSTRING 'U' or BINSTRING 'T')."""
    return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b


def _p2int(v: int) -> bytes:
    return b"J" + struct.pack("<i", v)  # BININT


def _p2list(items: list[bytes]) -> bytes:
    return b"](" + b"".join(items) + b"e"  # EMPTY_LIST MARK ... APPENDS


def _p2dict(pairs: list[tuple[bytes, bytes]]) -> bytes:
    return b"}(" + b"".join(k + v for k, v in pairs) + b"u"  # EMPTY_DICT MARK ... SETITEMS


def _p2uint8_matrix(a: np.ndarray) -> bytes:
    """A numpy uint8 (n, m) array as Python 2 numpy pickled it: _reconstruct + BUILD with the raw bytes."""
    n, m = a.shape
    dtype = b"cnumpy\ndtype\n" + _p2str(b"u1") + b"K\x00K\x01\x87R"  # dtype('u1', 0, 1)
    dtype += b"(K\x03" + _p2str(b"|") + b"NNN" + _p2int(-1) + _p2int(-1) + b"K\x00tb"  # its state
    obj = b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + b"K\x00\x85" + _p2str(b"b") + b"\x87R"
    state = b"(K\x01" + _p2int(n) + _p2int(m) + b"\x86" + dtype + b"\x89" + _p2str(a.tobytes()) + b"tb"
    return obj + state


def _p2pickle(body: bytes) -> bytes:
    return b"\x80\x02" + body + b"."


def _write_cifar_by_hand(root: Path, train, test, names: list[str]) -> Path:
    """``train``/``test``: (data uint8 (N, 3072), fine labels list). Returns root/cifar-100-python."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    splits = (("train", train, b"training batch 1 of 1"), ("test", test, b"testing batch 1 of 1"))
    for split, (data, labels), batch in splits:
        body = _p2dict(
            [
                (_p2str(b"filenames"), _p2list([_p2str(f"img_{i}.png".encode()) for i in range(len(labels))])),
                (_p2str(b"batch_label"), _p2str(batch)),
                (_p2str(b"fine_labels"), _p2list([_p2int(v) for v in labels])),
                (_p2str(b"coarse_labels"), _p2list([_p2int(0) for _ in labels])),
                (_p2str(b"data"), _p2uint8_matrix(data)),
            ]
        )
        (folder / split).write_bytes(_p2pickle(body))
    meta = _p2dict(
        [
            (_p2str(b"fine_label_names"), _p2list([_p2str(n.encode()) for n in names])),
            (_p2str(b"coarse_label_names"), _p2list([_p2str(b"all")])),
        ]
    )
    (folder / "meta").write_bytes(_p2pickle(meta))
    return folder


def _random_cifar(seed: int, n: int, num_classes: int):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, num_classes, size=n)]
    return data, labels


def test_hand_written_cifar_pickle_decodes_like_the_real_files(tmp_path):
    """The helper's bytes give bytes keys with encoding='bytes' (CIFAR web page) and str with 'latin1'."""
    data, labels = _random_cifar(0, 3, 2)
    folder = _write_cifar_by_hand(tmp_path, (data, labels), (data, labels), ["a", "b"])
    with open(folder / "train", "rb") as f:
        as_bytes = pickle.load(f, encoding="bytes")
    with open(folder / "train", "rb") as f:
        as_str = pickle.load(f, encoding="latin1")
    assert as_bytes[b"fine_labels"] == labels and as_str["fine_labels"] == labels
    assert np.array_equal(as_bytes[b"data"], data) and np.array_equal(as_str["data"], data)


def test_cifar100_reader_returns_the_exact_pixels_and_labels(tmp_path):
    names = ["apple", "bee", "cup", "dog", "egg"]
    train = _random_cifar(1, 7, 5)
    test = _random_cifar(2, 3, 5)
    folder = _write_cifar_by_hand(tmp_path, train, test, names)
    for split, (data, labels) in (("train", train), ("test", test)):
        ds = load_dataset("cifar100", tmp_path, split)
        assert len(ds) == len(labels)
        assert list(ds.targets) == labels and all(type(t) is int for t in ds.targets)
        assert list(ds.classes) == names
        for k in range(len(labels)):
            image, label = ds[k]
            assert label == labels[k]
            assert image.mode == "RGB" and image.size == (32, 32)
        # one image, pixel by pixel against the CIFAR byte layout: R plane, G plane, B plane, row-major
        image, _ = ds[len(labels) - 1]
        row = data[len(labels) - 1]
        for r in range(32):
            for c in range(32):
                expected = tuple(int(row[ch * 1024 + r * 32 + c]) for ch in range(3))
                assert image.getpixel((c, r)) == expected
    # the cifar-100-python folder itself is accepted as root; the transform is applied
    ds = load_dataset("cifar100", folder, "test", transform=lambda im: np.asarray(im)[0, 0].tolist())
    assert ds[0][0] == [int(test[0][0][ch * 1024]) for ch in range(3)]


def test_cifar100_missing_raises_with_path_and_download_hint(tmp_path, no_network):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar100", tmp_path, "train")
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert str(tmp_path / "cifar-100-python" / "train") in message
    assert "--download" in message and "cifar100" in message


def test_cifar100_download_goes_through_torchvision(tmp_path, monkeypatch, no_network):
    """download=True asks torchvision's own CIFAR100 (md5-checked) for the files, then reads them."""
    calls = []
    train_data, test = _random_cifar(3, 4, 2), _random_cifar(4, 2, 2)

    def fake_cifar100(root, train=True, download=False, **kwargs):
        calls.append((root, train, download))
        _write_cifar_by_hand(Path(root), train_data, test, ["a", "b"])

    monkeypatch.setattr(tv_datasets, "CIFAR100", fake_cifar100)
    ds = load_dataset("cifar100", tmp_path, "test", download=True)
    assert calls == [(str(tmp_path), False, True)]
    assert list(ds.targets) == test[1]
    load_dataset("cifar100", tmp_path, "train", download=True)  # present now: no second download
    assert len(calls) == 1


# --------------------------------------------------------------------------------------------------
# The synthetic CIFAR-format set
# --------------------------------------------------------------------------------------------------

_CIFAR_KEYS = {b"data", b"fine_labels", b"coarse_labels", b"filenames", b"batch_label"}


def _load_pickle(path: Path, encoding: str = "bytes") -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding=encoding)


def test_write_synthetic_cifar_same_seed_same_bytes(tmp_path):
    a = write_synthetic_cifar(tmp_path / "a", num_classes=4, train_per_class=6, test_per_class=3, seed=5)
    b = write_synthetic_cifar(tmp_path / "b", num_classes=4, train_per_class=6, test_per_class=3, seed=5)
    c = write_synthetic_cifar(tmp_path / "c", num_classes=4, train_per_class=6, test_per_class=3, seed=6)
    assert a == tmp_path / "a" / "cifar-100-python"
    for name in ("train", "test", "meta"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "train").read_bytes() != (c / "train").read_bytes()
    assert sorted(p.name for p in a.iterdir()) == ["meta", "test", "train"]  # no temporary files left


def test_write_synthetic_cifar_files_are_cifar100_pickles(tmp_path):
    folder = write_synthetic_cifar(tmp_path, num_classes=7, train_per_class=4, test_per_class=2, seed=1)
    for split, per_class in (("train", 4), ("test", 2)):
        raw = (folder / split).read_bytes()
        assert raw[:2] == b"\x80\x02"  # pickle protocol 2, as the original files
        entry = _load_pickle(folder / split)
        assert set(entry) == _CIFAR_KEYS
        n = 7 * per_class
        assert isinstance(entry[b"data"], np.ndarray)
        assert entry[b"data"].dtype == np.uint8 and entry[b"data"].shape == (n, 3072)
        assert len(entry[b"fine_labels"]) == n and len(entry[b"coarse_labels"]) == n
        assert sorted(entry[b"fine_labels"]) == sorted(list(range(7)) * per_class)  # balanced
        assert all(type(v) is int and 0 <= v < 7 for v in entry[b"fine_labels"])
        assert all(isinstance(f, bytes) for f in entry[b"filenames"]) and len(entry[b"filenames"]) == n
        assert len(set(entry[b"filenames"])) == n
        assert isinstance(entry[b"batch_label"], bytes)
        # torchvision's reading (encoding='latin1') sees str keys, like for the real files
        assert set(_load_pickle(folder / split, "latin1")) == {k.decode() for k in _CIFAR_KEYS}
    meta = _load_pickle(folder / "meta")
    assert set(meta) == {b"fine_label_names", b"coarse_label_names"}
    assert len(meta[b"fine_label_names"]) == 7 and all(isinstance(x, bytes) for x in meta[b"fine_label_names"])
    coarse = _load_pickle(folder / "train")[b"coarse_labels"]
    assert max(coarse) < len(meta[b"coarse_label_names"])


def test_load_synthetic_writes_default_files_once_and_reads_them(tmp_path, no_network):
    ds = load_dataset("synthetic", tmp_path, "train")
    folder = tmp_path / "synthetic" / "cifar-100-python"
    reference = write_synthetic_cifar(tmp_path / "ref")  # defaults = what load_dataset writes
    for name in ("train", "test", "meta"):
        assert (folder / name).read_bytes() == (reference / name).read_bytes()
    entry = _load_pickle(folder / "train")
    assert len(ds) == len(entry[b"fine_labels"]) == 500
    assert list(ds.targets) == entry[b"fine_labels"]
    assert len(ds.classes) == DATASET_INFO["synthetic"].num_classes == 10
    image, label = ds[11]
    expected = entry[b"data"][11].reshape(3, 32, 32).transpose(1, 2, 0)
    assert np.array_equal(np.asarray(image), expected) and label == entry[b"fine_labels"][11]
    assert len(load_dataset("synthetic", tmp_path, "test")) == 200
    # existing files are read, not regenerated
    write_synthetic_cifar(tmp_path / "synthetic", num_classes=3, train_per_class=2, test_per_class=1)
    assert len(load_dataset("synthetic", tmp_path, "train").classes) == 3


def test_synthetic_mean_std_in_dataset_info(tmp_path):
    entry = _load_pickle(write_synthetic_cifar(tmp_path) / "train")
    planes = entry[b"data"].reshape(-1, 3, 1024).astype(np.float64) / 255.0
    info = DATASET_INFO["synthetic"]
    assert planes.mean(axis=(0, 2)) == pytest.approx(info.mean, abs=1e-3)
    assert planes.std(axis=(0, 2)) == pytest.approx(info.std, abs=1e-3)
    assert info.image_size == 32


def test_synthetic_classes_are_learnable_but_not_from_one_pixel(tmp_path):
    """Nearest class mean on raw pixels (train means, test images) is far above chance, below perfect;
    no single pixel value separates the classes."""
    folder = write_synthetic_cifar(tmp_path)  # the defaults the smoke runs use
    tr, te = _load_pickle(folder / "train"), _load_pickle(folder / "test")
    x, y = tr[b"data"].astype(np.float64), np.array(tr[b"fine_labels"])
    xt, yt = te[b"data"].astype(np.float64), np.array(te[b"fine_labels"])
    means = np.stack([x[y == c].mean(axis=0) for c in range(10)])
    predicted = ((xt[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    accuracy = float((predicted == yt).mean())
    chance = 0.1
    assert accuracy >= 5 * chance
    assert accuracy < 0.98
    best_pixel = max(
        float((np.abs(xt[:, j, None] - means[None, :, j]).argmin(1) == yt).mean()) for j in range(0, 3072, 7)
    )
    assert best_pixel < 0.5


def test_synthetic_images_are_smooth_in_the_cifar_layout(tmp_path):
    """The class templates have 1 to 3 cycles per image, so class-mean images read through the CIFAR
    reader (R, G, B planes, row-major) keep most of their power at |frequency| <= 3 cycles per image;
    a wrong byte layout would scatter it (white noise puts 49/1024 ~ 5% there)."""
    ds = load_dataset("synthetic", tmp_path, "train")
    x = np.stack([np.asarray(ds[i][0], dtype=np.float64) for i in range(len(ds))])  # (N, 32, 32, 3)
    y = np.array(ds.targets)
    freq = np.abs(np.fft.fftfreq(32, d=1 / 32))
    low = (freq[:, None] <= 3) & (freq[None, :] <= 3)
    low_power = total_power = 0.0
    for c in range(len(ds.classes)):
        mean_image = x[y == c].mean(axis=0)
        for ch in range(3):
            plane = mean_image[:, :, ch] - mean_image[:, :, ch].mean()
            power = np.abs(np.fft.fft2(plane)) ** 2
            low_power += float(power[low].sum())
            total_power += float(power.sum())
    assert low_power / total_power > 0.5


# --------------------------------------------------------------------------------------------------
# Tiny-ImageNet, official layout
# --------------------------------------------------------------------------------------------------

_WNIDS = ["n09999999", "n01443537", "n04000000"]  # deliberately unsorted, as in the real wnids.txt
_COLOURS = {"n09999999": (220, 30, 30), "n01443537": (30, 220, 30), "n04000000": (30, 30, 220)}


def _jpeg(path: Path, colour, mode: str = "RGB", size=(64, 64)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "L":
        Image.new("L", size, int(sum(colour) / 3)).save(path, format="JPEG")
    else:
        Image.new("RGB", size, colour).save(path, format="JPEG", quality=95)


def _write_tiny_imagenet(parent: Path) -> tuple[Path, list[tuple[str, str]]]:
    base = parent / "tiny-imagenet-200"
    base.mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(_WNIDS) + "\n")
    (base / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in _WNIDS))
    for w in _WNIDS:
        boxes = []
        for i in range(2):
            _jpeg(base / "train" / w / "images" / f"{w}_{i}.JPEG", _COLOURS[w])
            boxes.append(f"{w}_{i}.JPEG\t0\t0\t63\t63")
        (base / "train" / w / f"{w}_boxes.txt").write_text("\n".join(boxes) + "\n")
    val = [("val_0.JPEG", _WNIDS[2]), ("val_1.JPEG", _WNIDS[0]), ("val_2.JPEG", _WNIDS[1]),
           ("val_3.JPEG", _WNIDS[2]), ("val_4.JPEG", _WNIDS[0])]  # fmt: skip
    for fname, w in val:
        _jpeg(base / "val" / "images" / fname, _COLOURS[w])
    _jpeg(base / "val" / "images" / "val_5.JPEG", _COLOURS[_WNIDS[1]], mode="L")  # grayscale, as some are
    val.append(("val_5.JPEG", _WNIDS[1]))
    lines = [f"{fname}\t{w}\t1\t2\t40\t50" for fname, w in val]
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    _jpeg(base / "test" / "images" / "test_0.JPEG", (128, 128, 128))  # the unlabelled test split is ignored
    return base, val


def _nearest_wnid(image: Image.Image) -> str:
    pixel = np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(0)
    return min(_COLOURS, key=lambda w: float(((pixel - np.array(_COLOURS[w])) ** 2).sum()))


def test_tiny_imagenet_both_splits_and_both_roots(tmp_path, no_network):
    base, val = _write_tiny_imagenet(tmp_path)
    for root in (base, tmp_path):
        train = load_dataset("tiny-imagenet", root, "train")
        test = load_dataset("tiny-imagenet", root, "test")
        assert list(train.classes) == list(test.classes) == sorted(_WNIDS)
        assert len(train) == 6 and len(test) == len(val)
        index = {w: i for i, w in enumerate(sorted(_WNIDS))}
        # val labels follow the annotation file
        assert list(test.targets) == [index[w] for _, w in val]
        for k, (fname, w) in enumerate(val):
            image, label = test[k]
            assert label == index[w] and image.mode == "RGB" and image.size == (64, 64)
            if fname != "val_5.JPEG":  # the grey one carries no colour
                assert _nearest_wnid(image) == w  # the file read is the one annotated
        # train labels: folder name -> same index as in val (checked through the image colour)
        for k in range(len(train)):
            image, label = train[k]
            assert sorted(_WNIDS)[label] == _nearest_wnid(image)
        assert sorted(train.targets) == [0, 0, 1, 1, 2, 2]


def test_tiny_imagenet_missing_names_paths_and_download(tmp_path, no_network):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("tiny-imagenet", tmp_path, "test")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str(tmp_path) in message and str(tmp_path / "tiny-imagenet-200") in message
    assert "--download" in message and "val_annotations.txt" in message


@pytest.mark.parametrize("inside", [False, True])
def test_tiny_imagenet_download_extracts_next_to_root(tmp_path, monkeypatch, no_network, inside):
    calls = []

    def fake_download(url, download_root, md5=None, **kwargs):
        calls.append((url, Path(download_root), md5))
        _write_tiny_imagenet(Path(download_root))

    monkeypatch.setattr(folders_module, "download_and_extract_archive", fake_download)  # the Tiny-ImageNet reader's module
    root = tmp_path / "tiny-imagenet-200" if inside else tmp_path
    ds = load_dataset("tiny-imagenet", root, "train", download=True)
    assert calls == [("http://cs231n.stanford.edu/tiny-imagenet-200.zip", tmp_path, TINY_IMAGENET_MD5)]
    assert len(ds) == 6


def test_tiny_imagenet_unknown_wnid_in_annotations(tmp_path):
    base, _ = _write_tiny_imagenet(tmp_path)
    with open(base / "val" / "val_annotations.txt", "a") as f:
        f.write("val_0.JPEG\tn00000000\t0\t0\t1\t1\n")
    with pytest.raises(ValueError, match="n00000000"):
        load_dataset("tiny-imagenet", base, "test")


# --------------------------------------------------------------------------------------------------
# ImageNet folders
# --------------------------------------------------------------------------------------------------


def test_imagenet_class_folders(tmp_path, no_network):
    colours = {"n01440764": (200, 40, 40), "n01443537": (40, 200, 40), "n15075141": (40, 40, 200)}
    for w, colour in colours.items():
        for i in range(2):
            _jpeg(tmp_path / "train" / w / f"{w}_{i}.JPEG", colour, size=(50, 40))
    # val holds only two of the three classes: indices must still follow train's class list
    _jpeg(tmp_path / "val" / "n15075141" / "ILSVRC2012_val_00000001.JPEG", colours["n15075141"], size=(40, 60))
    _jpeg(tmp_path / "val" / "n01443537" / "ILSVRC2012_val_00000002.JPEG", colours["n01443537"], size=(40, 60))
    train = load_dataset("imagenet", tmp_path, "train")
    test = load_dataset("imagenet", tmp_path, "test")
    assert list(train.classes) == list(test.classes) == sorted(colours)
    assert sorted(train.targets) == [0, 0, 1, 1, 2, 2]
    assert sorted(test.targets) == [1, 2]
    for k in range(len(test)):
        image, label = test[k]
        pixel = np.asarray(image, dtype=np.float64).reshape(-1, 3).mean(0)
        nearest = min(colours, key=lambda w: float(((pixel - np.array(colours[w])) ** 2).sum()))
        assert sorted(colours)[label] == nearest


def test_imagenet_missing_or_flat_val(tmp_path, no_network):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("imagenet", tmp_path, "train", download=True)
    assert str(tmp_path / "train") in str(info.value) and "image-net.org" in str(info.value)
    _jpeg(tmp_path / "train" / "n01440764" / "a.JPEG", (1, 2, 3))
    _jpeg(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG", (1, 2, 3))  # not sorted into class folders
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("imagenet", tmp_path, "test")
    assert str(tmp_path / "val") in str(info.value) and "class folders" in str(info.value)


# --------------------------------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"name": "cifar10"}, "name"),
        ({"split": "val"}, "split"),
        ({"root": None}, "root"),
        ({"root": ""}, "root"),
        ({"transform": 5}, "transform"),
        ({"download": "yes"}, "download"),
    ],
)
def test_load_dataset_bad_arguments(tmp_path, kwargs, argument):
    args = {"name": "synthetic", "root": tmp_path, "split": "train"} | kwargs
    download = args.pop("download", False)
    with pytest.raises(ValueError, match=argument):
        load_dataset(args["name"], args["root"], args["split"], args.get("transform"), download=download)
    assert not (tmp_path / "synthetic").exists()  # nothing written before the arguments are checked


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [({"num_classes": 1}, "num_classes"), ({"num_classes": 101}, "num_classes"),
     ({"train_per_class": 0}, "train_per_class"), ({"test_per_class": 1.5}, "test_per_class"),
     ({"seed": -1}, "seed")],
)  # fmt: skip
def test_write_synthetic_cifar_bad_arguments(tmp_path, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        write_synthetic_cifar(tmp_path, **kwargs)
