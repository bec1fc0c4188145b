"""Augmentation policies and the evaluation transform of the CLOP paper's ResNet-50 benchmarks.

The paper (arXiv 2403.18699, Section 5) ablates the augmentation policy on Tiny-ImageNet: RandAugment
with three operations, AutoAugment with the ImageNet policy (Cubuk et al. 2018) and the SimCLR policy
(Chen et al. 2020a). This module provides:

- :func:`pretrain_transform`, :func:`eval_transform`: the augmentation policies and the evaluation
  transform (image -> normalised float tensor ``(3, S, S)``); :data:`POLICIES`, :data:`FLIPPING_POLICIES`.
- :class:`DigitsPolicy` and the ``DIGITS_*`` constants: the ``"digits"`` policy (ours, not in the paper)
  for the 8x8 digits of :mod:`training.data.digits`, with the reason for each choice; it is
  :func:`draw_digits_view` (a view's random numbers, :class:`DigitsDraws`) then :func:`augment_digits_batch`
  (any batch of views, on any device), which :mod:`training.data.loader` calls on whole batches.
- :func:`default_policy`: the pre-training policy of a dataset.
- :class:`SimCLRTransform`: what :func:`pretrain_transform` returns for ``"simclr"`` (a ``v2.Compose``),
  with the settings that :class:`training.data.augment_batched.BatchedSimCLR`, its batched twin, reads.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from clop.util.checks import check_choice, check_size
from training.data.catalog import DATASETS

__all__ = [
    "POLICIES",
    "FLIPPING_POLICIES",
    "default_policy",
    "pretrain_transform",
    "SimCLRTransform",
    "DigitsPolicy",
    "DigitsDraws",
    "draw_digits_view",
    "augment_digits_batch",
    "eval_transform",
]

POLICIES: tuple[str, ...] = ("simclr", "randaugment", "autoaugment", "digits")
FLIPPING_POLICIES: tuple[str, ...] = ("simclr", "randaugment", "autoaugment")
"""The policies that flip images horizontally (and crop down to 8 % of the area, and jitter colour)."""


def default_policy(dataset: str) -> str:
    """The pre-training augmentation policy of a dataset: ``"digits"`` for digits, else ``"simclr"`` (paper)."""
    return "digits" if check_choice("dataset", dataset, DATASETS) == "digits" else "simclr"


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


def _to_normalised_tensor(mean: tuple[float, ...], std: tuple[float, ...]) -> list[Any]:
    """Image -> float32 tensor (3, S, S) on the [0, 1] scale, normalised; ``v2.RGB`` replicates a grey
    channel (the digits) to three and leaves RGB images as they are."""
    return [v2.ToImage(), v2.RGB(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]


# The "digits" policy (ours; the paper has no 8x8 data). Each choice and its reason:
DIGITS_MAX_SHIFT = 0.125
"""Translation by a whole number of pixels, uniform in [-m, m] per axis with m = round(S / 8) (1 px at 8 px):
the digits are size-normalised and centred in their box with little margin, so one pixel moves a digit
without cutting strokes off, while two (a quarter of the side) often would. The uncovered border is 0 (no ink)."""
DIGITS_SCALE = (0.9, 1.1)
"""Zoom factor, uniform, bilinear, about the image centre: handwriting size varies a little after the size
normalisation; zooming in more pushes strokes out of the 8x8 frame, zooming out more merges neighbouring
strokes into one pixel."""
DIGITS_BRIGHTNESS = 0.4
DIGITS_CONTRAST = 0.4
DIGITS_JITTER_P = 0.8
"""Brightness, then contrast, factors uniform in [0.6, 1.4], applied together with probability 0.8 (SimCLR's
colour-jitter probability), clipped to [0, 1]: a pixel counts the ink in a 4x4 block of the 32x32 bitmap,
so its level follows pen width and pressure, not the digit's identity. No saturation or hue: no colour."""
DIGITS_NOISE_SIGMA = 0.05
"""Gaussian pixel noise, std 0.05 on the [0, 1] scale (0.8 of one of the 16 ink levels), clipped to [0, 1]:
two views cannot then be matched by exact pixel values. Added before the grey channel is replicated, so
the three channels stay equal."""
# Left out on purpose: flips (a mirrored digit is another symbol or none: 2 / 5, 3 / epsilon; an
# upside-down 6 is a 9), colour jitter and grayscale (the digits are grey), blur (one pixel is an
# eighth of the digit: a blur erases strokes) and SimCLR's crop down to 8 % of the area (it keeps a
# pixel or two of the digit).


class DigitsDraws(NamedTuple):
    """The random numbers of the ``"digits"`` policy for a batch of B views (:func:`draw_digits_view` draws
    them, :func:`augment_digits_batch` applies them): ``u`` float32 ``(B, 4)`` uniform on [0, 1) (zoom,
    brightness, contrast, jitter or not), ``shift`` int64 ``(B, 2)`` whole pixels (x, y), ``noise`` float32
    ``(B, C, S, S)`` standard normal."""

    u: torch.Tensor
    shift: torch.Tensor
    noise: torch.Tensor

    @staticmethod
    def empty(views: int, channels: int, size: int) -> DigitsDraws:
        """Room for the numbers of ``views`` views of ``channels x size x size`` images, on the CPU."""
        return DigitsDraws(torch.empty(views, 4), torch.empty(views, 2, dtype=torch.long),
                           torch.empty(views, channels, size, size))

    def to(self, device: torch.device | str) -> DigitsDraws:
        return DigitsDraws(*(t.to(device) for t in self))

    def rows(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(u, shift, noise)`` of each view: views into these tensors, for :func:`draw_digits_view`."""
        return list(zip(self.u.unbind(0), self.shift.unbind(0), self.noise.unbind(0)))


def draw_digits_view(generator: torch.Generator | None, row: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                     max_shift: int) -> None:
    """Draw the random numbers of one view of the ``"digits"`` policy into ``row`` (``u``, ``shift``,
    ``noise`` of one view: :meth:`DigitsDraws.rows`) from ``generator`` (``None``: torch's global CPU
    generator), in this order: ``rand(4)``, ``randint(-max_shift, max_shift + 1, (2,))``, ``randn(C, S, S)``
    (as the in-place ``uniform_``, ``random_``, ``normal_``: the same numbers, and half the Python overhead
    of ``out=``). The per-image path (:class:`DigitsPolicy`) and the batched one (:mod:`training.data.loader`)
    both draw through here, so that one generator state gives one view on either path."""
    u, shift, noise = row
    u.uniform_(generator=generator)
    shift.random_(-max_shift, max_shift + 1, generator=generator)
    noise.normal_(generator=generator)


def _grey_mean(x: torch.Tensor) -> torch.Tensor:
    """Per-image mean ``(B, 1, 1, 1)`` of the grey image (RGB: ITU-R 601 luma, as torchvision's
    ``adjust_contrast``)."""
    grey = x if x.shape[1] == 1 else x[:, 0:1] * 0.2989 + x[:, 1:2] * 0.587 + x[:, 2:3] * 0.114
    return grey.mean(dim=(1, 2, 3), keepdim=True)


def augment_digits_batch(x: torch.Tensor, draws: DigitsDraws, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """The ``"digits"`` policy on a batch: ``x`` float ``(B, C, S, S)`` on [0, 1], C 1 (grey) or 3, and the
    views' random numbers (on ``x``'s device) -> float ``(B, 3, S, S)``, normalised by ``mean``, ``std``
    (``(3,)``). Runs on any device; :class:`DigitsPolicy` is this function with B = 1.

    In this order, each view with its own numbers:

    * zoom ``s = 0.9 + 0.2 u0`` about the image centre and shift ``(tx, ty)`` in pixels: the output pixel at
      ``p`` (pixel units from the centre) is the bilinear interpolation of the input at ``(p - t) / s``, with
      zero outside the image, times the in-image weight of that interpolation (torchvision's
      ``affine(..., interpolation=BILINEAR, fill=0)`` on tensors: its inverse matrix, its pixel-centre grid
      normalised by ``S / 2``, ``grid_sample(align_corners=False)`` and its fill blend);
    * with probability 0.8 (``u3 < 0.8``): brightness ``b = 1 + 0.4 (2 u1 - 1)``, ``clamp(b x, 0, 1)``, then
      contrast ``c = 1 + 0.4 (2 u2 - 1)``, ``clamp(c x + (1 - c) m, 0, 1)``, m the image's mean grey level
      (torchvision's ``adjust_brightness`` / ``adjust_contrast`` for float images);
    * ``clamp(x + 0.05 noise, 0, 1)``; a grey image replicated to 3 channels; ``(x - mean) / std``.

    Every step works on each view on its own (elementwise, a reduction within the view, ``grid_sample``'s
    per-pixel interpolation) and no two are fused (no ``addcmul`` / ``lerp`` / ``alpha=``): on the CPU a
    view comes out the same bits whatever batch it is computed in, one image or 256 (tests check it; on
    CUDA a reduction's order may depend on the batch's shape, so that holds to rounding only).
    """
    if x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[2] != x.shape[3]:
        raise ValueError(f"x must be a batch (B, 1 or 3, S, S) of square images; got shape {tuple(x.shape)}")
    b, _, size, _ = x.shape
    u = draws.u.double()  # the per-view numbers in float64, as torchvision computes them from Python floats
    # the inverse affine map of torchvision's _get_inverse_affine_matrix (no rotation, no shear),
    # input = (output - t) / s, as [1/s, -tx/s, -ty/s] on grid_sample's [-1, 1] scale (divided by S / 2)
    inverse = 1.0 / (u[:, :1] * (DIGITS_SCALE[1] - DIGITS_SCALE[0]) + DIGITS_SCALE[0])
    affine = (torch.cat((inverse, -(inverse * draws.shift)), dim=1) / (size * 0.5)).to(x.dtype).view(b, 1, 1, 3)
    grid = _pixel_centres(size, x.device, x.dtype) * affine[..., :1] + affine[..., 1:]
    sampled = torch.nn.functional.grid_sample(torch.cat((x, torch.ones_like(x[:, :1])), dim=1), grid,
                                              mode="bilinear", padding_mode="zeros", align_corners=False)
    x = sampled[:, :-1] * sampled[:, -1:]  # torchvision's fill blend with fill 0: (img - 0) * mask + 0

    factors = (u[:, 1:3] * 2 - 1) * _JITTER_STRENGTHS.to(u.device) + 1  # brightness, contrast: 1 + s (2 u - 1)
    weights = torch.cat((factors, 1 - factors[:, 1:]), dim=1).to(x.dtype)  # b, c, 1 - c
    brightness, contrast, rest = weights.view(b, 3, 1, 1, 1).unbind(1)
    jittered = (x * brightness).clamp_(0.0, 1.0)
    jittered = (jittered * contrast + _grey_mean(jittered) * rest).clamp_(0.0, 1.0)
    x = torch.where((u[:, 3] < DIGITS_JITTER_P).view(b, 1, 1, 1), jittered, x)
    x = (x + draws.noise * DIGITS_NOISE_SIGMA).clamp_(0.0, 1.0)
    return (x.expand(b, 3, size, size) - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


_JITTER_STRENGTHS = torch.tensor([DIGITS_BRIGHTNESS, DIGITS_CONTRAST], dtype=torch.float64)


@functools.lru_cache(maxsize=16)
def _pixel_centres(size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(S, S, 2)``: (x, y) of each pixel centre, in pixels from the image centre (torchvision's base grid)."""
    c = torch.arange(size, dtype=dtype, device=device) - (size - 1) * 0.5
    return torch.stack((c.expand(size, size), c[:, None].expand(size, size)), dim=-1)


class DigitsPolicy:
    """The ``"digits"`` pre-training policy: image -> float32 tensor ``(3, S, S)``, normalised.

    The image as float on [0, 1] (:meth:`prepare`: ``Resize(S)`` + ``CenterCrop(S)`` only when it is not
    already ``S x S``: the 8 px digits at ``S = 8`` are not resampled), then :func:`augment_digits_batch`
    with B = 1: a random shift and zoom, brightness and contrast with probability 0.8, Gaussian noise, the
    grey channel replicated to three, ``(x - mean) / std``. The random numbers are drawn by
    :func:`draw_digits_view` from torch's global generator (as torchvision's transforms), so
    :class:`training.data.views.TwoViewDataset`'s seeded views cover it; :mod:`training.data.loader` draws the same
    numbers from a generator per image and augments whole batches with the same function, on the training
    device. Parameters and reasons: the ``DIGITS_*`` constants.
    """

    def __init__(self, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.size = size
        self.shift = max(1, round(DIGITS_MAX_SHIFT * size))
        self.mean = torch.tensor(mean, dtype=torch.float32)
        self.std = torch.tensor(std, dtype=torch.float32)
        self._resize = v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size)])

    def prepare(self, image: Any) -> torch.Tensor:
        """The image as a plain float32 tensor ``(C, S, S)`` on [0, 1], C 1 or 3 (what is augmented)."""
        x = F.to_dtype(F.to_image(image), torch.float32, scale=True)
        if tuple(x.shape[-2:]) != (self.size, self.size):
            x = self._resize(x)
        x = x.as_subclass(torch.Tensor)
        if x.shape[0] not in (1, 3):
            raise ValueError(f"the digits policy takes grey or RGB images; got {x.shape[0]} channels")
        return x

    def draw(self, generator: torch.Generator | None, row: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
        """The random numbers of one view into ``row`` (:func:`draw_digits_view`)."""
        draw_digits_view(generator, row, self.shift)

    def augment(self, x: torch.Tensor, draws: DigitsDraws) -> torch.Tensor:
        """:func:`augment_digits_batch` with this policy's normalisation, on ``x``'s device."""
        return augment_digits_batch(x, draws, self.mean.to(x.device), self.std.to(x.device))

    def __call__(self, image: Any) -> torch.Tensor:
        x = self.prepare(image)
        draws = DigitsDraws.empty(1, x.shape[0], self.size)
        self.draw(None, draws.rows()[0])
        return self.augment(x[None], draws)[0]


def _simclr_blur_kernel(image_size: int) -> int:
    """Odd Gaussian-blur kernel of about 10% of the image side (SimCLR, Chen et al. 2020a, App. A):
    ``int(0.1 * S)`` made odd by adding 1 when even, e.g. 224 -> 23, 64 -> 7."""
    k = max(1, int(0.1 * image_size))
    return k if k % 2 == 1 else k + 1


class SimCLRTransform(v2.Compose):
    """The ``"simclr"`` policy of :func:`pretrain_transform`: a ``v2.Compose`` of its steps (one PIL image at a
    time) that also carries its settings, ``size`` (S), ``strength`` (the colour strength s), ``mean``,
    ``std``, for :class:`training.data.augment_batched.BatchedSimCLR` (``--loader device``)."""

    def __init__(self, transforms: Sequence[Callable], size: int, strength: float, mean: tuple[float, ...],
                 std: tuple[float, ...]) -> None:
        super().__init__(list(transforms))
        self.size, self.strength, self.mean, self.std = size, strength, mean, std


def pretrain_transform(
    policy: str, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> Callable[[Any], torch.Tensor]:
    """Augmentation for pre-training: image -> float32 tensor ``(3, S, S)``, normalised by ``mean``/``std``.

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
    - ``"digits"`` (ours, for the 8x8 digits; works on any image): :class:`DigitsPolicy`, a random shift of
      up to 1/8 of the side (1 px at 8 px) with a zoom in [0.9, 1.1], brightness and contrast in
      [0.6, 1.4] with p 0.8, Gaussian noise of std 0.05 clipped to [0, 1]; no flips, no colour, no blur.
      The reason for each: the ``DIGITS_*`` constants.

    The crop and flip of the paper's three policies are shared so that the ablation changes only the
    photometric policy.

    Args:
        policy: one of :data:`POLICIES`.
        image_size: output side ``S`` (e.g. 32 CIFAR, 64 Tiny-ImageNet, 224 ImageNet, 16 smoke runs).
        mean, std: per-channel statistics on the [0, 1] scale (``DATASET_INFO[name].mean``/``.std``).
    """
    policy = check_choice("policy", policy, POLICIES)
    size = check_size("image_size", image_size, minimum=1)
    mean_t = _check_triple("mean", mean, positive=False)
    std_t = _check_triple("std", std, positive=True)
    if policy == "digits":
        return DigitsPolicy(size, mean_t, std_t)
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
    steps = geometric + photometric + _to_normalised_tensor(mean_t, std_t)
    return SimCLRTransform(steps, size, s, mean_t, std_t) if policy == "simclr" else v2.Compose(steps)


def eval_transform(image_size: int, mean: Sequence[float], std: Sequence[float]) -> Callable[[Any], torch.Tensor]:
    """Deterministic evaluation transform, no augmentation: image -> float32 tensor ``(3, S, S)``, normalised
    (a grey image, e.g. a digit, has its channel replicated to three).

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
