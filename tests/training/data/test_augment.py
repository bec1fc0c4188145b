"""Tests of training.data.augment: the pre-training policies and the evaluation transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.data.augment import POLICIES, eval_transform, pretrain_transform
from training.data.catalog import DATASET_INFO

pytest.importorskip("torchvision")
from PIL import Image  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------------------
# Transforms
# --------------------------------------------------------------------------------------------------


def _photo(size=(40, 48), seed: int = 0) -> Image.Image:
    """A smooth random colour image (w, h) = size."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.BILINEAR)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("size", [16, 32, 64, 224])
def test_pretrain_transform_output(policy, size):
    torch.manual_seed(size)
    t = pretrain_transform(policy, size, DATASET_INFO["imagenet"].mean, DATASET_INFO["imagenet"].std)
    image = _photo((size + 7, size + 3)) if size < 224 else _photo((60, 50))
    out = t(image)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (3, size, size)
    assert torch.isfinite(out).all()


def _flat(t) -> list:
    out = []
    for x in getattr(t, "transforms", [t]):
        out.extend(_flat(x) if isinstance(x, (v2.Compose, v2.RandomApply)) else [x])
    return out


@pytest.mark.parametrize(
    ("size", "strength", "kernel"), [(16, 0.5, None), (32, 0.5, None), (64, 1.0, 7), (224, 1.0, 23)]
)
def test_simclr_settings(size, strength, kernel):
    """Chen et al. 2020a, App. A: jitter (0.8s, 0.8s, 0.8s, 0.2s) w.p. 0.8, grey 0.2, blur 10% of S w.p. 0.5."""
    t = pretrain_transform("simclr", size, (0.5,) * 3, (0.5,) * 3)
    parts = _flat(t)
    crop = next(p for p in parts if isinstance(p, v2.RandomResizedCrop))
    assert tuple(crop.scale) == (0.08, 1.0) and tuple(crop.size) == (size, size)
    jitter = next(p for p in parts if isinstance(p, v2.ColorJitter))
    assert jitter.brightness == pytest.approx((1 - 0.8 * strength, 1 + 0.8 * strength))
    assert jitter.hue == pytest.approx((-0.2 * strength, 0.2 * strength))
    applies = [p for p in t.transforms if isinstance(p, v2.RandomApply)]
    assert applies[0].p == 0.8
    assert next(p for p in parts if isinstance(p, v2.RandomGrayscale)).p == 0.2
    blurs = [p for p in parts if isinstance(p, v2.GaussianBlur)]
    if kernel is None:
        assert not blurs
    else:
        assert list(blurs[0].kernel_size) == [kernel, kernel] and list(blurs[0].sigma) == [0.1, 2.0]
        assert kernel % 2 == 1 and abs(kernel - 0.1 * size) <= 1
        assert applies[1].p == 0.5


def test_randaugment_and_autoaugment_settings():
    stats = ((0.5,) * 3, (0.5,) * 3)
    ra = [p for p in _flat(pretrain_transform("randaugment", 64, *stats)) if isinstance(p, v2.RandAugment)]
    assert len(ra) == 1 and ra[0].num_ops == 3  # paper Sec. 5: three operations
    aa = [p for p in _flat(pretrain_transform("autoaugment", 64, *stats)) if isinstance(p, v2.AutoAugment)]
    assert len(aa) == 1 and aa[0].policy == v2.AutoAugmentPolicy.IMAGENET


@pytest.mark.parametrize(
    ("args", "argument"),
    [(("simclr2", 32), "policy"), (("simclr", 0), "image_size"), (("simclr", 32.0), "image_size")],
)
def test_pretrain_transform_bad_arguments(args, argument):
    with pytest.raises(ValueError, match=argument):
        pretrain_transform(*args, (0.5,) * 3, (0.5,) * 3)


@pytest.mark.parametrize(
    ("mean", "std", "argument"),
    [((0.5, 0.5), (0.5,) * 3, "mean"), ((0.5,) * 3, (0.5, 0.0, 0.5), "std"), (None, (0.5,) * 3, "mean"),
     ((0.5,) * 3, (0.5, float("nan"), 0.5), "std")],
)  # fmt: skip
def test_transforms_bad_statistics(mean, std, argument):
    with pytest.raises(ValueError, match=argument):
        pretrain_transform("simclr", 32, mean, std)
    with pytest.raises(ValueError, match=argument):
        eval_transform(32, mean, std)


def test_eval_transform_deterministic_and_normalised():
    t = eval_transform(16, (0.1, 0.2, 0.3), (0.5, 0.25, 2.0))
    image = _photo((32, 32))
    a, b = t(image), t(image)
    assert a.dtype == torch.float32 and a.shape == (3, 16, 16) and torch.equal(a, b)
    # a flat colour: (c / 255 - mean) / std in every pixel, computed by hand
    flat = eval_transform(16, (0.1, 0.2, 0.3), (0.5, 0.25, 2.0))(Image.new("RGB", (32, 32), (51, 102, 255)))
    for ch, (c, m, s) in enumerate(zip((51, 102, 255), (0.1, 0.2, 0.3), (0.5, 0.25, 2.0))):
        assert torch.allclose(flat[ch], torch.full((16, 16), (c / 255 - m) / s), atol=1e-5)
    # non-square inputs still give (3, S, S); 224 uses resize 256 + centre crop
    assert eval_transform(16, (0.5,) * 3, (0.5,) * 3)(_photo((40, 24))).shape == (3, 16, 16)
    big = eval_transform(224, (0.0,) * 3, (1.0,) * 3)
    wide = Image.new("RGB", (300, 256), (0, 0, 0))
    wide.paste((255, 255, 255), (0, 0, 38, 256))  # white in the 38 left columns
    out = big(wide)
    assert out.shape == (3, 224, 224)
    # Resize(256) leaves the 300 x 256 image as is; CenterCrop(224) drops (300 - 224) / 2 = 38 columns per side
    assert float(out[:, :, 0].mean()) < 0.05 and float(out[:, :, -1].mean()) < 0.05
