"""The SimCLR policy on whole batches of uint8 images: ``--loader device`` for CIFAR-size data.

:func:`training.data.augment.pretrain_transform` ``("simclr", S, ...)`` augments one PIL image at a time
(torchvision v2 on PIL). :class:`BatchedSimCLR` draws from the same distributions and applies the same
operations, in the same order, to a batch of uint8 images kept on the training device (CIFAR-100's 50,000
x 32 x 32 x 3 training images are 150 MB), as a few dozen tensor operations per batch:

1. ``RandomResizedCrop(S, scale=(0.08, 1), ratio=(3/4, 4/3))``: :func:`crop_boxes` is torchvision's
   ``get_params`` (an area fraction uniform in ``scale`` and a log-uniform aspect ratio, side lengths
   ``round(sqrt(area * ratio))`` / ``round(sqrt(area / ratio))``, up to 10 tries, then the central crop of
   the allowed ratio: the whole image for a square one; the corner uniform over the positions that fit),
   vectorised. The crop is resized with the triangle (bilinear) filter of PIL's ``resize``, which
   torchvision's PIL path calls after cropping: the box's own pixels only (the edges repeat), the filter's
   support widened by the scale when shrinking (antialias; at ``S = 32`` from a 32 px image the crop is
   only ever enlarged, where the filter is plain bilinear interpolation with pixel centres aligned).
   :func:`resize_matrices` writes each view's filter as two matrices, ``(S, H)`` and ``(W, S)``, and two
   batched matmuls apply them;
2. horizontal flip with p 0.5: the columns of a view's ``(W, S)`` matrix in reverse order;
3. with p 0.8, colour jitter: brightness, contrast, saturation factors uniform in ``[1 - 0.8 s, 1 + 0.8 s]``,
   hue shift uniform in ``[-0.2 s, 0.2 s]`` turns, the four in a uniformly random order per view (``s``
   0.5 for ``S <= 32``, else 1), as torchvision's tensor kernels define them (:func:`colour_jitter`; the hue
   through a batched RGB <-> HSV conversion, :func:`shift_hue`);
4. grayscale with p 0.2 (ITU-R 601 luma, replicated to three channels); 5. ``(x - mean) / std``.

There is no Gaussian blur: SimCLR blurs from ``S = 64`` on (Tiny-ImageNet, ImageNet), and those stay with
``--loader workers`` (:data:`BLUR_FROM`).

The random numbers: 33 uniforms on [0, 1) per view (:data:`DRAWS_PER_VIEW`, the column layout below),
drawn for view 1 then view 2 of image i in epoch e from a CPU generator seeded with
:func:`training.data.views.view_seed` ``(seed, e, i)`` (:meth:`BatchedSimCLR.draw_two_views`), so that a view
depends only on (seed, epoch, index), not on the batch, the process or where a run was resumed. The
parameters are computed from them on the CPU, in float64.

The same distributions of every parameter as the PIL path, other arithmetic: PIL works on uint8 and rounds
after each step, here every step is float32 on [0, 1], and the colour operations are torchvision's tensor
kernels (to float32 rounding). The views therefore differ from the PIL path's by a few grey levels (up to ~11
where PIL's 8-bit hue shift moves saturated pixels); docs/training.md details each difference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

from training.data.views import view_seed

__all__ = [
    "CROP_SCALE", "CROP_RATIO", "CROP_TRIES", "FLIP_P", "JITTER_P", "GRAY_P", "BLUR_FROM", "DRAWS_PER_VIEW",
    "SimCLRParams", "crop_boxes", "simclr_params", "resize_matrices", "shift_hue", "colour_jitter",
    "augment_simclr_batch", "BatchedSimCLR",
]

CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
CROP_TRIES = 10
FLIP_P, JITTER_P, GRAY_P = 0.5, 0.8, 0.2
BLUR_FROM = 64
"""The smallest view side whose SimCLR policy blurs (:func:`training.data.augment.pretrain_transform`): not batched."""
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)
"""The colour operations, numbered as in torchvision's ``ColorJitter`` (its ``fn_idx``)."""
LUMA = (0.2989, 0.587, 0.114)
"""Grey level of an RGB pixel (torchvision's ``rgb_to_grayscale`` on tensors)."""

# The columns of a view's uniform numbers
AREA = slice(0, CROP_TRIES)                  # the area fraction of each try
RATIO = slice(CROP_TRIES, 2 * CROP_TRIES)    # the log aspect ratio of each try
TOP, LEFT, FLIP, JITTER = 20, 21, 22, 23     # the crop's corner; flip, jitter (u < p)
ORDER = slice(24, 28)                        # the jitter's order: their ranks
FACTORS = slice(28, 32)                      # brightness, contrast, saturation, hue
GRAY = 32                                    # grayscale (u < p)
DRAWS_PER_VIEW = 33


class SimCLRParams(NamedTuple):
    """The parameters of a batch of B views, on the CPU: the crop box (``top``, ``left``, ``height``,
    ``width``, int64 ``(B,)``), ``flip``, ``jitter``, ``gray`` bool ``(B,)``, ``order`` int64 ``(B, 4)`` (the
    colour operations in the order they apply), ``factors`` float64 ``(B, 4)`` (brightness, contrast,
    saturation factors, hue shift in turns)."""

    top: torch.Tensor
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor
    flip: torch.Tensor
    jitter: torch.Tensor
    order: torch.Tensor
    factors: torch.Tensor
    gray: torch.Tensor


def crop_boxes(u_area: torch.Tensor, u_ratio: torch.Tensor, u_top: torch.Tensor, u_left: torch.Tensor,
               height: int, width: int, scale: Sequence[float] = CROP_SCALE,
               ratio: Sequence[float] = CROP_RATIO) -> tuple[torch.Tensor, ...]:
    """torchvision's ``RandomResizedCrop.get_params`` for B views at once, from uniforms on [0, 1):
    ``u_area``, ``u_ratio`` ``(B, tries)``, ``u_top``, ``u_left`` ``(B,)``. Try t: area ``H W (s0 + (s1 - s0)
    u_area)``, aspect ``exp(log r0 + (log r1 - log r0) u_ratio)``, ``w = round(sqrt(area aspect))``, ``h =
    round(sqrt(area / aspect))`` (half to even, as Python's ``round``); the first try with ``0 < w <= W``
    and ``0 < h <= H`` is taken, with ``top = floor(u_top (H - h + 1))`` (uniform over the fitting rows, as
    ``randint``), likewise ``left``; with none, the central crop: the whole image if ``W / H`` is in
    ``ratio``, else the widest (tallest) crop of the nearest allowed ratio. Returns int64 ``(B,)``: top,
    left, h, w."""
    u_area, u_ratio = u_area.double(), u_ratio.double()
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u_area)
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * u_ratio)
    w = torch.round(torch.sqrt(area * aspect))
    h = torch.round(torch.sqrt(area / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(1, keepdim=True)  # the first try that fits (argmax: first maximum)
    found = fits.any(1)
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    if width / height < min(ratio):
        fw, fh = width, round(width / min(ratio))
    elif width / height > max(ratio):
        fw, fh = round(height * max(ratio)), height
    else:
        fw, fh = width, height
    w = torch.where(found, w, float(fw))
    h = torch.where(found, h, float(fh))
    top = torch.where(found, torch.floor(u_top.double() * (height - h + 1)).clamp(max=height - h),
                      float((height - fh) // 2))
    left = torch.where(found, torch.floor(u_left.double() * (width - w + 1)).clamp(max=width - w),
                       float((width - fw) // 2))
    return top.long(), left.long(), h.long(), w.long()


def simclr_params(u: torch.Tensor, height: int, width: int, strength: float) -> SimCLRParams:
    """The parameters of B views from their uniforms ``u`` ``(B, DRAWS_PER_VIEW)`` (the column layout of this
    module), for ``H x W`` images and colour strength ``s``: :func:`crop_boxes`, ``flip = u < 0.5``, ``jitter =
    u < 0.8``, the order of the four colour operations the ranks of four uniforms (a uniformly random
    permutation), factors ``lo + (hi - lo) u`` on ``[max(0, 1 - 0.8 s), 1 + 0.8 s]`` and the hue shift on
    ``[-0.2 s, 0.2 s]`` (torchvision's ``ColorJitter(0.8 s, 0.8 s, 0.8 s, 0.2 s)``), ``gray = u < 0.2``."""
    u = u.double()
    top, left, h, w = crop_boxes(u[:, AREA], u[:, RATIO], u[:, TOP], u[:, LEFT], height, width)
    k = 0.8 * strength
    lo = torch.tensor([max(0.0, 1 - k)] * 3 + [-0.2 * strength], dtype=torch.float64)
    hi = torch.tensor([1 + k] * 3 + [0.2 * strength], dtype=torch.float64)
    return SimCLRParams(top, left, h, w, u[:, FLIP] < FLIP_P, u[:, JITTER] < JITTER_P,
                        torch.argsort(u[:, ORDER], dim=1, stable=True), lo + (hi - lo) * u[:, FACTORS],
                        u[:, GRAY] < GRAY_P)


def _filter_taps(start: torch.Tensor, length: torch.Tensor, out: int, taps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """PIL's resampling coefficients (``ImagingResample``, bilinear filter) for B boxes of one axis: the box
    ``[start, start + length)`` resized to ``out`` pixels. Output pixel o has the centre ``c = (o + 0.5)
    length / out`` in the box; with ``f = max(length / out, 1)`` its taps are the box pixels x in
    ``[trunc(c - f + 0.5), trunc(c + f + 0.5))`` clipped to the box, weighted ``max(0, 1 - |x + 0.5 - c| / f)``
    and normalised to sum 1. Returns the pixel index and weight, int64 / float64 ``(B, out, taps)`` (taps
    past the window: weight 0, index clipped into the box)."""
    n = length.double()[:, None]  # (B, 1)
    scale = n / out
    support = scale.clamp(min=1.0)
    centre = (torch.arange(out, dtype=torch.float64) + 0.5) * scale  # (B, out)
    first = torch.trunc(centre - support + 0.5).clamp(min=0.0)
    end = torch.minimum(torch.trunc(centre + support + 0.5), n)
    x = first[..., None] + torch.arange(taps, dtype=torch.float64)  # (B, out, taps)
    weight = (1.0 - (x + 0.5 - centre[..., None]).abs() / support[..., None]).clamp(min=0.0)
    weight = torch.where(x < end[..., None], weight, 0.0)
    total = weight[..., 0]
    for k in range(1, taps):  # summed in a fixed order, whatever the batch
        total = total + weight[..., k]
    index = start[:, None, None] + torch.minimum(x, n[..., None] - 1).long()
    return index, weight / total[..., None]


def resize_matrices(params: SimCLRParams, height: int, width: int, size: int,
                    gain: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The crop, resize and flip of B views as matrices, float32 on the CPU: ``rows`` ``(B, S, H)`` and
    ``cols`` ``(B, W, S)``, so that ``rows @ image @ cols`` is the view ``(S, S)`` of an ``H x W`` channel
    (times ``gain``): :func:`_filter_taps` of each axis; a flipped view's ``cols`` in reverse column order."""
    b = len(params.top)
    mats = []
    for start, length, full, g in ((params.top, params.height, height, gain), (params.left, params.width, width, 1.0)):
        taps = max(2, -(-2 * full // size))  # the most pixels a window can hold: ceil(2 max(full / S, 1))
        index, weight = _filter_taps(start, length, size, taps)
        m = torch.zeros(b, size, full, dtype=torch.float64).scatter_add_(2, index, weight * g)
        mats.append(m.float())
    rows, cols = mats
    cols = torch.where(params.flip[:, None, None], cols.flip(1), cols).transpose(1, 2)
    return rows, cols


def _grey(x: torch.Tensor) -> torch.Tensor:
    """``(B, 1, S, S)``: the luma of RGB ``x``, products and sums kept apart (no fused ops: the same bits
    whatever the batch)."""
    return x[:, 0:1] * LUMA[0] + x[:, 1:2] * LUMA[1] + x[:, 2:3] * LUMA[2]


def shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of RGB images ``x`` ``(B, 3, S, S)`` on [0, 1] by ``shift`` ``(B,)`` turns, keeping
    saturation and value (torchvision's ``adjust_hue`` on tensors, to float32 rounding), batched.

    RGB -> HSV: ``v = max``, ``c = max - min``, ``s = c / v`` (0 where v = 0), the hue in sixths of a turn
    ``(g - b) / c`` where r is the maximum, else ``(b - r) / c + 2`` where g is, else ``(r - g) / c + 4`` (0
    where c = 0: every channel equal). HSV -> RGB: channel ``n`` (5 red, 3 green, 1 blue) is
    ``v - v s clamp(2 - |k - 2|, 0, 1)`` with ``k = (n + 6 hue) mod 6``: the closed form of the six-sector
    table, continuous across sectors. (A zero c or v is raised to the smallest normal float before it
    divides: its numerator is 0 then, so the quotient is 0.)"""
    tiny = torch.finfo(x.dtype).tiny
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    v = torch.maximum(torch.maximum(r, g), b)
    c = v - torch.minimum(torch.minimum(r, g), b)
    safe_c = c.clamp(min=tiny)
    sixths = torch.where(v == r, (g - b).div_(safe_c),
                         torch.where(v == g, (b - r).div_(safe_c).add_(2.0), (r - g).div_(safe_c).add_(4.0)))
    vs = c.div_(v.clamp(min=tiny)).mul_(v)  # v s
    k = sixths.add_((shift.to(x.dtype) * 6.0).view(-1, 1, 1, 1)) + _SECTOR_OFFSETS.to(x.device, x.dtype)
    k.sub_(torch.div(k, 6.0).floor_().mul_(6.0))  # mod 6
    t = k.sub_(2.0).abs_().neg_().add_(2.0).clamp_(0.0, 1.0)
    return torch.sub(v, t.mul_(vs))


_SECTOR_OFFSETS = torch.tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1)


def colour_jitter(x: torch.Tensor, params: SimCLRParams) -> torch.Tensor:
    """torchvision's ``ColorJitter`` with each view's factors and order, for the views with ``params.jitter``
    (the others unchanged), in place on ``x``: in stage k = 0..3 each view applies its k-th operation.
    Brightness, contrast and saturation are all ``clamp(f x + (1 - f) D, 0, 1)``, D = 0, the view's mean
    grey level, its grey image (torchvision's ``_blend``), so a stage computes them together, with ``f = 1``
    (exactly x) for the views whose operation there is another; the hue (:func:`shift_hue`) runs on its
    views alone. ``params`` are on the CPU: they plan the stages without waiting on the device."""
    b, device = x.shape[0], x.device
    factors = params.factors.float()
    for k in range(4):
        op = torch.where(params.jitter, params.order[:, k], -1)
        blend = (op >= 0) & (op < HUE)
        if bool(blend.any()):
            f = torch.where(blend, factors.gather(1, op.clamp(min=0)[:, None])[:, 0], 1.0)
            rest = 1.0 - f
            con, sat = op == CONTRAST, op == SATURATION
            target = None
            if bool((con | sat).any()):  # (1 - f) D: the grey image or its mean, 0 for the other views
                grey = _grey(x)
                mean = grey.mean(dim=(1, 2, 3), keepdim=True)
                target = grey.mul_((rest * sat).view(b, 1, 1, 1).to(device)).add_(
                    mean.mul_((rest * con).view(b, 1, 1, 1).to(device)))
            x.mul_(f.view(b, 1, 1, 1).to(device))
            if target is not None:
                x.add_(target)
            x.clamp_(0.0, 1.0)
        hue = torch.nonzero(op == HUE)[:, 0]
        if len(hue):
            idx = hue.to(device)
            x.index_copy_(0, idx, shift_hue(x.index_select(0, idx), params.factors[hue, HUE].to(device)))
    return x


def augment_simclr_batch(images: torch.Tensor, params: SimCLRParams, size: int, mean: torch.Tensor,
                         std: torch.Tensor) -> torch.Tensor:
    """The SimCLR policy on a batch: ``images`` uint8 ``(B, 3, H, W)`` (on any device) and the views'
    parameters (:func:`simclr_params`, on the CPU) -> float32 ``(B, 3, S, S)`` on the images' device,
    normalised by ``mean``, ``std`` ``(3,)``: crop, resize and flip (:func:`resize_matrices`, the 1/255 of the
    [0, 1] scale folded into the rows), :func:`colour_jitter`, grayscale, normalisation. Every step treats
    each view on its own (matmuls, elementwise operations, a mean within the view), so on the CPU a view is
    the same bits in any batch (tests check it)."""
    if images.ndim != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 (B, 3, H, W); got {images.dtype} {tuple(images.shape)}")
    b, _, height, width = images.shape
    rows, cols = (m.to(images.device) for m in resize_matrices(params, height, width, size, gain=1.0 / 255))
    x = torch.matmul(images.float().view(b, 3 * height, width), cols).view(b, 3, height, size)
    x = torch.matmul(rows[:, None], x).clamp_(0.0, 1.0)  # (B, 3, S, S); a weight sum of 1 + ulp stays <= 1
    x = colour_jitter(x, params)
    gray = torch.nonzero(params.gray)[:, 0]
    if len(gray):
        idx = gray.to(images.device)
        x.index_copy_(0, idx, _grey(x.index_select(0, idx)).expand(len(idx), 3, size, size))
    return x.sub_(mean.view(1, 3, 1, 1)).div_(std.view(1, 3, 1, 1))


class BatchedSimCLR:
    """The ``"simclr"`` policy of :func:`training.data.augment.pretrain_transform` for batches on a device:
    the images kept as uint8 (:meth:`store`), each view's 33 uniforms drawn per image on the CPU
    (:meth:`draw_two_views`), the views computed by :func:`augment_simclr_batch` (:meth:`augment`).

    Args:
        size: view side ``S`` (< :data:`BLUR_FROM`: no blur).
        strength: colour strength ``s`` (SimCLR: 0.5 for ``S <= 32``, else 1).
        mean, std: per-channel normalisation on the [0, 1] scale.
    """

    def __init__(self, size: int, strength: float, mean: Sequence[float], std: Sequence[float]) -> None:
        if size >= BLUR_FROM:
            raise ValueError(f"the batched SimCLR policy has no Gaussian blur, which SimCLR uses from {BLUR_FROM} "
                             f"px on; got image size {size}: use the per-image policy (--loader workers)")
        self.size, self.strength = size, float(strength)
        self.mean = torch.tensor(mean, dtype=torch.float32)
        self.std = torch.tensor(std, dtype=torch.float32)
        self._generator = torch.Generator()  # re-seeded per image

    @classmethod
    def from_transform(cls, transform: Any) -> BatchedSimCLR:
        """The batched twin of a :class:`training.data.augment.SimCLRTransform` (its size, strength, mean, std)."""
        return cls(transform.size, transform.strength, transform.mean, transform.std)

    @staticmethod
    def store(base: Any) -> torch.Tensor:
        """The images of ``base`` (items ``(PIL RGB image, label)``) as one uint8 tensor ``(N, 3, H, W)`` on the
        CPU: CIFAR-format datasets straight from their ``data`` array ``(N, H, W, 3)`` (what their items are
        made from), others image by image."""
        data = getattr(base, "data", None)
        if isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 4 and data.shape[-1] == 3 \
                and len(data) == len(base):
            return torch.from_numpy(np.ascontiguousarray(data.transpose(0, 3, 1, 2)))
        return torch.stack([F.pil_to_tensor(base[i][0].convert("RGB")) for i in range(len(base))])

    def draw_two_views(self, seed: int, epoch: int, indices: Sequence[int], height: int,
                       width: int) -> tuple[SimCLRParams, SimCLRParams]:
        """The parameters of view 1 and of view 2 of each image of ``indices`` in ``epoch``: per image, a CPU
        generator seeded with ``view_seed(seed, epoch, index)`` draws 2 x 33 uniforms (float64), view 1's
        then view 2's; :func:`simclr_params` turns them into parameters."""
        u = torch.empty(len(indices), 2, DRAWS_PER_VIEW, dtype=torch.float64)
        g = self._generator
        for index, row in zip(indices, u.unbind(0)):
            g.manual_seed(view_seed(seed, epoch, int(index)))
            row.uniform_(generator=g)
        return (simclr_params(u[:, 0], height, width, self.strength),
                simclr_params(u[:, 1], height, width, self.strength))

    def augment(self, images: torch.Tensor, params: SimCLRParams) -> torch.Tensor:
        """:func:`augment_simclr_batch` with this policy's size and normalisation, on the images' device."""
        return augment_simclr_batch(images, params, self.size, self.mean.to(images.device), self.std.to(images.device))
