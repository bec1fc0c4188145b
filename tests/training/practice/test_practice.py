"""Tests of the practice study (training.practice: grid, run, report, claims, figures, cli).

* the grid, typed here from the paper (Sec. 5), read back through training.pretrain's parser; the seeds of the
  points that carry a verdict; the cost of the default study;
* the command line: every flag with its own default in --help, bad values refused naming the flag;
* end to end on a tiny slice (two points a seed, two seeds, one epoch): every output file, the report's numbers
  equal to the runs' own files, a relaunch that skips finished points, a deleted probe result redone alone, a
  diverged run kept as an outcome, and the report redrawn from its CSVs;
* the report of a constructed table: claim records in the suite's format, findings, figures' data.
The verdicts on constructed tables are tested in test_claims.py.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

import reproduce
from clop.claims import read_claims
from clop.stats import MIN_PAIRS
from tests.training.practice.synth import COLLAPSED, eta_table, runs_table
from training.config import config_from_args
from training.practice import claims as PC
from training.practice import cli as practice
from training.practice import figures as PF
from training.practice import report as PR
from training.practice.cli import build_parser
from training.practice.grid import EPOCHS, STUDY, VERDICT_SEEDS, Grid, carries_verdict, estimate_seconds, study_points
from training.practice.run import diverged
from training.practice.table import CHANCE

pytestmark = pytest.mark.usefixtures("one_thread")

# Independent expectations (CLOP paper Sec. 5 and Table 1).
SIX = ["infonce10", "infonce10-clop", "infonce10-clop-etf", "supcon100", "supcon100-clop", "supcon100-clop-etf"]
OUTPUTS = {"practice.md", "practice_runs.csv", "eta_eff.csv", "eta_eff.png", "figure6_batch.png", "figure6_batch.csv",
           "figure7_lr.png", "figure7_lr.csv", "collapse.png", "collapse.csv", "lambda.csv", "claims.csv", "findings.csv"}


# ------------------------------------------------------------------------------------------------ the grid


def test_grid_is_the_paper_in_miniature(tmp_path):
    pts = study_points(seeds=(0, 1, 2), epochs=8, runs=tmp_path, verdict_seeds=0)
    assert len({p.run_dir for p in pts}) == len(pts) == 366  # 122 runs a seed, shared points once
    seen = {}
    for p in pts:
        cfg = config_from_args([*p.args, "--arch", "small", "--epochs", "8", "--out", str(p.run_dir)])[0].resolved()
        assert (cfg.dataset, cfg.arch, cfg.augmentation, cfg.similarity) == ("digits", "small", "digits", "cosine")
        assert p.run_dir.parent == tmp_path / "e8" and p.run_dir.name.endswith(f"_s{cfg.seed}")
        lr = cfg.base_lr * cfg.batch_size / 256
        assert f"_lr{lr:.6g}_" in p.run_dir.name  # the name carries the lr actually used
        seen[(p.variant, cfg.optimizer, cfg.batch_size, round(lr, 9), cfg.clop_lambda, cfg.seed)] = cfg
    for s in (0, 1, 2):
        for v in SIX:
            own = 0.0 if "clop" not in v else 1.0
            for opt in ("lars", "sgd"):
                for lr in (0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0):  # >= 0.01 ... 10, both optimisers, batch 256
                    assert (v, opt, 256, lr, own, s) in seen
            for b in (16, 32, 64, 128, 256, 512):  # lr = 0.3 x B / 256, LARS
                assert (v, "lars", b, round(0.3 * b / 256, 9), own, s) in seen
        for v in ("infonce10-clop", "supcon100-clop"):
            for lam in (0.1, 0.5, 1.0, 1.5):
                assert (v, "lars", 256, 0.3, lam, s) in seen
        for v in ("infonce10", "supcon100"):  # the untrained reference
            assert (v, "lars", 256, 1e-6, 0.0, s) in seen
    labels = {v: (seen[(v, "lars", 256, 0.3, 0.0 if "clop" not in v else 1.0, 0)].loss,
                  seen[(v, "lars", 256, 0.3, 0.0 if "clop" not in v else 1.0, 0)].label_fraction) for v in SIX}
    assert labels["infonce10-clop-etf"] == ("infonce", 0.1) and labels["supcon100"] == ("supcon", 1.0)
    assert seen[("supcon100-clop-etf", "lars", 256, 0.3, 1.0, 0)].prototypes == "etf"
    assert len(study_points(["lambda"], seeds=(0,), runs=tmp_path, verdict_seeds=0)) == 8


def test_points_that_carry_a_verdict_get_more_seeds_and_the_default_fits_90_minutes(tmp_path):
    few = study_points(seeds=(0, 1, 2), runs=tmp_path, verdict_seeds=0)
    pts = study_points(runs=tmp_path)  # the defaults: --seeds 0 1 2, --verdict-seeds 16
    verdict = [p for p in few if carries_verdict(p)]
    # the reference (2), the baselines and CLOP at lr 0.3 and 10 x LARS, SGD (16), the same four on the other four
    # batch sizes of the paper's range, 32 ... 512 (16), the two ETF variants at batch 32 (2): 36 points. Batch 16
    # (below the paper's 32) is drawn but not judged.
    assert len(verdict) == 36 * 3 and VERDICT_SEEDS >= MIN_PAIRS
    names = {p.run_dir.name for p in verdict}
    for name in ("infonce10_sgd_b256_lr10_s0", "supcon100-clop_lars_b32_lr0.0375_s0", "supcon100-clop-etf_lars_b32_lr0.0375_s0",
                 "infonce10_lars_b256_lr1e-06_s0"):
        assert name in names
    for name in ("infonce10-clop-etf_lars_b256_lr10_s0", "infonce10_sgd_b256_lr1_s0", "supcon100-clop-lam0.5_lars_b256_lr0.3_s0",
                 "supcon100-clop_lars_b16_lr0.01875_s0"):
        assert name in {p.run_dir.name for p in few} - names
    extra = {p.run_dir for p in pts} - {p.run_dir for p in few}
    assert len(pts) == len(few) + 36 * (VERDICT_SEEDS - 3) and all(carries_verdict(p) for p in pts if p.run_dir in extra)
    assert {p.seed for p in pts if carries_verdict(p)} == set(range(VERDICT_SEEDS))
    assert {p.seed for p in pts if not carries_verdict(p)} == {0, 1, 2}
    # the measured cost model puts the default study (its own default epochs) under 90 minutes on two cores
    assert estimate_seconds(pts, build_parser().get_default("epochs"), 2) < 90 * 60
    assert build_parser().get_default("epochs") == EPOCHS


def _flag_help(text: str, flag: str) -> str:
    """The help of one flag: from its first mention to the next option line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(flag))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].strip().startswith("--")), len(lines))
    return " ".join(" ".join(lines[start:end]).split())


def test_help_lists_every_flag_with_its_own_default(capsys):
    with pytest.raises(SystemExit) as exc:
        practice.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    parser = build_parser()
    assert parser.get_default("epochs") == 25 and parser.get_default("seeds") == [0, 1, 2]
    for flag, default in (("--out", "paper_figures/practice"), ("--runs", "runs/practice"),
                          ("--epochs", f"(default: {parser.get_default('epochs')})"), ("--seeds", "(default: [0, 1, 2])"),
                          ("--verdict-seeds", f"(default: {VERDICT_SEEDS})"), ("--jobs", "CPU count"),
                          ("--device", "CUDA when present"), ("--data-root", "training.pretrain's"),
                          ("--only", "default: all"), ("--seed-blocks", "(default: off)")):
        assert default in _flag_help(text, flag), (flag, _flag_help(text, flag))
    for flag in ("--report-only", "--no-progress"):
        assert flag in text


@pytest.mark.parametrize("argv, named", [
    (["--jobs", "0"], "--jobs"), (["--epochs", "0"], "--epochs"), (["--seeds", "1", "1"], "--seeds"),
    (["--only", "width"], "--only"), (["--device", "tpu"], "--device"), (["--verdict-seeds", "-1"], "--verdict-seeds"),
    (["--seed-blocks", "5"], "--seed-blocks"),
])
def test_bad_values_are_refused_naming_the_flag(argv, named, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        practice.main([*argv, "--runs", str(tmp_path / "r"), "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before any run


def test_reproduce_runs_practice_only_when_asked():
    steps = {name: (module, build) for name, module, build in reproduce.STEPS}
    assert "practice" in reproduce.LONG_STEPS
    module, build = steps["practice"]
    assert module == "training.practice.cli"
    argv = build("OUT", "cpu")
    assert argv == ["--out", "OUT/practice", "--device", "cpu"]
    args = build_parser().parse_args(argv)
    assert (args.out, args.device) == ("OUT/practice", "cpu")


# ------------------------------------------------------------------------------------------ end to end


TINY = Grid(lrs=(0.3,), optimizers=("lars",), batches=(256,), reference_variants=("infonce10",), variants=("infonce10",))
"""The grid cut to one learning rate, one optimiser, one variant (+ its untrained reference)."""


@pytest.mark.slow
def test_end_to_end_tiny_slice_relaunch_and_redraw(tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "out"
    argv = ["--only", "lr", "batch", "--epochs", "1", "--seeds", "0", "1", "--verdict-seeds", "0", "--runs", str(runs),
            "--out", str(out), "--device", "cpu", "--no-progress"]
    assert practice.main([*argv, "--jobs", "2"], grid=TINY) == 0  # two worker processes
    err = capsys.readouterr().err
    assert "4 points, 0 finished, 0 diverged (kept as outcomes), 4 to run" in err and err.count("-> done") == 4
    assert OUTPUTS <= {p.name for p in out.iterdir()}
    table = pd.read_csv(out / "practice_runs.csv")
    assert len(table) == 4 and set(table["reference"]) == {True, False}
    eta = pd.read_csv(out / "eta_eff.csv")
    for row in table.itertuples():
        run = runs / "e1" / row.run
        probe = json.loads((run / "linear_eval.json").read_text())
        assert math.isclose(row.top1, probe["top1"], rel_tol=1e-12)
        metrics = pd.read_csv(run / "metrics.csv")
        assert math.isclose(row.geom_mu_norm, metrics["geom_mu_norm"].iloc[-1], rel_tol=1e-12)
        assert math.isclose(row.contrastive_last, metrics["contrastive"].iloc[-1], rel_tol=1e-12)
        geometry = pd.read_csv(run / "geometry.csv")
        mine = eta[eta["run"] == row.run]
        assert len(mine) == len(geometry) and np.allclose(mine["eta_eff"], geometry["eta_eff"], equal_nan=True)
        # the end-of-run geometry is that of the logged last epoch, with a bootstrap resolution > 0
        assert math.isclose(row.end_mu_norm, metrics["geom_mu_norm"].iloc[-1], rel_tol=1e-6)
        assert math.isclose(row.end_sum_norm, metrics["geom_class_sum_norm"].iloc[-1], rel_tol=1e-6)
        assert row.res_mu_norm > 0 and row.res_sv_min_ratio > 0
    assert len(pd.read_csv(runs / "e1" / "results.csv")) == 4  # the probes' own results file
    fig7 = pd.read_csv(out / "figure7_lr.csv")
    variant = fig7[fig7["kind"] == "variant"].iloc[0]
    assert variant["n"] == 2 and math.isclose(variant["mean"], 100 * table.loc[~table["reference"], "top1"].mean())

    # relaunch: nothing runs, nothing changes in the runs
    stamps = {p: p.stat().st_mtime_ns for p in runs.rglob("checkpoint.pt")}
    assert practice.main([*argv, "--jobs", "1"], grid=TINY) == 0
    assert "4 points, 4 finished, 0 diverged (kept as outcomes), 0 to run" in capsys.readouterr().err
    assert stamps == {p: p.stat().st_mtime_ns for p in runs.rglob("checkpoint.pt")}

    # a lost probe result: only the probe runs again
    lost = runs / "e1" / "infonce10_lars_b256_lr0.3_s1"
    (lost / "linear_eval.json").unlink()
    assert practice.main([*argv, "--jobs", "1"], grid=TINY) == 0
    err = capsys.readouterr().err
    assert "3 finished, 0 diverged (kept as outcomes), 1 to run" in err
    assert "infonce10_lars_b256_lr0.3_s1: trained -> done" in err
    assert stamps == {p: p.stat().st_mtime_ns for p in runs.rglob("checkpoint.pt")}

    # a run whose loss became non-finite is an outcome: kept, not retried, at chance in the table
    gone = runs / "e1" / "infonce10_lars_b256_lr0.3_s0"
    (gone / "linear_eval.json").unlink()
    (gone / "last_good.pt").write_bytes(b"")
    cfg = json.loads((gone / "config.json").read_text())
    (gone / "config.json").write_text(json.dumps({**cfg, "epochs": 2}))  # it stopped in epoch 2 of 2
    assert diverged(gone)
    assert practice.main([*argv, "--jobs", "1"], grid=TINY) == 0
    assert "3 finished, 1 diverged (kept as outcomes), 0 to run" in capsys.readouterr().err
    table = pd.read_csv(out / "practice_runs.csv").set_index("run")
    assert bool(table.loc[gone.name, "diverged"]) and table.loc[gone.name, "top1"] == CHANCE
    assert not (gone / "linear_eval.json").exists()

    # the report redrawn from its CSVs when --runs holds no finished run: the same claims
    before = (out / "claims.csv").read_text()
    shutil.rmtree(runs)
    assert practice.main([*argv, "--report-only"], grid=TINY) == 0
    assert (out / "claims.csv").read_text() == before
    assert not runs.exists()  # --report-only runs nothing


# ------------------------------------------------------------------------------------------ the report


@pytest.mark.slow
def test_report_from_constructed_tables_and_redraw_from_its_csvs(tmp_path, monkeypatch):
    def collapse(r):  # SGD baselines at lr >= 10 collapse
        return COLLAPSED if r["clop_lambda"] == 0 and not r["reference"] and r["lr"] >= 10 and r["optimizer"] == "sgd" \
            else None
    runs = runs_table(geom=collapse, diverged=lambda r: r["lr"] == 30 and r["seed"] == 2)
    eta = eta_table(runs, lambda r: 0.2 * r.lr)
    written = PR.write_report(runs, eta, tmp_path)
    assert {p.name for p in written} == OUTPUTS
    claims = PC.all_claims(runs, eta, lrs=STUDY.lrs, batches=STUDY.batches)
    records = read_claims(tmp_path / "claims.csv")  # the suite's claim records
    assert [r.id for r in records] == [f"S5-{c.key}" for c in claims]
    assert [r.verdict for r in records] == [c.verdict for c in claims]
    assert all(r.command == "python -m training.practice" and "practice/practice.md" in r.evidence for r in records)
    findings = pd.read_csv(tmp_path / "findings.csv")
    assert set(findings["claim"]) == {c.key for c in claims}
    decided = findings[findings["verdict"].isin(["holds", "fails"])]
    assert len(decided) and (decided["n"] >= 6).all() and np.isfinite(decided["margin_se"]).all()
    md = (tmp_path / "practice.md").read_text()
    for c in claims:
        assert f"{c.key}: **{c.verdict}**" in md
    assert "issue" not in md.lower() and "practice_claims.py" not in md and "practice_report.py" not in md
    assert "one-sided error level" in md and "at n = 8" in md and "Holm over" in md
    fig6 = pd.read_csv(tmp_path / "figure6_batch.csv")
    v = fig6[(fig6["kind"] == "variant")]
    assert sorted(set(v["batch_size"])) == [16, 32, 64, 128, 256, 512] and set(v["variant"]) == set(SIX)
    assert np.allclose(v["lr"], 0.3 * v["batch_size"] / 256)
    row = v[(v["variant"] == "supcon100") & (v["batch_size"] == 64)].iloc[0]
    pick = runs[(runs["variant"] == "supcon100") & (runs["batch_size"] == 64)]
    assert math.isclose(row["mean"], 100 * pick["top1"].mean()) and row["n"] == 8  # a point that carries a verdict
    fig7 = pd.read_csv(tmp_path / "figure7_lr.csv")
    assert fig7.loc[fig7["lr"] == 30, "diverged"].sum() == 12  # seed 2 of both optimisers' six variants
    coll = pd.read_csv(tmp_path / "collapse.csv")
    sgd10 = coll[(coll["metric"] == "sum_norm") & (coll["optimizer"] == "sgd") & (coll["variant"] == "supcon100")
                 & (coll["lr"] == 10)].iloc[0]
    assert sgd10["mean"] > 9.9  # the collapsed geometry: the unit class means add up to ~k

    # redraw from the CSVs alone: the same claims and figures' data
    before = {n: (tmp_path / n).read_text() for n in ("claims.csv", "findings.csv", "figure6_batch.csv", "collapse.csv",
                                                       "practice.md")}
    PR.report([], tmp_path, from_csv_if_empty=True)
    assert before == {n: (tmp_path / n).read_text() for n in before}

    # an interrupted report leaves the previous one as it was, and no temporary file behind
    def boom(*a, **k):
        raise RuntimeError("interrupted")
    monkeypatch.setattr(PF, "plot_figure6", boom)
    with pytest.raises(RuntimeError):
        PR.write_report(runs.assign(top1=0.5), eta, tmp_path)
    assert before == {n: (tmp_path / n).read_text() for n in before}
    assert {p.name for p in tmp_path.iterdir()} == OUTPUTS

    # a CSV that is not the study's is refused, naming what is missing
    runs.drop(columns=["geom_mu_norm"]).to_csv(tmp_path / "practice_runs.csv", index=False)
    with pytest.raises(ValueError, match="geom_mu_norm"):
        PR.report([], tmp_path, from_csv_if_empty=True)
