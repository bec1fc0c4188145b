"""Rung 3 of the ladder: the network options it adds (no BatchNorm, weight norms held fixed), its measurements,
its report on a small synthetic table and its command line's refusals."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from tests.training.rung3.helpers import one_line_refusal
from training.config import PretrainConfig
from training.engine.model import ContrastiveModel
from training.engine.norms import hold_norms, scale_invariant_weights
from training.rung3 import cli
from training.rung3.grid import NORMS, RUNG3, make_launch, points
from training.rung3.measure import COLLAPSE_MU, MEASURES, invariant_positions, unit_metrics, weight_norm
from training.rung3.report import LADDER_COLUMNS, REPORT_FILES, check_table, write_report
from training.rung3.verdicts import all_claims, onsets


def _small(arch: str) -> ContrastiveModel:
    torch.manual_seed(0)
    return ContrastiveModel(arch, projection_dim=16, hidden_dim=32)


def test_the_network_without_batchnorm_builds_and_keeps_its_shapes():
    model = _small("small-nobn")
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert sum(p.numel() for p in model.encoder.parameters()) == 93_248
    h, z = model(torch.randn(5, 3, 8, 8))
    assert h.shape == (5, 128) and z.shape == (5, 16)
    assert all(float(m.bias.detach().abs().max()) == 0 for m in model.encoder.modules() if isinstance(m, nn.Conv2d))
    assert [p.shape for p in invariant_positions(model)] == [p.shape for p in invariant_positions(_small("small"))]


def test_the_ladder_columns_are_the_ladders():
    from simulations.rungs.summary import LADDER_COLUMNS as THEIRS  # training may not import simulations; a test may

    assert LADDER_COLUMNS == THEIRS


def test_the_scale_invariant_weights_are_those_before_a_batchnorm():
    names = [n for n, _ in scale_invariant_weights(_small("small"))]
    assert names == ["encoder.0.weight", "encoder.3.weight", "encoder.6.weight", "head.0.weight"]
    assert scale_invariant_weights(_small("small-nobn")) == []


def test_such_a_weight_is_scale_invariant():
    model = _small("small").train()
    x = torch.randn(16, 3, 8, 8)
    z0 = model(x)[1].detach()
    with torch.no_grad():
        for _, p in scale_invariant_weights(model):
            p.mul_(3.7)
    assert torch.allclose(model(x)[1], z0, atol=1e-3)  # up to BatchNorm's eps


@pytest.mark.parametrize("hold", [False, True])
def test_holding_the_norms_keeps_them_after_a_step(hold):
    model = _small("small").train()
    weights = [p for _, p in scale_invariant_weights(model)]
    before = [float(p.detach().norm()) for p in weights]
    opt = torch.optim.SGD(model.parameters(), lr=100.0)
    if hold:
        hold_norms(opt, weights)
    model(torch.randn(16, 3, 8, 8))[1].pow(2).sum().backward()
    opt.step()
    after = [float(p.detach().norm()) for p in weights]
    if hold:
        assert after == pytest.approx(before, rel=1e-5)
    else:
        assert all(a > 1.01 * b for a, b in zip(after, before))  # the step is orthogonal to w: the norm grows


def test_hold_norms_refuses_an_empty_list():
    with pytest.raises(ValueError, match="params is empty"):
        hold_norms(torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=1.0), [])


def test_holding_norms_without_batchnorm_is_refused():
    with pytest.raises(ValueError, match="hold_weight_norms: arch='small-nobn'"):
        PretrainConfig(dataset="digits", arch="small-nobn", hold_weight_norms=True, device="cpu").resolved()


def test_unit_metrics_on_constructed_embeddings():
    y = np.repeat(np.arange(3), 4)
    same = unit_metrics(np.tile([[1.0, 2.0, 0.0]], (12, 1)), y, 3, seed=0)
    assert same["mu"] == pytest.approx(1.0) and same["collapsed"] and same["stable_rank"] == pytest.approx(1.0)
    eye = unit_metrics(np.eye(12), y, 3, seed=0)
    assert eye["mu"] == pytest.approx(0.0, abs=1e-12) and not eye["collapsed"]
    assert eye["stable_rank"] == pytest.approx(12.0)
    assert math.isnan(unit_metrics(np.full((12, 3), np.nan), y, 3, seed=0)["mu"])


def test_weight_norm_is_the_joint_norm_of_the_positions():
    model = _small("small")
    assert weight_norm(model) == pytest.approx(math.sqrt(sum(float(p.detach().pow(2).sum()) for p in invariant_positions(model))))


def test_the_grid_and_its_launches():
    pts = points("R", 3, [30.0, 1000.0], ["sgd"], ["bn", "nobn"], [0, 1], [10.0, 30.0])
    assert len(pts) == 8 + 2  # nobn also at lr 10, seeds 0 and 1, after the main grid
    assert [(n, p.value) for n, p in pts[-2:]] == [("nobn", 10.0), ("nobn", 10.0)]
    assert len(points("R", 3, [30.0], ["sgd"], ["bn"], [0], [10.0])) == 1  # no nobn, no context
    norm, p = pts[0]
    assert (norm, str(p.run_dir)) == ("bn", "R/e3/bn/infonce10_sgd_b256_lr30_s0")
    assert p.settings["clop_lambda"] == 0 and p.settings["label_fraction"] == 0.1
    assert "--hold-weight-norms" in make_launch("fixed", "R", 3).extra
    assert make_launch("nobn", "R", 3).extra[:2] == ("--arch", "small-nobn")
    with pytest.raises(ValueError, match="norms"):
        points(norms=["bn", "ln"])


def _synthetic_table() -> pd.DataFrame:
    """bn never collapses; nobn collapses at the larger lr in every seed (and at the smaller one in none)."""
    rng = np.random.default_rng(0)
    rows = []
    for norm in ("bn", "nobn"):
        for lr in (30.0, 1000.0):
            for seed in range(6):
                hit = norm == "nobn" and lr == 1000.0
                mu = 1.0 - 1e-6 * rng.random() if hit else 0.5 + 0.05 * rng.standard_normal()
                rows.append({"run": f"r{seed}", "norm": norm, "optimizer": "sgd", "lr": lr, "seed": seed,
                             "diverged": False, "mu": mu, "res_mu": 1e-3, "mu_norm": math.sqrt(mu),
                             "res_mu_norm": 1e-3, "collapsed": mu >= COLLAPSE_MU, "stable_rank": 2.0, "top1": 0.8,
                             "w_init": 30.0, "w_end": 60.0, "w_growth": 2.0})
    return pd.DataFrame(rows)


def test_the_report_on_a_synthetic_table(tmp_path):
    tab = _synthetic_table()
    assert list(check_table(tab).columns)[5:] == list(MEASURES)
    rows_path = tmp_path / "rows" / "ladder_rows_rung3.csv"
    claims = {c.id: c.verdict for c in write_report(tab, tmp_path / "out", seconds=1.0, epochs=2, rows_path=rows_path)}
    assert claims == {"LAD-R3-collapse-sgd-bn": "fails", "LAD-R3-collapse-sgd-nobn": "holds",
                      "LAD-R3-earlier-nobn-sgd": "inconclusive"}  # one grid step (0.5 decades) cannot decide
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(REPORT_FILES)
    cells = pd.read_csv(tmp_path / "out" / "rung3_cells.csv")
    assert cells["eff_step"].tolist() == pytest.approx([7.5, 250.0, 7.5, 250.0])
    assert "onset lr 1000" in (tmp_path / "out" / "rung3.md").read_text()
    rows = pd.read_csv(rows_path)
    assert list(rows.columns) == list(LADDER_COLUMNS)
    assert rows[["setting", "status", "measured_lo", "measured_hi"]].fillna(-1).values.tolist() == [
        ["bn, batch 256, 6 seeds", "none", 1000.0, -1], ["nobn, batch 256, 6 seeds", "bracketed", 30.0, 1000.0]]


def test_an_earlier_onset_over_a_wide_grid_holds():
    tab = _synthetic_table()
    tab.loc[tab["norm"] == "nobn", ["mu", "collapsed"]] = [1.0, True]  # nobn collapses from lr 30
    assert onsets(tab, "sgd", "nobn").tolist() == pytest.approx([math.log10(30)] * 6)
    assert onsets(tab, "sgd", "bn").tolist() == pytest.approx([3.5] * 6)  # censored half a decade past 1000
    verdicts = {c.id: c.verdict for c in all_claims(tab)}
    assert verdicts["LAD-R3-earlier-nobn-sgd"] == "holds"
    context = tab[(tab["norm"] == "nobn") & (tab["lr"] == 30.0)].assign(lr=3.0)  # a lr that only nobn ran
    claims = {c.id: c for c in all_claims(pd.concat([tab, context]))}
    assert claims["LAD-R3-collapse-sgd-bn"].verdict == "fails" and "lr 3:" not in claims["LAD-R3-collapse-sgd-bn"].result


def test_nothing_collapses_is_not_testable():
    tab = _synthetic_table()
    tab = tab[tab["norm"] == "bn"].copy()
    tab = pd.concat([tab, tab.assign(norm="fixed")])
    assert {c.id: c.verdict for c in all_claims(tab)}["LAD-R3-earlier-fixed-sgd"] == "not testable"


def test_a_table_without_a_column_is_refused():
    with pytest.raises(ValueError, match="lacks the column"):
        check_table(_synthetic_table().drop(columns="mu"))


@pytest.mark.parametrize("argv, needle", [
    (["--jobs", "0"], "--jobs must be an integer >= 1"),
    (["--seeds", "-1"], "seeds must be integers >= 0"),
    (["--lrs", "0"], "lrs must be finite numbers > 0"),
    (["--lrs", "inf"], "lrs must be finite numbers > 0"),
    (["--context-lrs", "-1"], "context_lrs must be finite numbers > 0"),
    (["--context-lrs", "5", "5"], "context_lrs must be distinct"),  # would run and count the point twice
    (["--ladder-rows", "."], "--ladder-rows must name a CSV file"),
    (["--epochs", "0"], "epochs must be an integer >= 1"),
    (["--norms", "ln"], "invalid choice: 'ln'"),
    (["--device", "tpu"], "--device"),
    (["--out", ""], "--out"),
])
def test_bad_flags_are_one_line_errors(argv, needle, capsys, tmp_path):
    assert RUNG3.command == "python -m training.rung3"
    assert needle in one_line_refusal(argv, RUNG3, capsys, tmp_path)


def test_report_only_without_runs_says_so(capsys, tmp_path):
    assert cli.main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--ladder-rows", "",
                     "--report-only"]) == 2
    assert "no finished run" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # the folder it created for the report is removed again


@pytest.mark.slow
def test_a_tiny_grid_runs_resumes_and_reports(tmp_path, capsys):
    argv = ["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--ladder-rows",
            str(tmp_path / "rows.csv"), "--epochs", "1", "--lrs", "30",
            "--optimizers", "sgd", "--seeds", "0", "--context-lrs", "--jobs", "1", "--no-progress", "--device", "cpu"]
    assert cli.main(argv) == 0
    tab = pd.read_csv(tmp_path / "out" / "rung3_runs.csv")
    assert sorted(tab["norm"]) == sorted(NORMS) and tab["w_growth"][tab["norm"] == "fixed"].iloc[0] == pytest.approx(1.0, abs=1e-5)
    capsys.readouterr()
    assert cli.main(argv) == 0  # everything finished: nothing reruns
    assert "3 of 3 runs" in capsys.readouterr().out
    assert len(pd.read_csv(tmp_path / "rows.csv")) == 3
