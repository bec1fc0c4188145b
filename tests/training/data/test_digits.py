"""Tests of the CPU path on real images: ``--dataset digits`` (training.data.digits), ``--arch small``
(training.engine.model) and ``--optimizer sgd`` (training.engine.build), end to end through pretrain and linear_eval.

Every test that compares numbers exactly runs on ``--device cpu`` with one torch thread.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torchvision.transforms import v2

from tests.helpers import Killed, dies_at
from tests.training.data.digit_checks import F_SHAPE, grey_view, looks_mirrored, shifted
from training import linear_eval, pretrain
from training.config import RESUMABLE_CHANGES, PretrainConfig, changed_settings
from training.data.augment import FLIPPING_POLICIES, eval_transform, pretrain_transform
from training.data.catalog import DATASET_INFO
from training.data.datasets import load_dataset
from training.data.digits import digits_split
from training.data.views import TwoViewDataset, labeled_subset, masked_labels
from training.engine.build import build_model, build_optimizer
from training.engine.model import ContrastiveModel, SmallConvNet
from training.engine.steps import forward_loss
from training.eval.linear import load_config
from training.sweeps.grid import points
from training.sweeps.launch import Launch, check_extra, pretrain_config

pytestmark = pytest.mark.usefixtures("one_thread")

DIGITS = load_digits()
COUNTS = np.bincount(DIGITS.target)  # 178 182 177 183 181 182 181 179 174 180
TEST_SHA256 = "f71c9ddf317ebe278f01acb013a7eed702a00236a3733c9eefc19ea0e7aefeee"
"""sha256 of the test indices (little-endian int64) of digits_split() with its defaults: pins the split."""
INFO = DATASET_INFO["digits"]


# ------------------------------------------------------------------------------------------ the split


def test_split_is_stratified_disjoint_fixed_and_as_documented(tmp_path):
    train_idx, test_idx = digits_split()
    assert np.intersect1d(train_idx, test_idx).size == 0
    assert np.array_equal(np.union1d(train_idx, test_idx), np.arange(1797))
    per_class = np.bincount(DIGITS.target[test_idx], minlength=10)
    assert per_class.tolist() == [math.floor(0.2 * n + 0.5) for n in COUNTS]  # a fifth of each class, rounded
    assert per_class.tolist() == [36, 36, 35, 37, 36, 36, 36, 36, 35, 36]  # as the docstring says
    assert (len(train_idx), len(test_idx)) == (1438, 359)  # as --help and the docstrings say
    assert hashlib.sha256(test_idx.astype("<i8").tobytes()).hexdigest() == TEST_SHA256  # every machine, every run
    again_train, again_test = digits_split()
    assert np.array_equal(again_train, train_idx) and np.array_equal(again_test, test_idx)
    assert not np.array_equal(digits_split(seed=1)[1], test_idx)  # the seed does choose the split

    # load_dataset reads exactly these images, scaled from 0..16 to [0, 1]; the root is not used
    for split, idx in (("train", train_idx), ("test", test_idx)):
        ds = load_dataset("digits", tmp_path / "never-created", split)
        assert np.array_equal(ds.indices, idx) and ds.targets == DIGITS.target[idx].tolist()
        assert ds.classes == [str(c) for c in range(10)]
        image, label = ds[5]
        assert image.shape == (1, 8, 8) and image.dtype == torch.float32 and label == DIGITS.target[idx[5]]
        assert torch.equal(image[0], torch.from_numpy(DIGITS.images[idx[5]] / 16.0).float())
        assert float(ds.data.min()) == 0.0 and float(ds.data.max()) == 1.0
    assert not (tmp_path / "never-created").exists()

    pixels = load_dataset("digits", tmp_path, "train").data.double()
    assert INFO.mean == pytest.approx((float(pixels.mean()),) * 3, abs=1e-4)
    assert INFO.std == pytest.approx((float(pixels.std(unbiased=False)),) * 3, abs=1e-4)
    assert (INFO.num_classes, INFO.image_size) == (10, 8)


def test_ten_percent_of_the_labels_stratified_by_default():
    targets = load_dataset("digits", "unused", "train").targets
    cfg = PretrainConfig(dataset="digits", device="cpu").resolved()
    assert cfg.label_fraction == 0.1
    labeled = labeled_subset(targets, cfg.label_fraction, cfg.seed)
    train_counts = np.bincount(targets)
    assert np.bincount(np.asarray(targets)[labeled], minlength=10).tolist() == [
        math.floor(0.1 * n + 0.5) for n in train_counts]
    assert len(labeled) == 145


def test_digits_defaults_resolve_to_something_sensible():
    c = PretrainConfig(dataset="digits", device="cpu").resolved()
    assert (c.image_size, c.augmentation, c.batch_size, c.epochs, c.warmup_epochs) == (8, "digits", 256, 50, 5.0)
    assert c.projection_dim == 128 >= INFO.num_classes  # 10 orthonormal prototypes fit
    assert c.temperature is None and c.optimizer == "lars" and c.arch == "resnet50"
    assert PretrainConfig(dataset="digits", epochs=2, device="cpu").resolved().warmup_epochs == 0.2
    c = PretrainConfig(dataset="cifar100", device="cpu").resolved()  # the paper's defaults stay
    assert (c.augmentation, c.batch_size, c.warmup_epochs, c.optimizer) == ("simclr", 1024, 10.0, "lars")
    for policy in FLIPPING_POLICIES:
        with pytest.raises(ValueError, match=f"augmentation='{policy}' flips images.*--augmentation digits"):
            PretrainConfig(dataset="digits", augmentation=policy, device="cpu").resolved()
    with pytest.raises(ValueError, match=r"optimizer='adam' is not supported; expected one of \['lars', 'sgd'\]"):
        PretrainConfig(dataset="digits", optimizer="adam", device="cpu").resolved()


# ------------------------------------------------------------------------------------ augmentations

def test_the_digits_policy_never_flips_and_the_check_can_tell():
    image = torch.from_numpy(F_SHAPE)[None]
    policy = pretrain_transform("digits", 8, INFO.mean, INFO.std)
    flipping = v2.Compose([v2.RandomHorizontalFlip(p=1.0), policy])  # the negative control
    torch.manual_seed(0)
    views = [grey_view(policy(image)) for _ in range(200)]
    assert not any(looks_mirrored(v, F_SHAPE) for v in views)
    assert all(looks_mirrored(grey_view(flipping(image)), F_SHAPE) for _ in range(50))
    # and the views do vary: shifts of a pixel, noise
    assert len({tuple(np.round(v, 3).ravel()) for v in views}) == 200
    shifts = {max(((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)),
                  key=lambda s: float(np.corrcoef(v.ravel(), shifted(F_SHAPE, *s).ravel())[0, 1])) for v in views}
    assert len(shifts) == 9


def test_views_keep_their_values_in_range_and_stay_grey():
    ds = load_dataset("digits", "unused", "train")
    for size in (8, 32):
        policy = pretrain_transform("digits", size, INFO.mean, INFO.std)
        evaluation = eval_transform(size, INFO.mean, INFO.std)
        torch.manual_seed(1)
        for i in range(0, 1438, 97):
            for x in (policy(ds[i][0]), evaluation(ds[i][0])):
                assert x.shape == (3, size, size) and x.dtype == torch.float32
                assert torch.equal(x[0], x[1]) and torch.equal(x[0], x[2])  # grey replicated, noise included
                grey = torch.from_numpy(grey_view(x))
                assert float(grey.min()) >= -1e-5 and float(grey.max()) <= 1 + 1e-5
    # the evaluation transform at 8 px is exactly the image, normalised: no augmentation
    image = ds[3][0]
    assert torch.allclose(torch.from_numpy(grey_view(eval_transform(8, INFO.mean, INFO.std)(image))), image[0], atol=1e-6)


def test_same_seed_same_views_and_the_global_generator_is_left_alone():
    ds = load_dataset("digits", "unused", "train")
    labels = masked_labels(ds.targets, labeled_subset(ds.targets, 0.1, 0))
    policy = pretrain_transform("digits", 8, INFO.mean, INFO.std)
    a, b = TwoViewDataset(ds, policy, labels, seed=3), TwoViewDataset(ds, policy, labels, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = a[7]
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(999)  # whatever the global generator holds
    second = b[7]
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1]) and first[2:] == second[2:]
    assert not torch.equal(first[0], first[1])  # two different views of one image
    # the views are those of torch.manual_seed(key) followed by two draws of the policy
    torch.manual_seed(((3 * 1_000_003 + 2) * 10_000_019 + 7) % 2**63)
    assert torch.equal(policy(ds[7][0]), first[0]) and torch.equal(policy(ds[7][0]), first[1])
    b.set_epoch(3)
    assert not torch.equal(b[7][0], first[0])


# ------------------------------------------------------------------------------------- small arch


def _conv_macs(net: nn.Module, size: int) -> int:
    total = 0

    def hook(m: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        nonlocal total
        total += out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    net.eval()
    with torch.no_grad():
        net(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return total


def test_small_arch_costs_what_its_docstring_says_and_its_shapes():
    net = SmallConvNet()
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == 93_472 and "93,472 parameters" in SmallConvNet.__doc__
    assert _conv_macs(net, 8) == 645_120 and "645,120 multiply-adds per image at 8x8" in SmallConvNet.__doc__
    assert _conv_macs(net, 32) == 10_321_920 and "10,321,920 at 32x32" in SmallConvNet.__doc__
    for s in (8, 9, 13, 32):  # the formula of the docstring, for any side
        assert _conv_macs(net, s) == 864 * s**2 + 18_432 * math.ceil(s / 2) ** 2 + 73_728 * math.ceil(s / 4) ** 2
    model = ContrastiveModel("small", projection_dim=16, hidden_dim=32)
    assert model.feature_dim == 128 and model.head[0].in_features == 128  # the head follows the encoder
    for s in (8, 32):
        h, z = model(torch.randn(4, 3, s, s))
        assert h.shape == (4, 128) and z.shape == (4, 16)
    cfg = PretrainConfig(dataset="digits", arch="small", device="cpu").resolved()
    h, z = build_model(cfg)(torch.randn(2, 3, 8, 8))
    assert h.shape == (2, 128) and z.shape == (2, 128)


# ------------------------------------------------------------------------------------ SGD vs LARS


def _tiny_step(optimizer: str, steps: int = 1):
    """A tiny model, its parameters before and after ``steps`` steps of ``optimizer``, and its gradients."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3)).double()  # exact steps
    cfg = PretrainConfig(dataset="digits", optimizer=optimizer, base_lr=0.5, weight_decay=0.01,
                                  trust_coefficient=0.02, device="cpu").resolved()
    opt = build_optimizer(cfg, model)
    x = torch.randn(16, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    before = [p.detach().clone() for p in model.parameters()]
    grads = []
    for _ in range(steps):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        opt.step()
    return cfg, opt, before, [p.detach().clone() for p in model.parameters()], grads


def test_sgd_and_lars_differ_only_by_the_trust_ratio():
    cfg, sgd, p0, p_sgd, (g,) = _tiny_step("sgd")
    _, lars, p0_l, p_lars, (g_l,) = _tiny_step("lars")
    assert isinstance(sgd, torch.optim.SGD) and type(lars).__name__ == "LARS"
    assert cfg.lr == 0.5 * 256 / 256
    assert all(torch.equal(a, b) for a, b in zip(p0, p0_l)) and all(torch.equal(a, b) for a, b in zip(g, g_l))
    # the same groups: weight decay on weights (ndim >= 2) only
    assert [grp["weight_decay"] for grp in sgd.param_groups] == [grp["weight_decay"] for grp in lars.param_groups] == [0.01, 0.0]
    assert [grp["momentum"] for grp in sgd.param_groups] == [0.9, 0.9]
    for before, after_sgd, after_lars, grad in zip(p0, p_sgd, p_lars, g):
        wd = 0.01 if before.ndim >= 2 else 0.0
        d = grad + wd * before
        step_sgd, step_lars = after_sgd - before, after_lars - before
        assert torch.allclose(step_sgd, -cfg.lr * d, rtol=1e-10, atol=1e-14)  # SGD, by hand: the raw step
        if before.ndim >= 2:  # LARS: the same step times eta ||p|| / ||d||
            ratio = 0.02 * before.norm() / (d.norm() + 1e-8)
            assert torch.allclose(step_lars, ratio * step_sgd, rtol=1e-10, atol=1e-14)
            assert not torch.allclose(step_lars, step_sgd)
        else:
            assert torch.equal(step_lars, step_sgd)
    # momentum: the second SGD step is lr (m d1 + d2), as LARS's buffer without the ratio
    _, _, q0, q2, (g1, g2) = _tiny_step("sgd", steps=2)
    _, _, _, q1, _ = _tiny_step("sgd", steps=1)
    for a0, a1, a2, d1, d2 in zip(q0, q1, q2, g1, g2):
        wd = 0.01 if a0.ndim >= 2 else 0.0
        expected = -cfg.lr * (0.9 * (d1 + wd * a0) + d2 + wd * a1)
        assert torch.allclose(a2 - a1, expected, rtol=1e-10, atol=1e-14)


def test_an_old_config_without_the_optimizer_is_a_lars_run(tmp_path):
    now = PretrainConfig(dataset="digits", device="cpu").resolved()
    saved = {k: v for k, v in now.__dict__.items() if k != "optimizer"}
    assert changed_settings(saved, now.__dict__) == []
    sgd = {**now.__dict__, "optimizer": "sgd"}
    assert changed_settings(saved, sgd) == ["optimizer: 'lars' -> 'sgd'"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert load_config(tmp_path).optimizer == "lars"
    # the default run name of a LARS run is the one it had before the setting existed (its digest left it out);
    # the settings of --loss ssem, --loss cplearn and --hold-weight-norms came later still, so such a run had none of them either
    later = ("ssem_alpha", "ssem_convention", "cplearn_f", "cplearn_c", "cplearn_beta", "hold_weight_norms")
    old_settings = {k: v for k, v in saved.items() if k not in RESUMABLE_CHANGES and k not in later}
    digest = hashlib.sha1(json.dumps(old_settings, sort_keys=True).encode()).hexdigest()[:6]
    assert now.out.endswith(f"-{digest}")
    assert PretrainConfig(dataset="digits", optimizer="sgd", device="cpu").resolved().out != now.out


# ------------------------------------------------------------------------------------- end to end


FLAGS = ("--dataset", "digits", "--arch", "small", "--optimizer", "sgd", "--epochs", "2", "--device", "cpu",
         "--workers", "0", "--no-progress")


@pytest.fixture(scope="module")
def sgd_run(tmp_path_factory, one_thread):
    run = tmp_path_factory.mktemp("digits") / "run"
    assert pretrain.main([*FLAGS, "--out", str(run)]) == 0
    return run


def test_digits_small_sgd_pretrain_then_probe_beats_chance(sgd_run, capsys):
    config = json.loads((sgd_run / "config.json").read_text())
    assert (config["optimizer"], config["arch"], config["augmentation"], config["image_size"]) == ("sgd", "small", "digits", 8)
    assert linear_eval.main(["--run", str(sgd_run), "--device", "cpu", "--workers", "0", "--no-progress"]) == 0
    row = json.loads((sgd_run / "linear_eval.json").read_text())
    n_test = row["test_images"]
    assert n_test == 359 and row["probe_train_images"] == 145 and row["optimizer"] == "sgd"
    chance = 0.1 + 5 * math.sqrt(0.09 / n_test)  # 1/10 + 5 binomial standard deviations: 0.179
    assert row["top1"] > chance, f"top-1 {row['top1']:.4f} is not above chance + 5 sd ({chance:.4f})"
    with capsys.disabled():  # shown with pytest -s
        print(f"\ndigits, small, sgd, 2 epochs: top-1 {row['top1']:.4f} with {torch.get_num_threads()} thread(s)")

    # resuming it with the other optimizer is refused, naming the setting
    capsys.readouterr()
    assert pretrain.main([*FLAGS[:4], "--optimizer", "lars", *FLAGS[6:], "--out", str(sgd_run), "--resume"]) == 2
    assert "optimizer: 'sgd' -> 'lars'" in capsys.readouterr().err



def test_a_killed_digits_run_resumes_to_the_same_numbers(sgd_run, tmp_path):
    run = tmp_path / "killed"
    # epoch 2, step 3 of 5; the last checkpoint came after global step 6
    with pytest.raises(Killed):
        pretrain.main([*FLAGS, "--out", str(run), "--checkpoint-every", "3"], step=dies_at(8, forward_loss))
    assert pretrain.main([*FLAGS, "--out", str(run), "--checkpoint-every", "3", "--resume"]) == 0
    a = torch.load(sgd_run / "checkpoint.pt", map_location="cpu", weights_only=False)
    b = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert (b["epoch"], b["step_in_epoch"]) == (2, 0)
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])


def test_sweep_passes_digits_small_and_sgd_through(tmp_path):
    launch = Launch(launcher="print", root=tmp_path, extra=check_extra(
        ["--arch", "small", "--optimizer", "sgd", "--epochs", "2"]))
    (point,) = points("lr", dataset="digits", variants=["supcon100-clop"], values=[10], root=tmp_path)
    cfg = pretrain_config(point, launch)
    assert (cfg.dataset, cfg.arch, cfg.optimizer, cfg.augmentation, cfg.epochs) == ("digits", "small", "sgd", "digits", 2)
    assert cfg.lr == pytest.approx(10.0)
