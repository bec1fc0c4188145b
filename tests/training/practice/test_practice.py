"""Tests of the practice study (training.practice: grid, run, report, claims, figures, cli).

* the grid, typed here from the paper (Sec. 5), read back through training.pretrain's parser;
* the command line: every flag with its default in --help, bad values refused naming the flag;
* end to end on a tiny slice (two points a seed, two seeds, one epoch): every output file, the report's numbers
  equal to the runs' own files, a relaunch that skips finished points, a deleted probe result redone alone, a
  diverged run kept as an outcome, and the report redrawn from its CSVs;
* the verdicts on constructed per-run tables where each claim holds, and where it fails.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

import reproduce
from training.config import config_from_args
from training.eval.evaluate import GEOM_COLUMNS
from training.practice import claims as PC
from training.practice import cli as practice
from training.practice import figures as PF
from training.practice import report as PR
from training.practice.cli import build_parser
from training.practice.grid import STUDY, Grid, estimate_seconds, study_points
from training.practice.run import diverged

pytestmark = pytest.mark.usefixtures("one_thread")

# Independent expectations (CLOP paper Sec. 5 and Table 1).
SIX = ["infonce10", "infonce10-clop", "infonce10-clop-etf", "supcon100", "supcon100-clop", "supcon100-clop-etf"]
OUTPUTS = {"practice.md", "practice_runs.csv", "eta_eff.csv", "eta_eff.png", "figure6_batch.png", "figure6_batch.csv",
           "figure7_lr.png", "figure7_lr.csv", "collapse.png", "collapse.csv", "lambda.csv", "claims.csv"}


# ------------------------------------------------------------------------------------------------ the grid


def test_grid_is_the_preset_of_the_issue(tmp_path):
    pts = study_points(seeds=(0, 1, 2), epochs=8, runs=tmp_path)
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
    assert len(study_points(["lambda"], seeds=(0,), runs=tmp_path)) == 8
    # the measured cost model puts the full study under the hour on two cores
    assert estimate_seconds(pts, 8, 2) < 3600


def test_help_lists_every_flag_with_its_default(capsys):
    with pytest.raises(SystemExit) as exc:
        practice.main(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag, default in (("--out", "paper_figures/practice"), ("--runs", "runs/practice"), ("--epochs", "8"),
                          ("--seeds", "[0, 1, 2]"), ("--jobs", "CPU count"), ("--device", "CUDA when present"),
                          ("--data-root", "training.pretrain's"), ("--only", "default: all")):
        assert flag in text and default in text, flag
    for flag in ("--report-only", "--no-progress"):
        assert flag in text


@pytest.mark.parametrize("argv, named", [
    (["--jobs", "0"], "--jobs"), (["--epochs", "0"], "--epochs"), (["--seeds", "1", "1"], "--seeds"),
    (["--only", "width"], "--only"), (["--device", "tpu"], "--device"),
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
    argv = ["--only", "lr", "batch", "--epochs", "1", "--seeds", "0", "1", "--runs", str(runs), "--out", str(out),
            "--device", "cpu", "--no-progress"]
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
    assert bool(table.loc[gone.name, "diverged"]) and table.loc[gone.name, "top1"] == PC.CHANCE
    assert not (gone / "linear_eval.json").exists()

    # the report redrawn from its CSVs when --runs holds no finished run: the same claims
    before = (out / "claims.csv").read_text()
    shutil.rmtree(runs)
    assert practice.main([*argv, "--report-only"], grid=TINY) == 0
    assert (out / "claims.csv").read_text() == before
    assert not runs.exists()  # --report-only runs nothing


# ------------------------------------------------------------------------------------------ constructed runs


def synth_runs(*, top1=None, geom=None, diverged=None, seeds=(0, 1, 2), noise=0.3, rng=0):
    """A per-run table of the whole grid; top1 in %, ``top1(row)`` / ``geom(row)`` / ``diverged(row)`` override."""
    g = np.random.default_rng(rng)
    rows = []
    for p in study_points(seeds=seeds, epochs=8, runs="/nonexistent"):
        s = p.settings
        ref = not p.in_paper
        clop = s["clop_lambda"] > 0
        lr = s["base_lr"] * s["batch_size"] / 256
        row = {"run": p.name, "variant": p.variant, "label": p.variant, "reference": ref, "loss": s["loss"],
               "label_fraction": s["label_fraction"], "clop_lambda": s["clop_lambda"], "prototypes": s["prototypes"],
               "optimizer": s["optimizer"], "batch_size": s["batch_size"], "base_lr": s["base_lr"], "lr": lr,
               "seed": s["seed"], "epochs": 8, "diverged": False, "top1": 90.0, "top5": 0.99, "loss_first": 6.0,
               "loss_last": 5.0, "contrastive_first": 6.0, "contrastive_last": 5.0 - 0.01 * math.log10(max(lr, 1e-6)),
               **{c: math.nan for c in GEOM_COLUMNS},
               "geom_mu_norm": 0.3 + 0.02 * g.standard_normal(), "geom_classes_missing": 0.0, "geom_class_rank": 10.0,
               "geom_class_stable_rank": (9.9 if clop else 9.0) + 0.05 * g.standard_normal(),
               "geom_class_sum_norm": 3.0 if clop else 0.3, "geom_class_cos_gap_etf": 0.1 if clop else 0.005,
               "geom_class_cos_gap_orth": 0.01 if clop else 0.105, "geom_class_proto_cos": 0.9 if clop else math.nan}
        if top1 is not None:
            row["top1"] = top1(row)
        row["top1"] = (row["top1"] + noise * g.standard_normal()) / 100.0
        row.update((geom(row) or {}) if geom is not None else {})
        if diverged is not None and diverged(row):
            row["diverged"], row["top1"] = True, PC.CHANCE
        rows.append(row)
    return pd.DataFrame(rows, columns=list(PC.RUN_COLUMNS))


def synth_eta(runs, eta_step, *, r2=0.97, r2_step=0.95, s_min=0.5):
    rows = [{"run": r.run, "variant": r.variant, "optimizer": r.optimizer, "batch_size": r.batch_size, "lr": r.lr,
             "clop_lambda": r.clop_lambda, "seed": r.seed, "reference": r.reference, "epoch": e, "step": 5 * e,
             "step_lr": r.lr, "interval": e - 1, "eta_eff": 5 * eta_step(r), "eta_step": eta_step(r), "steps": 5,
             "r2": r2, "r2_step": r2_step, "sst": 0.5, "ssr": 0.01, "s_min": s_min, "mu_norm_before": 0.5,
             "mu_norm_after": 0.5, "eta_crit": 2.25, "trusted": False}
            for r in runs.itertuples() for e in (1, 2, 3)]
    return pd.DataFrame(rows, columns=list(PC.ETA_COLUMNS))


def _claims(runs, eta=None):
    eta = synth_eta(runs, lambda r: 0.1 * r.lr) if eta is None else eta
    return {c.key: c for c in PC.all_claims(runs, eta, lrs=STUDY.lrs, batches=STUDY.batches)}


def _collapse_at(threshold: float, opts=("lars", "sgd")):
    def geom(r):
        if r["clop_lambda"] == 0 and not r["reference"] and r["lr"] >= threshold and r["optimizer"] in opts:
            return {"geom_mu_norm": 0.99995, "geom_class_stable_rank": 1.0, "geom_class_rank": 2.0}
    return geom


def test_collapse_at_lr_10_holds_fails_and_says_with_which_optimiser():
    sgd_only = _claims(synth_runs(geom=_collapse_at(10.0, ("sgd",))))["collapse-lr10"]
    assert sgd_only.verdict == "inconclusive"  # a mixture across optimisers
    assert "with LARS: fails" in sgd_only.summary and "with SGD: holds" in sgd_only.summary
    assert "SGD lr 10" in sgd_only.summary and "LARS none on the grid" in sgd_only.summary
    assert _claims(synth_runs(geom=_collapse_at(10.0)))["collapse-lr10"].verdict == "holds"
    assert _claims(synth_runs(geom=_collapse_at(30.0)))["collapse-lr10"].verdict == "fails"  # only beyond 10
    assert _claims(synth_runs())["collapse-lr10"].verdict == "fails"


def test_smaller_degradation_with_clop():
    def drop(base_pp, clop_pp):
        return lambda r: 90.0 - (0 if r["lr"] < 10 else (clop_pp if r["clop_lambda"] > 0 else base_pp))
    assert _claims(synth_runs(top1=drop(40.0, 2.0)))["clop-degradation"].verdict == "holds"
    same = _claims(synth_runs(top1=drop(40.0, 40.0), noise=0.05))["clop-degradation"]
    assert same.verdict == "fails" and all(f.verdict == "fails" for f in same.findings if f.role == "verdict")
    assert _claims(synth_runs(top1=drop(2.0, 40.0)))["clop-degradation"].verdict == "fails"  # CLOP degrades more


def test_clop_across_batch_sizes_and_the_batch_32_claim():
    better = lambda r: 90.0 + (3.0 if r["clop_lambda"] > 0 else 0.0)  # noqa: E731
    c = _claims(synth_runs(top1=better))
    assert c["clop-all-batches"].verdict == "holds" and len(c["clop-all-batches"].findings) == 12
    assert c["clop-batch32"].verdict == "holds"  # SupCon + CLOP at 32: +3 pp over SupCon at 512
    worse16 = lambda r: better(r) - (6.0 if r["batch_size"] == 16 and r["clop_lambda"] > 0 else 0.0)  # noqa: E731
    assert _claims(synth_runs(top1=worse16))["clop-all-batches"].verdict == "fails"
    small_bad = lambda r: better(r) - (8.0 if r["batch_size"] == 32 else 0.0)  # noqa: E731
    assert _claims(synth_runs(top1=small_bad))["clop-batch32"].verdict == "fails"  # 5 pp below SupCon at 512


def test_class_mean_geometry_claims():
    c = _claims(synth_runs())  # baselines: ETF-like, stable rank 9; CLOP: orthogonal, stable rank 9.9
    assert c["baseline-simplex"].verdict == "holds" and c["clop-orthogonal"].verdict == "holds"
    collapsed = _claims(synth_runs(geom=_collapse_at(0.0)))  # every baseline run collapsed
    assert collapsed["baseline-simplex"].verdict == "fails"
    ortho = lambda r: {"geom_class_cos_gap_etf": 0.1, "geom_class_cos_gap_orth": 0.01,  # noqa: E731
                       "geom_class_stable_rank": 9.95}
    assert _claims(synth_runs(geom=ortho))["baseline-simplex"].verdict == "fails"
    etf = lambda r: {"geom_class_cos_gap_etf": 0.005, "geom_class_cos_gap_orth": 0.105,  # noqa: E731
                     "geom_class_stable_rank": 9.0}
    assert _claims(synth_runs(geom=etf))["clop-orthogonal"].verdict == "fails"


def test_small_batch_lars_learns_or_not():
    learns = lambda r: 85.0 if r["reference"] else 90.0  # noqa: E731
    c = _claims(synth_runs(top1=learns))["small-batch-lars"]
    assert c.verdict == "holds" and c.summary.startswith("6 of 6")
    assert _claims(synth_runs(top1=lambda r: 90.0, noise=0.05))["small-batch-lars"].verdict == "fails"  # = untrained
    # a diverged small-batch run counts at chance: it did not learn
    div = _claims(synth_runs(top1=learns, diverged=lambda r: r["batch_size"] == 32 and r["loss"] == "infonce"))
    assert div["small-batch-lars"].verdict == "inconclusive" and div["small-batch-lars"].summary.startswith("3 of 6")


def test_eta_bridge_outcomes():
    runs = synth_runs(geom=_collapse_at(10.0))
    collapsed = set(runs.loc[runs["geom_mu_norm"] >= 0.999, "run"])
    cross = synth_eta(runs, lambda r: 5.0 + 0.1 * r.seed if r.run in collapsed else 0.5)
    c = _claims(runs, cross)["eta-bridge"]
    assert c.verdict == "holds" and c.summary.startswith("collapsing runs cross the critical rate")
    below = synth_eta(runs, lambda r: 1.0 + 0.1 * r.seed if r.run in collapsed else 0.5)
    c = _claims(runs, below)["eta-bridge"]
    assert c.verdict == "fails" and c.summary.startswith("collapsing runs do not cross")
    bad_fit = synth_eta(runs, lambda r: 5.0, r2_step=-0.4)
    c = _claims(runs, bad_fit)["eta-bridge"]
    assert c.verdict == "fails" and c.summary.startswith("the Appendix D model does not describe these dynamics")
    assert "R²_step = -0.4" in c.summary
    c = _claims(synth_runs(), synth_eta(synth_runs(), lambda r: 5.0))["eta-bridge"]
    assert c.verdict == "inconclusive" and c.summary.startswith("no run collapsed completely")


@pytest.mark.slow
def test_report_from_constructed_tables_and_redraw_from_its_csvs(tmp_path, monkeypatch):
    runs = synth_runs(geom=_collapse_at(10.0, ("sgd",)), diverged=lambda r: r["lr"] == 30 and r["seed"] == 2)
    eta = synth_eta(runs, lambda r: 0.2 * r.lr)
    written = PR.write_report(runs, eta, tmp_path)
    assert {p.name for p in written} == OUTPUTS
    claims = pd.read_csv(tmp_path / "claims.csv")
    assert set(claims["claim"]) == {c.key for c in PC.all_claims(runs, eta, lrs=STUDY.lrs, batches=STUDY.batches)}
    md = (tmp_path / "practice.md").read_text()
    for c in PC.all_claims(runs, eta, lrs=STUDY.lrs, batches=STUDY.batches):
        assert f"{c.key}: **{c.verdict}**" in md
    fig6 = pd.read_csv(tmp_path / "figure6_batch.csv")
    v = fig6[(fig6["kind"] == "variant")]
    assert sorted(set(v["batch_size"])) == [16, 32, 64, 128, 256, 512] and set(v["variant"]) == set(SIX)
    assert np.allclose(v["lr"], 0.3 * v["batch_size"] / 256)
    row = v[(v["variant"] == "supcon100") & (v["batch_size"] == 64)].iloc[0]
    pick = runs[(runs["variant"] == "supcon100") & (runs["batch_size"] == 64)]
    assert math.isclose(row["mean"], 100 * pick["top1"].mean()) and row["n"] == 3
    fig7 = pd.read_csv(tmp_path / "figure7_lr.csv")
    assert fig7.loc[fig7["lr"] == 30, "diverged"].sum() == 12  # seed 2 of both optimisers' six variants

    # redraw from the CSVs alone: the same claims and figures' data
    before = {n: (tmp_path / n).read_text() for n in ("claims.csv", "figure6_batch.csv", "collapse.csv", "practice.md")}
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
