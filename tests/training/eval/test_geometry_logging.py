"""The class geometry wired into training: metrics.csv's ``geom_`` columns,
RUN/geometry.csv (the Appendix D fits per logged interval), their survival of a kill and ``--resume``, the
linear probe's ``geom_`` columns, and that logging leaves the training numbers bit for bit as they are.

Tiny runs on the real digits (``--arch small``, batch 64, 2 epochs of 4 steps, a 64-wide head), all on
``--device cpu`` in this process with one torch thread: exact comparisons are between runs of this process.
Values recomputed here independently are compared with tolerances far above float32 round-off.
Budget: about 30 s on a busy 2-core CPU.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from clop.metrics import default_rtol
from tests.helpers import Killed, dies_at
from theory.theorem1 import critical_lr
from training import linear_eval, pretrain
from training.data.augment import eval_transform
from training.data.catalog import DATASET_INFO
from training.data.datasets import load_dataset
from training.engine.build import build_model
from training.engine.rundir import Checkpoints
from training.engine.steps import forward_loss
from training.eval import evaluate
from training.eval.geometry import (
    GEOMETRY_KEYS,
    TABLE_KEYS,
    class_geometry,
    eta_table,
    unit_class_means,
)
from training.eval.linear import load_config
from training.eval.results import RESULT_COLUMNS, check_results

pytestmark = pytest.mark.usefixtures("one_thread")

FLAGS = ("--dataset", "digits", "--arch", "small", "--epochs", "2", "--batch-size", "64", "--steps-per-epoch", "4",
         "--warmup-epochs", "1", "--hidden-dim", "64", "--projection-dim", "16", "--eval-batch", "64",
         "--device", "cpu", "--workers", "0", "--no-progress")
STEPS = 4  # per epoch
GEOM = [f"geom_{k}" for k in GEOMETRY_KEYS]
TIME_COLUMNS = ["images_per_s", "epoch_seconds"]
RTOL = default_rtol(359, 16, torch.finfo(torch.float32).eps)  # what the runs use: 359 test digits, 16-d z, float32


def _pretrain(out, *extra: str, step=forward_loss) -> int:
    return pretrain.main([*FLAGS, "--out", str(out), *extra], step=step)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def every1(root, one_thread):
    assert _pretrain(root / "every1", "--geometry-every", "1") == 0
    return root / "every1"


@pytest.fixture(scope="module")
def per_epoch(root, one_thread):
    assert _pretrain(root / "per_epoch") == 0
    return root / "per_epoch"


@pytest.fixture(scope="module")
def every3(root, one_thread):
    assert _pretrain(root / "every3", "--geometry-every", "3") == 0
    return root / "every3"


def _metrics(run) -> pd.DataFrame:
    return pd.read_csv(run / "metrics.csv")


def _geometry(run) -> pd.DataFrame:
    return pd.read_csv(run / "geometry.csv")


# ------------------------------------------------------------------------------------------ metrics.csv


def test_metrics_have_finite_geom_columns_and_proto_cos_only_with_clop(every1, root):
    m = _metrics(every1)
    assert list(m.columns[-len(GEOM):]) == GEOM, "one geom_ column per GEOMETRY_KEYS key, after the others"
    assert np.isfinite(m[GEOM].to_numpy(float)).all()
    assert (m["geom_classes_missing"] == 0).all()  # the 359 test digits hold every class
    assert ((m["geom_class_rank"] >= 1) & (m["geom_class_rank"] <= 10)).all()
    assert ((m["geom_mu_norm"] > 0) & (m["geom_mu_norm"] <= 1 + 1e-9)).all()

    assert _pretrain(root / "noclop", "--clop-lambda", "0", "--epochs", "1", "--warmup-epochs", "0") == 0
    n = _metrics(root / "noclop")
    assert list(n.columns[-len(GEOM):]) == GEOM
    assert n["geom_class_proto_cos"].isna().all(), "no prototypes without CLOP"
    assert np.isfinite(n[[c for c in GEOM if c != "geom_class_proto_cos"]].to_numpy(float)).all()


def test_geom_values_are_the_class_geometry_of_the_checkpointed_network(per_epoch):
    """The last epoch's geom_ columns, recomputed from checkpoint.pt: the network rebuilt from the config, the
    359 test digits through the eval transform in one batch, class_geometry with the run's prototypes."""
    cfg = load_config(per_epoch).resolved()
    ckpt = torch.load(per_epoch / "checkpoint.pt", map_location="cpu", weights_only=False)
    model = build_model(cfg)
    model.load_state_dict(ckpt["model"])
    info = DATASET_INFO["digits"]
    test = load_dataset("digits", cfg.data_root, "test", eval_transform(8, info.mean, info.std))
    x = torch.stack([test[i][0] for i in range(len(test))])
    with torch.no_grad():
        z = model.eval()(x)[1].double()
    expected = class_geometry(z, test.targets, k=10, prototypes=ckpt["objective"]["clop.prototypes"], rtol=RTOL)
    last = _metrics(per_epoch).iloc[-1]
    assert len(test) == 359
    for key in GEOMETRY_KEYS:
        assert last[f"geom_{key}"] == pytest.approx(expected[key], rel=1e-5, abs=1e-6), key


# ------------------------------------------------------------------------------------------ geometry.csv


def _check_rows(g: pd.DataFrame, m: pd.DataFrame, steps: list[int]) -> None:
    assert list(g.columns) == ["epoch", "step", "lr", *TABLE_KEYS] == list(evaluate.GEOMETRY_COLUMNS)
    assert g["step"].tolist() == steps
    assert g["interval"].tolist() == list(range(len(steps)))
    assert g["steps"].tolist() == np.diff([0, *steps]).tolist()
    assert g["epoch"].tolist() == [(s - 1) // STEPS + 1 for s in steps]
    k = DATASET_INFO["digits"].num_classes  # the runs here pre-train on digits
    assert np.allclose(g["eta_crit"], float(critical_lr(k)), rtol=1e-15, atol=0)  # Theorem 1's exact rate
    assert g["mu_norm_before"].iloc[1:].tolist() == g["mu_norm_after"].iloc[:-1].tolist()  # one snapshot each
    assert np.isfinite(g[["lr", "sst", "mu_norm_before", "mu_norm_after"]].to_numpy(float)).all()
    at_ends = g.set_index("step")["lr"].reindex(m["step"]).dropna()
    assert at_ends.tolist() == m.set_index("step")["lr"].reindex(at_ends.index).tolist(), "the lr of that step"


def test_geometry_csv_every_step(every1):
    _check_rows(_geometry(every1), _metrics(every1), list(range(1, 2 * STEPS + 1)))


def test_geometry_csv_per_epoch_by_default_and_its_fit_from_the_checkpoints(per_epoch):
    g = _geometry(per_epoch)
    _check_rows(g, _metrics(per_epoch), [STEPS, 2 * STEPS])
    # interval 1 (epoch 1's end -> epoch 2's end) again, from the two checkpoints: checkpoint.prev.pt is epoch 1's
    cfg = load_config(per_epoch).resolved()
    info = DATASET_INFO["digits"]
    test = load_dataset("digits", cfg.data_root, "test", eval_transform(8, info.mean, info.std))
    x = torch.stack([test[i][0] for i in range(len(test))])
    means = []
    for name in ("checkpoint.prev.pt", "checkpoint.pt"):
        ckpt = torch.load(per_epoch / name, map_location="cpu", weights_only=False)
        model = build_model(cfg)
        model.load_state_dict(ckpt["model"])
        with torch.no_grad():
            means.append(unit_class_means(model.eval()(x)[1], test.targets, k=10, rtol=RTOL))
    assert ckpt["geometry"]["step"] == 2 * STEPS and ckpt["geometry"]["interval"] == 2
    assert torch.allclose(ckpt["geometry"]["means"], means[1], atol=1e-5)
    (row,) = eta_table(means, steps=STEPS, rtol=RTOL)
    got = g.iloc[1]
    for key in ("sst", "mu_norm_before", "mu_norm_after"):
        assert got[key] == pytest.approx(row[key], rel=1e-4, abs=1e-6), key
    if got["sst"] > 1e-4 and math.isfinite(got["eta_eff"]):  # a measurable motion: the fit is well determined
        for key in ("eta_eff", "r2"):
            assert got[key] == pytest.approx(row[key], rel=1e-3, abs=1e-4), key


def test_geometry_logging_leaves_training_bit_identical(every1, per_epoch, root):
    """An extra eval-mode forward pass after every step (--geometry-every 1), one per epoch (default) and none
    (--geometry-images 0): the same losses, rates, collapse metrics and weights."""
    assert _pretrain(root / "off", "--geometry-images", "0") == 0
    off = _metrics(root / "off").drop(columns=TIME_COLUMNS)
    assert not any(c.startswith("geom_") for c in off.columns) and not (root / "off" / "geometry.csv").exists()
    for run in (every1, per_epoch):
        m = _metrics(run).drop(columns=TIME_COLUMNS)
        pd.testing.assert_frame_equal(m[off.columns], off, check_exact=True)
    pd.testing.assert_frame_equal(_metrics(every1)[GEOM], _metrics(per_epoch)[GEOM], check_exact=True)
    a = torch.load(every1 / "checkpoint.pt", map_location="cpu", weights_only=False)
    b = torch.load(root / "off" / "checkpoint.pt", map_location="cpu", weights_only=False)
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name


# ------------------------------------------------------------------------------------------ resume



def test_killed_while_checkpointing_resumes_to_the_same_geometry_csv(every3, root, monkeypatch, capsys):
    """Killed in epoch 2's checkpoint, after geometry.csv got the row of step 6: the resume drops that row,
    restores the step-3 snapshot from epoch 1's checkpoint (step 4) and writes the uninterrupted file."""
    run = root / "killed_in_save"
    monkeypatch.setattr(Checkpoints, "save", dies_at(2, Checkpoints.save))
    with pytest.raises(Killed):
        _pretrain(run, "--geometry-every", "3")
    monkeypatch.undo()
    assert _geometry(run)["step"].tolist() == [3, 6]
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert (ckpt["epoch"], ckpt["step_in_epoch"], ckpt["geometry"]["step"]) == (1, 0, 3)

    capsys.readouterr()
    assert _pretrain(run, "--geometry-every", "3", "--geometry-images", "100", "--resume") == 2
    err = capsys.readouterr().err
    assert "geometry_images=1024, not 100" in err and "--geometry-images 1024" in err

    assert _pretrain(run, "--geometry-every", "3", "--resume") == 0
    assert (run / "geometry.csv").read_bytes() == (every3 / "geometry.csv").read_bytes()
    pd.testing.assert_frame_equal(_metrics(run).drop(columns=TIME_COLUMNS),
                                  _metrics(every3).drop(columns=TIME_COLUMNS), check_exact=True)


def test_killed_mid_epoch_resumes_to_the_same_geometry_csv(every3, root):
    """Killed before step 7 with a checkpoint at step 5 (epoch 2, step 1): the row of step 6 was never
    written, and the interval 3 -> 6 crosses the resume point."""
    run = root / "killed_mid_epoch"
    with pytest.raises(Killed):
        _pretrain(run, "--geometry-every", "3", "--checkpoint-every", "5", step=dies_at(7, forward_loss))
    assert _geometry(run)["step"].tolist() == [3]
    assert _pretrain(run, "--geometry-every", "3", "--checkpoint-every", "5", "--resume") == 0
    assert (run / "geometry.csv").read_bytes() == (every3 / "geometry.csv").read_bytes()


# ------------------------------------------------------------------------------------------ probe, settings


def test_linear_eval_row_has_the_geom_columns(every1, tmp_path):
    assert set(GEOM) <= set(RESULT_COLUMNS)
    results = tmp_path / "results.csv"
    assert linear_eval.main(["--run", str(every1), "--results", str(results), "--epochs", "5", "--device", "cpu",
                             "--workers", "0", "--no-progress"]) == 0
    table = pd.read_csv(results)
    assert list(table.columns) == list(RESULT_COLUMNS) == check_results(results)
    row = table.iloc[0]
    assert row["geom_classes_missing"] == 0 and math.isfinite(row["geom_class_proto_cos"])
    last = _metrics(every1).iloc[-1]  # digits: the probe's test images are the run's held-out images
    for c in GEOM:
        assert row[c] == pytest.approx(last[c], rel=1e-5, abs=1e-6), c


def test_stratified_subset():
    labels = np.repeat(np.arange(5), [40, 30, 20, 9, 1])
    assert np.array_equal(evaluate.stratified_subset(labels, 100, 0), np.arange(100))
    idx = evaluate.stratified_subset(labels, 37, 3)
    per_class = np.bincount(labels[idx], minlength=5)
    assert idx.size == 37 and np.unique(idx).size == 37 and per_class.min() >= 1
    quota = 37 * np.bincount(labels) / labels.size
    assert (np.abs(per_class - quota) < 1.5).all()
    assert np.array_equal(idx, evaluate.stratified_subset(labels, 37, 3))
    assert not np.array_equal(idx, evaluate.stratified_subset(labels, 37, 4))


@pytest.mark.parametrize("flags, message", [
    (("--geometry-images", "5"), "geometry_images=5 is fewer than the 10 classes"),
    (("--geometry-every", "0"), "geometry_every must be an integer >= 1; got 0"),
    (("--geometry-images", "0", "--geometry-every", "2"), "geometry_every=2 logs the class geometry"),
])
def test_bad_geometry_settings_name_the_flag(flags, message, tmp_path, capsys):
    assert _pretrain(tmp_path / "bad", *flags) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())
