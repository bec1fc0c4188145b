"""End-to-end tests of training.pretrain and training.linear_eval on generated CIFAR-format data (CPU).

The smoke run is the real code path (ResNet-50, LARS, warm-up + cosine, the CLOP objective, the
metrics and the checkpoint) at 16 px with a batch of 16. Every run is on the CPU (``--device cpu``): the
same-seed comparison is bit-exact there, and on CUDA cudnn.benchmark makes runs inexact. Budget: about a
minute on a 2-core CPU.
"""

from __future__ import annotations

import doctest
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from clop import prototypes as clop_prototypes
from training import linear_eval, pretrain
from training.config import SMOKE, PretrainConfig, config_from_args
from training.data.catalog import DATASET_INFO
from training.data.datasets import load_dataset
from training.data.views import TwoViewDataset, labeled_subset
from training.engine import model as tmodel
from training.engine.build import build_objective
from training.engine.model import ContrastiveModel
from training.engine.steps import forward_loss
from training.eval.evaluate import collapse_row

TIME_COLUMNS = ["images_per_s", "epoch_seconds"]


@pytest.fixture(scope="module")
def data_root(synthetic_data) -> Path:
    return synthetic_data


def _smoke(out: Path, data_root: Path, *extra: str, step=forward_loss) -> int:
    return pretrain.main(["--smoke", "--no-progress", "--device", "cpu", "--out", str(out), "--data-root", str(data_root),
                          *extra], step=step)


def _probe(run: Path, *extra: str) -> int:
    return linear_eval.main(["--run", str(run), "--no-progress", "--workers", "0", "--epochs", "20", "--device", "cpu",
                             *extra])


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, data_root) -> Path:
    run = tmp_path_factory.mktemp("runs") / "smoke"
    assert _smoke(run, data_root) == 0
    assert _probe(run) == 0
    return run


# ------------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_smoke_run_writes_config_metrics_checkpoint_and_labeled_split(smoke_run):
    cfg = json.loads((smoke_run / "config.json").read_text())
    assert cfg["dataset"] == "synthetic" and cfg["arch"] == "resnet50" and cfg["image_size"] == 16
    assert cfg["clop_lambda"] == 1.0 and cfg["label_fraction"] == 0.1

    m = pd.read_csv(smoke_run / "metrics.csv")
    assert list(m["epoch"]) == [1, 2] and list(m["step"]) == [3, 6]
    for col in ["loss", "contrastive", "clop", "lr", "stable_rank", "entropy_rank", "sv1", "sv5", "collapsed"]:
        assert col in m.columns
    assert np.isfinite(m[["loss", "contrastive", "clop", "stable_rank", "entropy_rank"]].to_numpy()).all()
    # the total is the sum of its parts (epoch means of per-step values)
    np.testing.assert_allclose(m["loss"], m["contrastive"] + m["clop"], rtol=1e-6)
    assert (m["clop"] > 0).all()
    # ranks of 128-d embeddings of a 64-image batch lie in [1, 64]
    assert ((m["stable_rank"] >= 1) & (m["entropy_rank"] <= 64)).all()

    labeled = np.load(smoke_run / "labeled_indices.npy")
    targets = load_dataset("synthetic", cfg["data_root"], "train").targets
    np.testing.assert_array_equal(labeled, labeled_subset(targets, 0.1, cfg["seed"]))

    ckpt = torch.load(smoke_run / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 2 and ckpt["config"] == cfg
    # the CLOP prototypes are saved with the checkpoint and are the seeded orthonormal draw
    k = DATASET_INFO["synthetic"].num_classes
    expected = clop_prototypes.orthonormal(k, cfg["projection_dim"], seed=cfg["seed"], dtype=torch.float32, device="cpu")
    torch.testing.assert_close(ckpt["objective"]["clop.prototypes"], expected)


@pytest.mark.slow
def test_schedule_in_the_run_follows_warmup_then_cosine(smoke_run):
    """lr of each epoch's last step = 0.3 x 16/256 x warmup_cosine(step - 1) with 3 warm-up steps of 6."""
    from training.optim import warmup_cosine

    m = pd.read_csv(smoke_run / "metrics.csv")
    peak = 0.3 * 16 / 256
    for step, lr in zip(m["step"], m["lr"]):
        assert lr == pytest.approx(peak * warmup_cosine(step - 1, 6, 3), rel=1e-12)


@pytest.mark.slow
def test_linear_eval_appends_a_results_row_with_every_setting(smoke_run):
    res = pd.read_csv(smoke_run.parent / "results.csv")
    assert len(res) == 1
    row = res.iloc[0]
    assert 0.0 <= row["top1"] <= row["top5"] <= 1.0
    # The synthetic classes differ in colour and texture, so even the barely trained smoke network's features
    # separate them: the probe (50 labels, 20 epochs) must beat chance 1/k by 5 binomial standard errors of a
    # chance-level accuracy on the test set (0.1 + 0.106 for k = 10, n = 200). Measured: top-1 0.70-0.81 over
    # pre-training seeds 0-2, probe seeds 0-1 and 1 or 2 threads, far from that line.
    k, n_test = DATASET_INFO["synthetic"].num_classes, int(row["test_images"])
    chance = 1.0 / k
    assert row["top1"] > chance + 5 * math.sqrt(chance * (1 - chance) / n_test), row["top1"]
    assert row["top5"] > 5 * chance + 5 * math.sqrt(5 * chance * (1 - 5 * chance) / n_test), row["top5"]
    for col in ["dataset", "loss", "clop_lambda", "prototypes", "similarity", "label_fraction", "augmentation",
                "batch_size", "base_lr", "epochs", "seed", "stable_rank", "entropy_rank", "feature_stable_rank"]:
        assert col in res.columns
    assert row["probe_train_images"] == len(np.load(smoke_run / "labeled_indices.npy"))
    assert row["test_images"] == len(load_dataset("synthetic", row["data_root"], "test").targets)
    assert json.loads((smoke_run / "linear_eval.json").read_text())["top1"] == pytest.approx(row["top1"])


@pytest.mark.slow
def test_same_seed_same_numbers_other_seed_other_numbers(smoke_run, data_root, tmp_path):
    again = tmp_path / "again"
    assert _smoke(again, data_root) == 0
    assert _probe(again, "--results", str(tmp_path / "results.csv")) == 0
    a = pd.read_csv(smoke_run / "metrics.csv").drop(columns=TIME_COLUMNS)
    b = pd.read_csv(again / "metrics.csv").drop(columns=TIME_COLUMNS)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    first = pd.read_csv(smoke_run.parent / "results.csv").iloc[0]
    second = pd.read_csv(tmp_path / "results.csv").iloc[0]
    assert (first["top1"], first["top5"], first["stable_rank"]) == (second["top1"], second["top5"], second["stable_rank"])

    other = tmp_path / "other"
    assert _smoke(other, data_root, "--seed", "1", "--arch", "resnet18", "--epochs", "1", "--warmup-epochs", "0") == 0
    c = pd.read_csv(other / "metrics.csv")
    assert c.loc[0, "loss"] != a.loc[0, "loss"]


# --------------------------------------------------------------------------- labels and the CLOP term


@pytest.mark.slow
def test_unlabeled_samples_never_reach_the_clop_term(data_root, tmp_path, monkeypatch):
    """Every label the objective sees is -1 unless its image is in the saved labeled subset, and then it is
    the image's true label; the CLOP term's value equals the term recomputed on the labeled rows only."""
    seen_items: list[tuple[int, int]] = []
    original_getitem = TwoViewDataset.__getitem__

    def spy_getitem(self, i):
        item = original_getitem(self, i)
        seen_items.append((int(item[3]), int(item[2])))
        return item

    batches: list[tuple[torch.Tensor, float, float]] = []

    def spy_step(model, objective, v1, v2, labels, ctx):
        """forward_loss, recording what the objective gets: its labels and the CLOP term, and the term
        recomputed on the labeled rows."""
        forward = objective.forward

        def recording_forward(z1, z2, labels):
            out = forward(z1, z2, labels)
            keep = labels >= 0
            zl = torch.cat([z1[keep], z2[keep]])
            yl = torch.cat([labels[keep], labels[keep]])
            c = objective.clop.prototypes[yl]
            direct = (1 - torch.nn.functional.cosine_similarity(zl, c, dim=1)).mean() if len(yl) else zl.new_zeros(())
            batches.append((labels.clone(), float(out["clop"].detach()), float(direct.detach())))
            return out

        objective.forward = recording_forward
        try:
            return forward_loss(model, objective, v1, v2, labels, ctx)
        finally:
            del objective.forward  # the class's forward again

    monkeypatch.setattr(TwoViewDataset, "__getitem__", spy_getitem)
    run = tmp_path / "spy"
    assert _smoke(run, data_root, "--arch", "resnet18", "--label-fraction", "0.3", "--epochs", "1",
                  "--warmup-epochs", "0", "--loader", "workers", step=spy_step) == 0  # the per-image path calls __getitem__

    labeled = set(np.load(run / "labeled_indices.npy").tolist())
    targets = load_dataset("synthetic", data_root, "train").targets
    assert len(batches) == 3
    for b, (labels, clop_value, direct) in enumerate(batches):
        items = seen_items[16 * b: 16 * (b + 1)]
        assert [lab for _, lab in items] == labels.tolist()
        for i, lab in items:
            assert lab == (targets[i] if i in labeled else -1)
        assert clop_value == pytest.approx(direct, rel=1e-5)
    assert any((labels == -1).any() for labels, _, _ in batches)


# ------------------------------------------------------------------------------- failures and guards


def test_nonfinite_loss_stops_with_the_last_good_state_saved(data_root, tmp_path, capsys):
    calls = {"n": 0}

    def nan_at_second_step(*args):
        out = forward_loss(*args)
        calls["n"] += 1
        if calls["n"] == 2:
            out = {k: v * float("nan") for k, v in out.items()}
        return out

    run = tmp_path / "nan"
    assert _smoke(run, data_root, "--arch", "resnet18", step=nan_at_second_step) == 3
    assert "nan at epoch 1, step 2" in capsys.readouterr().err
    assert not (run / "checkpoint.pt").exists(), "no epoch finished, so there is no epoch checkpoint"
    ckpt = torch.load(run / "last_good.pt", map_location="cpu", weights_only=False)
    assert ckpt["nonfinite_at"] == {"epoch": 1, "step": 2}
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert ckpt["optimizer"]["state"], "the saved state is the one after the first (good) step"


@pytest.mark.slow
def test_existing_run_is_not_overwritten_unless_asked(data_root, tmp_path, capsys):
    run = tmp_path / "twice"
    args = ("--arch", "resnet18", "--epochs", "1", "--warmup-epochs", "0", "--steps-per-epoch", "1")
    assert _smoke(run, data_root, *args) == 0
    before = (run / "metrics.csv").read_text()
    assert _smoke(run, data_root, *args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (run / "metrics.csv").read_text() == before
    assert _smoke(run, data_root, *args, "--overwrite") == 0
    assert len(pd.read_csv(run / "metrics.csv")) == 1


@pytest.mark.slow
def test_missing_dataset_fails_at_once_naming_the_path(tmp_path, capsys):
    empty = tmp_path / "nothing-here"
    assert pretrain.main(["--dataset", "cifar100", "--data-root", str(empty), "--out", str(tmp_path / "r"),
                          "--no-progress", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and "--download" in err
    # nothing was trained, so the failed start does not block the same --out once the data is there
    assert pretrain.main(["--smoke", "--arch", "resnet18", "--epochs", "1", "--warmup-epochs", "0",
                          "--steps-per-epoch", "1", "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "r"),
                          "--no-progress", "--device", "cpu"]) == 0


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--clop-lambda", "-1"], "clop_lambda"),
        (["--label-fraction", "0"], "label_fraction"),
        (["--loss", "vicreg", "--temperature", "0.2"], "temperature"),
        (["--dataset", "tiny-imagenet", "--projection-dim", "128"], "projection_dim"),
        (["--warmup-epochs", "5", "--epochs", "2"], "warmup_epochs"),
        (["--batch-size", "4096"], "batch_size"),
        (["--image-size", "4"], "image_size"),
    ],
)
def test_bad_settings_fail_with_a_message_naming_the_setting(flags, needle, data_root, tmp_path, capsys):
    assert _smoke(tmp_path / "bad", data_root, *flags) == 2
    assert needle in capsys.readouterr().err


def test_smoke_keeps_flags_the_user_gave():
    cfg, _ = config_from_args(["--smoke", "--batch-size", "1024", "--dataset", "cifar100"])
    assert cfg.batch_size == 1024 and cfg.dataset == "cifar100" and cfg.image_size == 16
    cfg, _ = config_from_args(["--smoke"])
    assert cfg.batch_size == SMOKE["batch_size"] and cfg.dataset == "synthetic"


def test_resolved_defaults_follow_the_dataset():
    c = PretrainConfig(dataset="tiny-imagenet").resolved()
    assert (c.epochs, c.image_size, c.projection_dim) == (100, 64, 256)
    c = PretrainConfig(dataset="imagenet").resolved()
    assert (c.epochs, c.image_size, c.projection_dim) == (200, 224, 1024)
    c = PretrainConfig(dataset="cifar100", batch_size=512).resolved()
    assert (c.epochs, c.image_size, c.projection_dim) == (200, 32, 128)
    assert c.lr == pytest.approx(0.3 * 512 / 256)


# ----------------------------------------------------------------------------------- model and metrics


def test_model_docstring_example():
    result = doctest.testmod(tmodel)
    assert result.attempted > 0 and result.failed == 0


def test_resnet50_small_stem_keeps_the_resolution_until_layer2():
    model = ContrastiveModel("resnet50", small_images=True, projection_dim=32, hidden_dim=64).eval()
    assert model.encoder.conv1.kernel_size == (3, 3) and model.encoder.conv1.stride == (1, 1)
    assert isinstance(model.encoder.maxpool, torch.nn.Identity)
    x = torch.randn(2, 3, 16, 16)
    assert model.encoder.layer1(model.encoder.relu(model.encoder.bn1(model.encoder.conv1(x)))).shape[-1] == 16
    h, z = model(x)
    assert h.shape == (2, 2048) and z.shape == (2, 32)
    big = ContrastiveModel("resnet18", small_images=False, projection_dim=8, hidden_dim=16)
    assert big.encoder.conv1.kernel_size == (7, 7)


def test_collapse_flag_separates_one_direction_from_spread_embeddings():
    g = torch.Generator().manual_seed(0)
    one_way = torch.randn(1, 16, generator=g) * torch.rand(64, 1, generator=g).add(0.5)
    assert collapse_row(one_way + 1e-4 * torch.randn(64, 16, generator=g))["collapsed"]
    spread = collapse_row(torch.randn(64, 16, generator=g))
    assert not spread["collapsed"] and spread["unit_mean_norm"] < 0.5 and not math.isnan(spread["stable_rank"])


def test_bf16_channels_last_path_runs_and_stays_close_to_float32():
    """The CUDA fast path (bf16 autocast, channels-last) also runs on the CPU: same loss to bf16 precision."""
    from training.engine import distributed

    torch.manual_seed(0)
    model = ContrastiveModel("resnet18", small_images=True, projection_dim=16, hidden_dim=32)
    cfg = PretrainConfig(dataset="synthetic", projection_dim=16, device="cpu").resolved()
    objective = build_objective(cfg, torch.device("cpu"))
    v1, v2 = torch.randn(2, 8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, -1, 1, -1, 2, -1, 3, -1])
    ctx = distributed.Context()
    slow = forward_loss(model, objective, v1, v2, labels, ctx, fast=False)
    fast = forward_loss(model.to(memory_format=torch.channels_last), objective, v1, v2, labels, ctx, fast=True)
    assert fast["loss"].dtype == torch.float32 and torch.isfinite(fast["loss"])
    assert float(fast["loss"].detach()) == pytest.approx(float(slow["loss"].detach()), rel=2e-2)
    fast["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
