"""Tests of training.data.views: the class-stratified labelled subset, the masked labels and the two views."""

from __future__ import annotations

import doctest
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

pytest.importorskip("torchvision")
from PIL import Image  # noqa: E402

from training.data import views as views_module  # noqa: E402
from training.data.augment import eval_transform, pretrain_transform
from training.data.views import TwoViewDataset, labeled_subset, masked_labels

pytestmark = pytest.mark.usefixtures("one_thread")


def test_module_docstring_example():
    result = doctest.testmod(views_module, verbose=False)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------------------------------
# Labelled subsets
# --------------------------------------------------------------------------------------------------

_COUNTS = {0: 25, 1: 10, 2: 3, 3: 1, 4: 40, 6: 7}  # class 5 absent


def _targets(seed: int = 0) -> np.ndarray:
    labels = np.concatenate([np.full(n, c) for c, n in _COUNTS.items()])
    return np.random.default_rng(seed).permutation(labels)


def _expected_count(fraction: float, n: int) -> int:
    """round(fraction * n) half up, at least 1, in exact rational arithmetic."""
    x = Fraction(fraction) * n
    return max(1, math.floor(x + Fraction(1, 2)))


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.9])
def test_labeled_subset_is_stratified(fraction):
    targets = _targets()
    idx = labeled_subset(targets, fraction, seed=3)
    assert idx.dtype == np.int64 and idx.ndim == 1
    assert np.all(np.diff(idx) > 0)  # sorted, no repeats
    for c, n in _COUNTS.items():
        assert int((targets[idx] == c).sum()) == _expected_count(fraction, n)
    # input type does not matter
    assert np.array_equal(labeled_subset(targets.tolist(), fraction, seed=3), idx)
    assert np.array_equal(labeled_subset(torch.from_numpy(targets), fraction, seed=3), idx)


def test_labeled_subset_seeds_and_full_fraction():
    targets = _targets()
    a = labeled_subset(targets, 0.3, seed=0)
    assert np.array_equal(a, labeled_subset(targets, 0.3, seed=0))
    assert not np.array_equal(a, labeled_subset(targets, 0.3, seed=1))
    assert np.array_equal(labeled_subset(targets, 1.0, seed=0), np.arange(len(targets)))
    # 10% of 25 is 2.5: half up gives 3
    assert int((targets[labeled_subset(targets, 0.1, seed=0)] == 0).sum()) == 3


@pytest.mark.parametrize("fraction", [0, 0.0, -0.1, 1.0001, 2, float("nan"), float("inf"), True, "0.1", None])
def test_labeled_subset_bad_fraction(fraction):
    with pytest.raises(ValueError, match="fraction"):
        labeled_subset(_targets(), fraction, seed=0)


@pytest.mark.parametrize("targets", [[], [[0, 1]], [0, -1, 2], [0.0, 1.0], "abc"])
def test_labeled_subset_bad_targets(targets):
    with pytest.raises(ValueError, match="targets"):
        labeled_subset(targets, 0.5, seed=0)


def test_labeled_subset_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        labeled_subset(_targets(), 0.5, seed=-3)


def test_masked_labels_hides_exactly_the_unlabelled():
    targets = _targets()
    idx = labeled_subset(targets, 0.2, seed=4)
    masked = masked_labels(targets, idx)
    assert masked.dtype == torch.long and masked.shape == (len(targets),)
    chosen = set(idx.tolist())
    for i in range(len(targets)):
        assert int(masked[i]) == (int(targets[i]) if i in chosen else -1)
    assert torch.equal(masked_labels(targets, np.arange(len(targets))), torch.from_numpy(targets).long())
    assert torch.all(masked_labels(targets, np.array([], dtype=np.int64)) == -1)
    with pytest.raises(ValueError, match="labeled"):
        masked_labels(targets, np.array([len(targets)]))
    with pytest.raises(ValueError, match="labeled"):
        masked_labels(targets, np.array([0.5]))


# --------------------------------------------------------------------------------------------------
# Two views
# --------------------------------------------------------------------------------------------------


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, n: int = 6):
        rng = np.random.default_rng(0)
        self.images = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]
        self.targets = [i % 3 for i in range(n)]

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.targets[i]


def test_two_view_dataset_items():
    base = _ListDataset()
    labels = masked_labels(base.targets, np.array([1, 4]))
    ds = TwoViewDataset(base, pretrain_transform("simclr", 16, (0.5,) * 3, (0.25,) * 3), labels)
    assert len(ds) == len(base)
    torch.manual_seed(0)
    v1, v2_, label, index = ds[4]
    assert v1.shape == v2_.shape == (3, 16, 16) and v1.dtype == v2_.dtype == torch.float32
    assert not torch.equal(v1, v2_)
    assert label == base.targets[4] and index == 4
    assert ds[3][2] == -1 and ds[3][3] == 3
    torch.manual_seed(0)
    w1, w2, _, _ = ds[4]
    assert torch.equal(v1, w1) and torch.equal(v2_, w2)  # torch's generator drives the draws
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch[0].shape == (3, 3, 16, 16) and batch[2].tolist() == [-1, 1, -1] and batch[3].tolist() == [0, 1, 2]


def test_two_view_dataset_bad_labels():
    base = _ListDataset()
    t = eval_transform(16, (0.5,) * 3, (0.25,) * 3)
    for labels in (torch.zeros(5, dtype=torch.long), torch.zeros(6), [0] * 6, torch.full((6,), -2)):
        with pytest.raises(ValueError, match="labels"):
            TwoViewDataset(base, t, labels)
    with pytest.raises(ValueError, match="transform"):
        TwoViewDataset(base, None, torch.zeros(6, dtype=torch.long))
