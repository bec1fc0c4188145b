"""Tests of ``--loader device`` (training.data.loader): the batched digits augmentation gives the per-image views
bit for bit, draws its numbers from the documented distributions, never flips, shards as the DataLoader does,
and a run with it has the numbers of a ``--loader workers`` run, resumed or not.

Everything runs on ``--device cpu`` with one torch thread; the views are compared with ``torch.equal``:
:func:`training.data.augment.augment_digits_batch` computes each view with elementwise operations, a reduction
within the view and ``grid_sample``, none fused, so a view is the same bits in a batch of 1 (the per-image
path) as in a batch of 256 on the CPU, and runs with either loader have bit-identical metrics. Against the
torchvision ops the policy was first written with, the views agree to float32 rounding (a bound derived in
that test).

The second part covers the batched SimCLR policy of the 32 px sets (training.data.augment_batched): its views
depend on (seed, epoch, index) alone, bit for bit on the CPU; its parameters follow the per-image (PIL)
path's distributions, by statistical tests over 20,000 views, each shown to reject a slightly wrong sample;
its operations are torchvision's tensor kernels to float32 rounding, and the PIL kernels up to PIL's uint8
arithmetic (bounds per step); a killed ``--loader device`` run on ``synthetic`` resumes to the uninterrupted
numbers. Budget: about 30 s.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy import stats
from torch.utils.data import DataLoader
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from tests.helpers import Killed, dies_at
from tests.training.data.digit_checks import F_SHAPE, grey_view, looks_mirrored
from training import pretrain
from training.config import ADDED_SETTINGS, RESUMABLE_CHANGES, PretrainConfig
from training.data import loader as L
from training.data.augment import DIGITS_JITTER_P, DIGITS_NOISE_SIGMA, DigitsDraws, pretrain_transform
from training.data.augment_batched import (
    CROP_SCALE,
    DRAWS_PER_VIEW,
    BatchedSimCLR,
    crop_boxes,
    shift_hue,
    simclr_params,
)
from training.data.catalog import DATASET_INFO
from training.data.datasets import load_dataset
from training.data.loader import DeviceLoader, check_loader, draw_two_views
from training.data.views import TwoViewDataset, labeled_subset, masked_labels, view_seed
from training.engine import distributed
from training.engine.resume import resumed_loader
from training.engine.steps import BatchOrder, forward_loss

pytestmark = pytest.mark.usefixtures("one_thread")

INFO = DATASET_INFO["digits"]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits", "unused", "train")
    return ds, masked_labels(ds.targets, labeled_subset(ds.targets, 0.1, 0))


def _views(digits, seed: int, size: int = 8) -> TwoViewDataset:
    ds, labels = digits
    return TwoViewDataset(ds, pretrain_transform("digits", size, INFO.mean, INFO.std), labels, seed=seed)


# ------------------------------------------------------------------------ the same views as per image


@pytest.mark.parametrize("seed, size", [(0, 8), (3, 8), (11, 32)])
def test_batched_views_are_the_per_image_views_bit_for_bit(digits, seed, size):
    views = _views(digits, seed, size)
    rng = np.random.default_rng(seed)
    indices = [0, len(views) - 1, *rng.choice(len(views), 62, replace=False).tolist()]
    for epoch in (1, 7):
        views.set_epoch(epoch)
        loader = DeviceLoader(views, indices, batch=24, device=CPU)  # batches of 24, 24 and 16
        got = list(loader)
        assert len(got) == len(loader) == 3 and [len(b[3]) for b in got] == [24, 24, 16]
        v1, v2, labels, idx = (torch.cat(parts) for parts in zip(*got))
        assert idx.tolist() == indices and labels.tolist() == views.labels[indices].tolist()
        for row, i in enumerate(indices):
            w1, w2, label, index = views[i]  # TwoViewDataset: seeded global generator, one image at a time
            assert torch.equal(v1[row], w1) and torch.equal(v2[row], w2), (epoch, i)
            assert (label, index) == (int(labels[row]), i)
        assert v1.shape == (len(indices), 3, size, size) and v1.dtype == torch.float32
        assert not torch.equal(v1, v2)
    # a view does not depend on the batch it is computed in
    alone = next(iter(DeviceLoader(views, [indices[5]], batch=1, device=CPU)))
    assert torch.equal(alone[0][0], v1[5]) and torch.equal(alone[1][0], v2[5])


def _torchvision_views(image: torch.Tensor, size: int, n: int) -> torch.Tensor:
    """``n`` views of the policy written with torchvision's functional ops (F.affine, adjust_brightness,
    adjust_contrast), drawing from the global generator in the order of draw_digits_view: the reference."""
    prepare = v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size)])
    x0 = image if image.shape[-1] == size else prepare(image)
    mean, std = torch.tensor(INFO.mean).view(3, 1, 1), torch.tensor(INFO.std).view(3, 1, 1)
    out = []
    for _ in range(n):
        u = torch.rand(4)
        tx, ty = (int(v) for v in torch.randint(-(size // 8), size // 8 + 1, (2,)))
        x = F.affine(x0, angle=0.0, translate=[tx, ty], scale=0.9 + 0.2 * float(u[0]), shear=[0.0, 0.0],
                     interpolation=v2.InterpolationMode.BILINEAR, fill=0.0)
        if float(u[3]) < 0.8:
            x = F.adjust_contrast(F.adjust_brightness(x, 1 + 0.4 * (2 * float(u[1]) - 1)), 1 + 0.4 * (2 * float(u[2]) - 1))
        x = (x + 0.05 * torch.randn_like(x)).clamp_(0.0, 1.0)
        out.append((x.as_subclass(torch.Tensor).expand(3, -1, -1) - mean) / std)
    return torch.stack(out)


@pytest.mark.parametrize("size", [8, 32])
def test_the_views_are_torchvisions_affine_and_jitter_to_rounding(digits, size, monkeypatch):
    """augment_digits_batch rebuilds F.affine (its inverse matrix, pixel-centre grid and fill blend) and
    adjust_brightness / adjust_contrast from tensor ops; only the order of float32 roundings differs (a bmm
    and an add with alpha there, separate products and sums here). Bound: a grid coordinate off by an ulp
    moves the sample by <= eps S / 2 pixels, times a pixel-to-pixel step <= 1, plus an ulp per blend: on the
    [0, 1] scale (S / 2 + 4) eps, ~1e-6 at 8 px (measured: 1.3e-7, 1 ulp of 1.0)."""
    image = digits[0][17][0]
    policy = pretrain_transform("digits", size, INFO.mean, INFO.std)
    torch.manual_seed(size)
    ours = torch.stack([policy(image) for _ in range(300)])
    torch.manual_seed(size)
    reference = _torchvision_views(image, size, 300)
    scale = torch.tensor(INFO.std).view(1, 3, 1, 1)
    diff = ((ours - reference) * scale).abs().max()  # on the [0, 1] scale
    assert diff <= (size / 2 + 4) * torch.finfo(torch.float32).eps, float(diff)

    # the bound can tell: without torchvision's fill blend (the in-image weight set to 1) views differ by far more
    grid_sample = torch.nn.functional.grid_sample

    def without_blend(*args, **kwargs):
        out = grid_sample(*args, **kwargs)
        out[:, -1] = 1.0
        return out

    monkeypatch.setattr(torch.nn.functional, "grid_sample", without_blend)
    torch.manual_seed(size)
    unblended = torch.stack([policy(image) for _ in range(300)])
    assert ((unblended - reference) * scale).abs().max() > 1e-3


def test_the_device_loader_shards_as_the_dataloader_does(digits):
    views = _views(digits, 5)
    views.set_epoch(2)
    by_rank = []
    for rank in (0, 1):
        order = BatchOrder(len(views), 64, 3, seed=5, ctx=distributed.Context(rank=rank, world=2))
        order.set_epoch(2, 1)  # a resumed epoch: from step 1 on
        ours = list(DeviceLoader(views, order, 32, CPU))
        theirs = list(DataLoader(views, batch_size=32, sampler=order, num_workers=0))
        assert len(ours) == len(theirs) == 2
        for a, b in zip(ours, theirs):
            assert all(torch.equal(x, y) for x, y in zip(a, b))
        by_rank.append(torch.cat([b[3] for b in ours]).view(2, 32))
    whole = BatchOrder(len(views), 64, 3, seed=5, ctx=distributed.Context())
    whole.set_epoch(2, 1)
    assert torch.cat(by_rank, dim=1).ravel().tolist() == list(whole)  # rank 0 then 1 of each global batch


# -------------------------------------------------------------------------------- the distributions

N_IMAGES = 2000  # 4,000 views
RAMP = (torch.arange(8, dtype=torch.float32) - 3.5) * 0.05 + 0.5  # 0.325 .. 0.675 along one axis


def _draws(seed: int = 0) -> DigitsDraws:
    """The numbers of both views of images 0 .. N_IMAGES - 1 (epoch 1), as the device loader draws them."""
    policy = pretrain_transform("digits", 8, INFO.mean, INFO.std)
    first, second = draw_two_views(policy, seed, 1, list(range(N_IMAGES)))
    return DigitsDraws(*(torch.cat(pair) for pair in zip(first, second)))


def _augment(image: torch.Tensor, draws: DigitsDraws, *, jitter: bool = True, noise: bool = True) -> torch.Tensor:
    """The views of one (1, 8, 8) image under ``draws``, on the [0, 1] scale, channel 0: (B, 8, 8). Without
    ``jitter`` / ``noise`` the same draws with the jitter switched off (u3 = 0.9) / the noise zeroed."""
    u = draws.u.clone()
    if not jitter:
        u[:, 3] = 0.9
    d = DigitsDraws(u, draws.shift, draws.noise if noise else torch.zeros_like(draws.noise))
    policy = pretrain_transform("digits", 8, INFO.mean, INFO.std)
    x = policy.augment(image.expand(len(u), 1, 8, 8), d)
    return x[:, 0] * INFO.std[0] + INFO.mean[0]


def _geometry(draws: DigitsDraws) -> tuple[np.ndarray, np.ndarray]:
    """Zoom (B,) and shift (B, 2: x, y) of each view, read off its output: on a linear ramp the output pixel
    p of the central 4x4 block (its bilinear footprint is inside the image for any shift <= 1 and zoom
    >= 0.9) is ramp((p - t) / s), so the slope across the block gives s and the value at the centre t."""
    zooms, shifts = [], []
    p = torch.arange(2, 6, dtype=torch.float64) - 3.5  # -1.5 .. 1.5
    for across, image in ((1, RAMP.view(1, 1, 8).expand(1, 8, 8)), (2, RAMP.view(1, 8, 1).expand(1, 8, 8))):
        out = _augment(image, draws, jitter=False, noise=False)[:, 2:6, 2:6].double().mean(dim=across)  # (B, 4)
        slope = ((out - out.mean(1, keepdim=True)) * p).sum(1) / (p * p).sum()  # 0.05 / s
        zoom = 0.05 / slope
        zooms.append(zoom)
        shifts.append((0.5 - out.mean(1)) * zoom / 0.05)  # the centre: 0.5 - 0.05 t / s
    assert torch.allclose(zooms[0], zooms[1], atol=1e-5), "one zoom for both axes"
    return zooms[0].numpy(), torch.stack(shifts, 1).numpy()


def _zoom_ok(zoom: np.ndarray) -> bool:
    return bool(zoom.min() >= 0.9 - 1e-5 and zoom.max() <= 1.1 + 1e-5
                and stats.kstest(zoom, "uniform", args=(0.9, 0.2)).pvalue > 1e-3)


def _shift_ok(shift: np.ndarray) -> bool:
    """Whole pixels in {-1, 0, 1}, uniform and independent per axis (chi-square over the 9 pairs)."""
    whole = np.round(shift)
    if np.abs(shift - whole).max() > 1e-3 or not set(np.unique(whole)) <= {-1.0, 0.0, 1.0}:
        return False
    counts = np.histogram2d(whole[:, 0], whole[:, 1], bins=[[-1.5, -0.5, 0.5, 1.5]] * 2)[0].ravel()
    return bool(stats.chisquare(counts).pvalue > 1e-3)


def _rate_ok(hits: np.ndarray, p: float) -> bool:
    return bool(abs(hits.mean() - p) <= 5 * math.sqrt(p * (1 - p) / hits.size))


def _std_ok(values: np.ndarray, sigma: float) -> bool:
    """|mean| and |std - sigma| within 5 standard errors of a normal sample of that size."""
    se = sigma / math.sqrt(values.size)
    return bool(abs(values.mean()) <= 5 * se and abs(values.std() - sigma) <= 5 * se / math.sqrt(2))


def test_the_drawn_shift_zoom_jitter_and_noise_follow_the_documented_distributions():
    draws = _draws()
    zoom, shift = _geometry(draws)
    assert _zoom_ok(zoom) and _shift_ok(shift)
    # jitter: the views that change when it is switched off, and the product of its two factors
    ramp = RAMP.view(1, 1, 8).expand(1, 8, 8)
    plain, jittered = _augment(ramp, draws, noise=False, jitter=False), _augment(ramp, draws, noise=False)
    changed = (plain != jittered).flatten(1).any(1).numpy()
    assert _rate_ok(changed, DIGITS_JITTER_P)
    assert np.array_equal(changed, (draws.u[:, 3] < DIGITS_JITTER_P).numpy())  # u3 decides, nothing else
    block = (slice(None), slice(2, 6), slice(2, 6))  # central: no fill, no clamp
    gain = (jittered[block].std((1, 2)) / plain[block].std((1, 2))).double().numpy()[changed]  # brightness x contrast
    assert gain.min() >= 0.6**2 - 1e-4 and gain.max() <= 1.4**2 + 1e-4
    assert abs(gain.mean() - 1.0) <= 5 * math.sqrt(((1 + 0.4**2 / 3) ** 2 - 1) / gain.size)  # E[b c] = 1
    # noise: the difference to the noiseless view in the central block (values 0.3-0.7: no clamp)
    noise = (_augment(ramp, draws, jitter=False) - plain)[block].double().numpy().ravel()
    assert _std_ok(noise, DIGITS_NOISE_SIGMA)

    # the checks can fail: they reject slightly wrong distributions of the same size
    rng = np.random.default_rng(0)
    assert not _zoom_ok(rng.uniform(0.92, 1.1, zoom.size)) and not _zoom_ok(zoom * 1.02)
    assert not _shift_ok(shift + 0.5) and not _shift_ok(rng.integers(-2, 3, shift.shape).astype(float))
    assert not _shift_ok(np.where(rng.random(shift.shape) < 0.1, 0.0, shift))  # 0 a bit too often
    assert not _rate_ok(rng.random(changed.size) < 0.75, DIGITS_JITTER_P)
    assert not _std_ok(noise * 0.97, DIGITS_NOISE_SIGMA) and not _std_ok(noise + 2e-3, DIGITS_NOISE_SIGMA)


def test_the_batched_path_never_flips_and_the_check_can_tell():
    draws = _draws()
    draws = DigitsDraws(*(t[:200] for t in draws))
    policy = pretrain_transform("digits", 8, INFO.mean, INFO.std)
    image = torch.from_numpy(F_SHAPE).expand(200, 1, 8, 8)
    views = policy.augment(image, draws)
    mirrored = policy.augment(image.flip(-1), draws)  # the negative control: flipped before the policy
    assert not any(looks_mirrored(grey_view(v), F_SHAPE) for v in views)
    assert all(looks_mirrored(grey_view(v), F_SHAPE) for v in mirrored[:50])


# ---------------------------------------------------------------------------------------- pretrain

FLAGS = ("--dataset", "digits", "--arch", "small", "--epochs", "2", "--device", "cpu", "--workers", "0",
         "--geometry-images", "100", "--no-progress")
TIME_COLUMNS = ["images_per_s", "epoch_seconds"]


def _numbers(run) -> tuple[dict, pd.DataFrame]:
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    return ckpt, pd.read_csv(run / "metrics.csv").drop(columns=TIME_COLUMNS)


def _assert_same_numbers(a, b) -> None:
    ca, ma = _numbers(a)
    cb, mb = _numbers(b)
    assert (ca["epoch"], ca["step_in_epoch"]) == (cb["epoch"], cb["step_in_epoch"]) == (2, 0)
    pd.testing.assert_frame_equal(ma, mb, check_exact=True)
    for name, value in ca["model"].items():
        assert torch.equal(value, cb["model"][name]), name


@pytest.fixture(scope="module")
def device_run(tmp_path_factory, one_thread):
    run = tmp_path_factory.mktemp("loader") / "device"
    assert pretrain.main([*FLAGS, "--out", str(run)]) == 0  # the default loader for digits
    return run


def test_device_and_workers_loaders_give_the_same_run(device_run, tmp_path):
    assert '"loader": "device"' in (device_run / "config.json").read_text()
    run = tmp_path / "workers"
    assert pretrain.main([*FLAGS, "--loader", "workers", "--out", str(run)]) == 0
    _assert_same_numbers(device_run, run)
    assert (pd.read_csv(device_run / "geometry.csv").equals(pd.read_csv(run / "geometry.csv")))



@pytest.mark.parametrize("resume_with", ["device", "workers"])  # the loader may change on --resume
def test_a_killed_device_loader_run_resumes_to_the_same_numbers(device_run, resume_with, tmp_path):
    run = tmp_path / "killed"
    # epoch 2, step 3 of 5; the last checkpoint came after global step 6
    with pytest.raises(Killed):
        pretrain.main([*FLAGS, "--loader", "device", "--out", str(run), "--checkpoint-every", "3"],
                      step=dies_at(8, forward_loss))
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert (ckpt["epoch"], ckpt["step_in_epoch"]) == (1, 1)
    resume = [*FLAGS, "--loader", resume_with, "--out", str(run), "--checkpoint-every", "3", "--resume"]
    assert pretrain.main(resume) == 0
    _assert_same_numbers(device_run, run)


def test_the_device_loader_is_refused_where_no_batched_policy_exists(capsys, tmp_path):
    assert PretrainConfig(dataset="digits", device="cpu").resolved().loader == "device"
    for dataset in ("tiny-imagenet", "imagenet"):  # (synthetic and cifar100 have one now: the simclr section below)
        assert PretrainConfig(dataset=dataset, device="cpu").resolved().loader == "workers"
        with pytest.raises(ValueError, match=rf"--loader device\) is not supported for --dataset {dataset} "
                           r"--augmentation simclr: .* exists for --dataset digits / cifar100 / synthetic.*; "
                           r"pass --loader workers"):
            PretrainConfig(dataset=dataset, loader="device", device="cpu").resolved()
    with pytest.raises(ValueError, match=r"loader='gpu' is not supported; expected one of \['device', 'workers'\]"):
        check_loader("gpu", "digits", "digits")
    smoke = ["--smoke", "--augmentation", "randaugment", "--loader", "device", "--out", str(tmp_path / "r"),
             "--no-progress"]
    assert pretrain.main(smoke) == 2
    err = capsys.readouterr().err
    assert "--loader device) is not supported for --dataset synthetic --augmentation randaugment" in err
    assert not (tmp_path / "r").exists()
    # the loader does not change the numbers: a run may be resumed with the other one, and keeps its name
    digits = PretrainConfig(dataset="digits", device="cpu").resolved()
    assert "loader" in RESUMABLE_CHANGES and digits.out == PretrainConfig(
        dataset="digits", loader="workers", device="cpu").resolved().out


# ================================================================ the batched SimCLR policy (32 px sets)

S_INFO = DATASET_INFO["synthetic"]
N_SIMCLR = 10_000  # images: 20,000 views of parameters


@pytest.fixture(scope="module")
def synthetic_root(synthetic_data):
    return synthetic_data


@pytest.fixture(scope="module")
def synthetic(synthetic_root):
    ds = load_dataset("synthetic", synthetic_root, "train")
    return ds, masked_labels(ds.targets, labeled_subset(ds.targets, 0.1, 0))


def _simclr_views(synthetic, seed: int, size: int = 32) -> TwoViewDataset:
    ds, labels = synthetic
    return TwoViewDataset(ds, pretrain_transform("simclr", size, S_INFO.mean, S_INFO.std), labels, seed=seed)


def _batched(size: int = 32) -> BatchedSimCLR:
    return BatchedSimCLR.from_transform(pretrain_transform("simclr", size, S_INFO.mean, S_INFO.std))


def test_simclr_views_depend_only_on_seed_epoch_and_index(synthetic):
    """The same (seed, epoch, index) gives the same bits in any batch, in any order, in a fresh loader; the
    batches, labels and indices are the DataLoader's; another seed or epoch gives other views."""
    views = _simclr_views(synthetic, 3)
    views.set_epoch(2)
    rng = np.random.default_rng(0)
    indices = rng.choice(len(views), 48, replace=False).tolist()
    got = list(DeviceLoader(views, indices, batch=20, device=CPU))  # batches of 20, 20, 8
    theirs = list(DataLoader(views, batch_size=20, sampler=indices, num_workers=0))
    assert [len(b[3]) for b in got] == [20, 20, 8]
    for ours, pil in zip(got, theirs):
        assert torch.equal(ours[2], pil[2]) and torch.equal(ours[3], pil[3])
        assert ours[0].shape == pil[0].shape == (len(ours[3]), 3, 32, 32) and ours[0].dtype == torch.float32
    v1, v2 = (torch.cat(parts) for parts in list(zip(*got))[:2])
    assert not torch.equal(v1, v2)
    shuffled = rng.permutation(48)
    again = list(DeviceLoader(views, [indices[k] for k in shuffled], batch=7, device=CPU))
    w1, w2 = (torch.cat(parts) for parts in list(zip(*again))[:2])
    assert torch.equal(w1, v1[shuffled]) and torch.equal(w2, v2[shuffled])
    alone = next(iter(DeviceLoader(views, [indices[9]], batch=1, device=CPU)))
    assert torch.equal(alone[0][0], v1[9]) and torch.equal(alone[1][0], v2[9])
    views.set_epoch(3)
    other_epoch = next(iter(DeviceLoader(views, indices[:20], batch=20, device=CPU)))
    other_seed = _simclr_views(synthetic, 4)
    other_seed.set_epoch(2)
    other = next(iter(DeviceLoader(other_seed, indices[:20], batch=20, device=CPU)))
    for x in (other_epoch[0], other[0]):
        assert not any(torch.equal(a, b) for a, b in zip(x, v1[:20]))


# ---------------------------------------------------------------------- the parameters' distributions


def _same_distribution(sample: np.ndarray, reference: np.ndarray, bins: int = 20) -> bool:
    """Chi-square test of homogeneity over bins of equal reference mass (quantiles; ties merge bins): p > 1e-3."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    edges[0], edges[-1] = -np.inf, np.inf
    counts = np.stack([np.histogram(sample, edges)[0], np.histogram(reference, edges)[0]])
    return bool(stats.chi2_contingency(counts[:, counts.sum(0) > 0]).pvalue > 1e-3)


def _uniform_ok(values: np.ndarray, lo: float, hi: float) -> bool:
    return bool(values.min() >= lo and values.max() <= hi
                and stats.kstest(values, "uniform", args=(lo, hi - lo)).pvalue > 1e-3)


def _position_ok(start: np.ndarray, free: np.ndarray, rng: np.random.Generator) -> bool:
    """The corner uniform over the ``free + 1`` positions: (start + U) / (free + 1) is U(0, 1) (a randomised
    probability integral transform of the discrete uniform), KS test."""
    return bool(start.min() >= 0 and (start <= free).all()
                and stats.kstest((start + rng.random(start.size)) / (free + 1), "uniform").pvalue > 1e-3)


def _permutations_ok(order: np.ndarray) -> bool:
    """All 24 orders of the four colour operations, equally often (chi-square)."""
    codes, counts = np.unique(order @ np.array([64, 16, 4, 1]), return_counts=True)
    return bool(len(codes) == 24 and stats.chisquare(counts).pvalue > 1e-3)


def _uniforms() -> torch.Tensor:
    """The uniforms of both views of N_SIMCLR images (epoch 1, seed 0), as the device loader draws them."""
    g, u = torch.Generator(), torch.empty(N_SIMCLR, 2, DRAWS_PER_VIEW, dtype=torch.float64)
    for i, row in enumerate(u.unbind(0)):
        g.manual_seed(view_seed(0, 1, i))
        row.uniform_(generator=g)
    return u.view(-1, DRAWS_PER_VIEW)


def test_simclr_parameters_follow_the_pil_paths_distributions():
    """Crop area and aspect ratio against the PIL path's own RandomResizedCrop parameters (20,000 each), the
    crop's corner, the flip, jitter and grayscale rates against the PIL path's p, the jitter factors against
    its ColorJitter ranges, the order of the four colour operations; then each check rejects a slightly
    wrong sample of the same size (its power)."""
    pil = pretrain_transform("simclr", 32, S_INFO.mean, S_INFO.std)
    crop, flip, jitter, gray = pil.transforms[:4]
    colour = jitter.transforms[0]
    assert (type(crop).__name__, type(flip).__name__, type(colour).__name__, type(gray).__name__) == (
        "RandomResizedCrop", "RandomHorizontalFlip", "ColorJitter", "RandomGrayscale")
    torch.manual_seed(0)
    image = Image.new("RGB", (32, 32))
    reference = [crop.make_params([image]) for _ in range(2 * N_SIMCLR)]
    ref_h = np.array([r["height"] for r in reference], dtype=float)
    ref_w = np.array([r["width"] for r in reference], dtype=float)

    u = _uniforms()
    p = simclr_params(u, 32, 32, strength=0.5)
    h, w = p.height.numpy().astype(float), p.width.numpy().astype(float)
    assert _same_distribution(h * w / 1024, ref_h * ref_w / 1024)  # the area fraction
    assert _same_distribution(np.log(w / h), np.log(ref_w / ref_h))  # the aspect ratio
    rng = np.random.default_rng(0)
    assert _position_ok(p.top.numpy(), 32 - h, rng) and _position_ok(p.left.numpy(), 32 - w, rng)
    for hits, prob in ((p.flip, flip.p), (p.jitter, jitter.p), (p.gray, gray.p)):
        assert _rate_ok(hits.numpy(), prob)
    ranges = (colour.brightness, colour.contrast, colour.saturation, colour.hue)
    assert ranges == ((0.6, 1.4), (0.6, 1.4), (0.6, 1.4), (-0.1, 0.1))  # s = 0.5 at 32 px
    factors = p.factors.numpy()
    for k, (lo, hi) in enumerate(ranges):
        assert _uniform_ok(factors[:, k], lo, hi), k
    assert _permutations_ok(p.order.numpy())

    # the power: slightly wrong samples of the same size fail
    def boxes(scale=CROP_SCALE, ratio_u=u[:, 10:20]):
        t, left, hh, ww = crop_boxes(u[:, :10], ratio_u, u[:, 20], u[:, 21], 32, 32, scale=scale)
        return t.numpy(), left.numpy(), hh.numpy().astype(float), ww.numpy().astype(float)

    _, _, hh, ww = boxes(scale=(0.10, 1.0))  # the smallest crop 10 % of the area instead of 8 %
    assert not _same_distribution(hh * ww / 1024, ref_h * ref_w / 1024)
    lo, hi = math.log(3 / 4), math.log(4 / 3)
    uniform_ratio = (torch.log(3 / 4 + (4 / 3 - 3 / 4) * u[:, 10:20]) - lo) / (hi - lo)  # uniform, not log-uniform
    _, _, hh, ww = boxes(ratio_u=uniform_ratio)
    assert not _same_distribution(np.log(ww / hh), np.log(ref_w / ref_h))
    off_by_one = np.floor(u[:, 20].numpy() * (32 - h))  # never the last row
    assert not _position_ok(off_by_one, 32 - h, rng)
    for prob in (flip.p, jitter.p, gray.p):
        assert not _rate_ok(rng.random(u.shape[0]) < prob + 0.025, prob)  # 7 standard errors off at p 0.5
    assert not _uniform_ok(rng.uniform(0.62, 1.4, u.shape[0]), 0.6, 1.4)  # a range 0.02 short
    assert not _uniform_ok(factors[:, 3] * 0.95, -0.1, 0.1)  # the hue range 5 % short
    identity = np.where(rng.random(u.shape[0])[:, None] < 0.02, np.arange(4), p.order.numpy())  # 2 % unshuffled
    assert not _permutations_ok(identity)


# ------------------------------------------------------------------------- the operations themselves


def _reference(images: torch.Tensor, p, size: int, pil: bool = False) -> torch.Tensor:
    """The views of ``p`` built with torchvision's functional kernels, one at a time, on the [0, 1] scale
    (not normalised): on float tensors, or (``pil``) on PIL images (the per-image path's kernels)."""
    ops = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue)
    out = []
    for i in range(len(images)):
        x = F.to_pil_image(images[i]) if pil else images[i].float() / 255
        x = F.resized_crop(x, int(p.top[i]), int(p.left[i]), int(p.height[i]), int(p.width[i]), [size, size],
                           antialias=True)
        if p.flip[i]:
            x = F.horizontal_flip(x)
        if p.jitter[i]:
            for op in p.order[i].tolist():
                if not (op == 3 and float(p.factors[i, 3]) == 0.0):  # (PIL: hue 0 would still round trip HSV)
                    x = ops[op](x, float(p.factors[i, op]))
        if p.gray[i]:
            x = F.rgb_to_grayscale(x, 3)
        out.append(F.to_dtype(F.pil_to_tensor(x), torch.float32, scale=True) if pil else x)
    return torch.stack(out)


def _ours(images: torch.Tensor, p, size: int) -> torch.Tensor:
    policy = _batched(size)
    return policy.augment(images, p) * policy.std.view(1, 3, 1, 1) + policy.mean.view(1, 3, 1, 1)


@pytest.mark.parametrize("size", [32, 16])
def test_the_batched_simclr_ops_are_torchvisions_tensor_kernels_to_rounding(synthetic, size):
    """resized_crop (bilinear, antialias: at 16 px the crop shrinks), flip, the four jitter operations in each
    view's order, grayscale, from torchvision's tensor kernels, against the batched ops with the same
    parameters. Bound: the float32 roundings of a weighted sum of <= 8 taps, four jitter steps with factors
    <= 1.4 and an HSV round trip whose division by c = max - min is undone by the product with v s = c: a few
    tens of ulps of 1.0, 1e-5 (measured 2e-6). Without the flip, or with the jitter in a fixed order, the
    views differ by far more: the check can tell."""
    images = _batched().store(synthetic[0])[:300]
    p, _ = _batched(size).draw_two_views(0, 1, list(range(300)), 32, 32)
    reference = _reference(images, p, size)
    assert (_ours(images, p, size) - reference).abs().max() <= 1e-5
    unflipped = p._replace(flip=torch.zeros_like(p.flip))
    fixed_order = p._replace(order=torch.arange(4).expand(300, 4))
    for wrong in (unflipped, fixed_order):
        assert (_ours(images, wrong, size) - reference).abs().max() > 1e-2


def test_the_batched_simclr_views_are_the_pil_paths_up_to_its_uint8_arithmetic(synthetic):
    """Against torchvision's PIL kernels (the per-image path) with the same parameters, in 1/255 levels:
    crop + flip within 1 level (PIL resamples in fixed point and rounds to uint8 after each of its two passes),
    with grayscale within 1.5 (its luma is of the rounded RGB); brightness, contrast and saturation within 2.5
    and darker there by about half a level each (Pillow's blend truncates to uint8 instead of rounding); the
    hue within 12 levels (PIL goes through 8-bit HSV: hue in 1/255 turns, the shift truncated to a whole
    1/255)."""
    images = _batched().store(synthetic[0])[:200]
    p, _ = _batched().draw_two_views(0, 1, list(range(200)), 32, 32)
    off, on = torch.zeros(200, dtype=torch.bool), torch.ones(200, dtype=torch.bool)

    def levels(q):
        return ((_ours(images, q, 32) - _reference(images, q, 32, pil=True)) * 255).double()

    assert levels(p._replace(jitter=off, gray=off)).abs().max() <= 1.0 + 1e-3
    assert levels(p._replace(jitter=off)).abs().max() <= 1.5 + 1e-3
    for op in range(4):  # one colour operation at a time (the others at their identity)
        q = p._replace(jitter=on, gray=off, order=torch.tensor([op, *(o for o in range(4) if o != op)]).expand(200, 4),
                       factors=torch.where(torch.arange(4) == op, p.factors, torch.tensor([1.0, 1.0, 1.0, 0.0])))
        d = levels(q)
        if op < 3:
            assert d.abs().max() <= 2.5 and 0.3 <= d.mean() <= 0.6, (op, float(d.abs().max()), float(d.mean()))
        else:
            assert d.abs().max() <= 12 and d.abs().mean() <= 1.0, (float(d.abs().max()), float(d.abs().mean()))


def test_hue_shift_is_a_rotation_of_the_colour_wheel():
    """Pure colours move to the next primary / secondary by a sixth of a turn; grey stays; shifts of 0 and 1
    turn give the image back (to rounding); a shift and its opposite undo each other."""
    colours = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [1, 0, 1], [0.5, 0.5, 0.5]],
                           dtype=torch.float32).view(7, 3, 1, 1)
    moved = shift_hue(colours, torch.full((7,), 1 / 6))  # red -> yellow -> green -> ... -> magenta -> red
    assert torch.allclose(moved[:6], torch.cat([colours[1:6], colours[:1]]), atol=1e-6)
    assert torch.allclose(moved[6], colours[6])
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(50, 3, 8, 8, generator=gen)
    for whole in (0.0, 1.0):
        assert torch.allclose(shift_hue(x, torch.full((50,), whole)), x, atol=1e-6)
    shift = torch.rand(50, generator=gen) - 0.5
    assert torch.allclose(shift_hue(shift_hue(x, shift), -shift), x, atol=1e-5)


# ------------------------------------------------------------------------------ defaults and pretrain


def test_the_default_loader_is_device_where_the_simclr_policy_is_batched_and_fits(monkeypatch):
    for dataset in ("synthetic", "cifar100"):
        assert PretrainConfig(dataset=dataset, device="cpu").resolved().loader == "device"
        for other in ({"augmentation": "randaugment"}, {"augmentation": "autoaugment"}, {"image_size": 64}):
            assert PretrainConfig(dataset=dataset, device="cpu", **other).resolved().loader == "workers"
    for aug in ("randaugment", "autoaugment"):
        with pytest.raises(ValueError, match=rf"--loader device\) is not supported for --dataset cifar100 "
                           rf"--augmentation {aug}: --augmentation {aug} has no batched implementation.*; "
                           r"pass --loader workers"):
            PretrainConfig(dataset="cifar100", augmentation=aug, loader="device", device="cpu").resolved()
    with pytest.raises(ValueError, match=r"--image-size 64: SimCLR's policy blurs from 64 px on.*"
                       r"pass --loader workers or an --image-size below 64"):
        PretrainConfig(dataset="cifar100", image_size=64, loader="device", device="cpu").resolved()
    # "fits": the uint8 images (CIFAR-100: 150 MB) take at most a quarter of the device's memory
    assert L.TRAIN_IMAGE_BYTES["cifar100"] == 153_600_000
    monkeypatch.setattr(L, "_device_memory", lambda device: 4 * 153_600_000)
    assert L.default_loader("cifar100", "simclr", 32, CPU) == "device"
    monkeypatch.setattr(L, "_device_memory", lambda device: 4 * 153_600_000 - 1)
    assert L.default_loader("cifar100", "simclr", 32, CPU) == "workers"
    assert L.default_loader("synthetic", "simclr", 32, CPU) == "device" and L.default_loader("digits") == "device"
    monkeypatch.undo()
    # the loaders give other views for simclr: other default names (workers runs keep theirs), and the loader is
    # not a resumable change there
    device = PretrainConfig(dataset="cifar100", device="cpu").resolved()
    workers = PretrainConfig(dataset="cifar100", loader="workers", device="cpu").resolved()
    assert device.out != workers.out
    settings = {k: v for k, v in dataclasses.asdict(workers).items()  # the formula before the device loader
                if k not in RESUMABLE_CHANGES and (k, v) not in ADDED_SETTINGS.items()}
    assert workers.out.endswith(hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:6])


S_FLAGS = ("--dataset", "synthetic", "--arch", "small", "--epochs", "2", "--batch-size", "64", "--steps-per-epoch",
           "3", "--warmup-epochs", "1", "--eval-batch", "64", "--geometry-images", "10", "--device", "cpu",
           "--workers", "0", "--no-progress")


def test_a_killed_simclr_device_loader_run_resumes_to_the_same_numbers(synthetic_root, tmp_path, capsys):
    flags = [*S_FLAGS, "--data-root", str(synthetic_root)]
    whole = tmp_path / "whole"
    assert pretrain.main([*flags, "--out", str(whole)]) == 0  # the default loader for synthetic: device
    assert json.loads((whole / "config.json").read_text())["loader"] == "device"
    run = tmp_path / "killed"
    # epoch 2, step 3 of 3; the last checkpoint came after global step 4
    with pytest.raises(Killed):
        pretrain.main([*flags, "--loader", "device", "--out", str(run), "--checkpoint-every", "2"],
                      step=dies_at(6, forward_loss))
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert (ckpt["epoch"], ckpt["step_in_epoch"]) == (1, 1)
    # the per-image loader gives other views: refused on resume
    assert pretrain.main([*flags, "--loader", "workers", "--out", str(run), "--resume"]) == 2
    assert "was made with --loader device, whose views for --augmentation simclr differ" in capsys.readouterr().err
    assert pretrain.main([*flags, "--out", str(run), "--checkpoint-every", "2", "--resume"]) == 0
    _assert_same_numbers(whole, run)


def test_resume_without_loader_keeps_the_runs_own(tmp_path):
    """--resume without --loader takes the loader from the run's config.json (a run from before --loader: the
    DataLoader); digits, whose views are the same on both, keeps the default."""
    def resumed(dataset: str, saved: dict | None) -> str:
        run = tmp_path / f"{dataset}-{len(list(tmp_path.iterdir()))}"
        run.mkdir()
        if saved is not None:
            (run / "config.json").write_text(json.dumps(saved))
        return resumed_loader(PretrainConfig(
            dataset=dataset, out=str(run), resume=True, device="cpu").resolved()).loader

    assert resumed("synthetic", {"loader": "workers"}) == "workers"
    assert resumed("synthetic", {"epochs": 2}) == "workers"  # made before --loader existed
    assert resumed("synthetic", {"loader": "device"}) == resumed("synthetic", None) == "device"
    assert resumed("digits", {"loader": "workers"}) == "device"
