"""Tests of simulations/synthetic_ffn.py (CLOP paper, Sec. 4, Figure 5 and Appendix B, Table 5): the command
line, its outputs, and the paper's claims rerun at the report's settings.

Budget: about 3 minutes on a 2-core CPU, most of it in the three claim tests (marked slow).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch

from clop import stats as ps
from clop.util.device import torch_threads
from simulations import synthetic_ffn as sf
from simulations.ffn import autograd as fa
from simulations.ffn import data as fd
from simulations.ffn import plot as fp
from simulations.ffn import report as tr
from simulations.ffn import train as ft

pytestmark = pytest.mark.usefixtures("one_thread")


def test_cli_writes_table_report_embeddings_and_figure(tmp_path, capsys):
    before = torch.get_num_threads()
    rc = sf.main(["--seeds", "2", "--epochs", "2", "--out", str(tmp_path), "--no-progress", "--threads", "1"])
    assert rc == 0
    assert torch.get_num_threads() == before  # main restores the thread count
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(sf.OUTPUTS)  # no temporary files left
    verdict_rows = pd.read_csv(tmp_path / "table5_verdicts.csv")
    assert list(verdict_rows["loss"]) == list(ft.LOSSES) and (verdict_rows["n"] == 2).all()
    table = pd.read_csv(tmp_path / "table5.csv")
    assert list(table.columns) == ["loss", "clop", "seed", "knn_accuracy", "stable_rank", "entropy_rank"]
    assert len(table) == 4 * 2 * 2 and set(table["loss"]) == set(ft.LOSSES)
    emb = pd.read_csv(tmp_path / "figure5_embeddings.csv")
    assert len(emb) == 8 * 500 and set(emb["seed"]) == {0}
    # the figure's accuracies are recomputed from the CSV: they match the table's seed-0 rows
    for (loss, clop), sub in emb.groupby(["loss", "clop"]):
        row = table[(table["loss"] == loss) & (table["clop"] == clop) & (table["seed"] == 0)]
        acc = fd.knn_accuracy(sub[["z0", "z1", "z2"]].to_numpy(), sub["label"].to_numpy(), sub["labeled"].to_numpy())
        assert acc == pytest.approx(float(row["knn_accuracy"].iloc[0]))
    md = (tmp_path / "table5.md").read_text()
    assert "68.91" in md and "Verdicts" in md and "45 degrees" in md
    assert "separable regime" in md.splitlines()[0] and "(table5_overlap/table5.md)" in md
    assert "Bayes-optimal" not in md  # only for t ~ N(0, 1)
    assert set(emb["regime"]) == {"separable"}  # the figure's title reads it from here
    assert (tmp_path / "figure5.png").stat().st_size > 10_000
    redrawn = fp.plot_figure5(tmp_path / "figure5_embeddings.csv", tmp_path / "again.png")
    assert redrawn.stat().st_size > 10_000
    assert "| InfoNCE | yes |" in capsys.readouterr().out


_TINY = ["--seeds", "2", "--epochs", "2", "--no-progress", "--losses", "dcl"]


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--seeds", "0"], "--seeds"),
        (["--min-angle", "95"], "--min-angle"),
        (["--min-angle", "89.9"], "--min-angle"),  # in range, but three random lines are never that far apart
        (["--lr", "inf"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--lr", "-1"], "--lr"),
        (["--batch-size", "1"], "--batch-size"),
        (["--chunk", "0"], "--chunk"),
        (["--seed", "-3"], "--seed"),
        (["--device", "nonsense"], "--device"),
        (["--hidden", "100000000"], "needs about"),  # the memory estimate refuses before allocating
        (["--seeds", "1000000000"], "needs about"),
        (["--workers", "0"], "--workers"),
        (["--engine", "fast"], "--engine"),
        (["--engine", "native", "--device", "meta"], "--device"),
    ],
)
def test_cli_rejects_bad_arguments_before_any_compute(flags, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ft, "run_experiment", lambda *a, **k: pytest.fail("trained despite a bad flag"))
    with pytest.raises(SystemExit) as exc:
        sf.main([*_TINY, "--out", str(tmp_path), *flags])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert needle in err, err


def test_cli_refuses_an_output_path_that_is_a_file_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ft, "run_experiment", lambda *a, **k: pytest.fail("trained despite a bad --out"))
    target = tmp_path / "a_file"
    target.write_text("x")
    with pytest.raises(SystemExit):
        sf.main([*_TINY, "--out", str(target)])
    assert "--out" in capsys.readouterr().err


def test_diverged_training_is_a_clear_error_not_a_scikit_learn_traceback(tmp_path, capsys, monkeypatch):
    real = fa.base_loss_fn
    monkeypatch.setattr(fa, "base_loss_fn", lambda name: (lambda z1, z2: real(name)(z1, z2) * float("nan")))
    assert sf.main([*_TINY, "--out", str(tmp_path), "--loss-mode", "loop", "--engine", "autograd"]) == 2
    err = capsys.readouterr().err
    assert "diverged" in err and "--lr" in err
    assert not list(tmp_path.iterdir()), "nothing is written for a failed run"


@pytest.mark.parametrize("engine", ["fused", "auto"])
def test_diverged_fused_training_is_a_clear_error(engine, tmp_path, capsys):
    """The fused engines (torch operations, native kernel) at a learning rate whose activations overflow float32."""
    assert sf.main([*_TINY, "--out", str(tmp_path), "--engine", engine, "--lr", "1e30"]) == 2
    err = capsys.readouterr().err
    assert "diverged" in err and "--lr" in err
    assert not list(tmp_path.iterdir()), "nothing is written for a failed run"


def test_interrupted_run_leaves_the_previous_outputs_byte_identical(tmp_path, monkeypatch):
    assert sf.main([*_TINY, "--out", str(tmp_path)]) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert set(before) == set(sf.OUTPUTS)

    def interrupted(frame, path):  # Ctrl-C while the figure is drawn: the CSVs and the report are staged
        raise KeyboardInterrupt

    monkeypatch.setattr(sf, "plot_figure5", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sf.main([*_TINY, "--out", str(tmp_path), "--seed", "5"])
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before, "the interrupted run changed or left files"


# ------------------------------------------------------------------------------------------ the claims
#
# The report (paper_figures/table5.md and table5_overlap/table5.md, DEFAULT_SEEDS seeds) prints a verdict per
# loss and claim, decided only when the 95 % t-interval of the paired gain clears every deciding threshold by
# 2 standard errors (clop/stats.py). These tests rerun the experiment at the report's settings (the
# overlapping claims on the report's own DEFAULT_SEEDS = 200 seeds; the separable ones, decided with a wide
# margin, on its first 20) and assert the verdict the report prints, plus a slack: the mean must be at least CLAIM_MARGIN_SE
# more standard errors away from changing it, so the interval clears the threshold by 3 SE in all. A change of
# machine moves the mean by a fraction of an SE (the fused and the native engine, same 200 seeds: InfoNCE's
# overlapping "raises" margin 5.43 vs 5.29 SE); a fresh set of seeds by about one (the seed study,
# paper_figures/table5_seed_study.md). Measured at 200 seeds, base seeds 0, 200, 400 and 600: InfoNCE's margin
# 5.29, 2.21, 3.80, 3.45 SE, DCL's 5.73, 3.20, 5.01, 4.65 (at 100 seeds, before the seed study's rerun with
# the native engine, InfoNCE's fell to 0.39 SE on one seed set). To check, rerun with
# CLOP_CLAIM_BASE_SEED=<another base seed> and/or CLOP_CLAIM_THREADS=2 in the environment.

CLAIM_MARGIN_SE = 1.0


CLAIM_BASE_SEED = int(os.environ.get("CLOP_CLAIM_BASE_SEED", "0"))


CLAIM_THREADS = int(os.environ.get("CLOP_CLAIM_THREADS", "1"))


def _claim_run(regime: str, losses: tuple[str, ...], n: int):
    with torch_threads(CLAIM_THREADS):
        seeds = list(range(CLAIM_BASE_SEED, CLAIM_BASE_SEED + n))
        results, _, data = ft.run_experiment(seeds, losses=losses, data_options=fd.REGIMES[regime], show_progress=False)
    assert np.isfinite(results["knn_accuracy"]).all() and results["knn_accuracy"].between(0, 1).all()
    return results, data


@pytest.mark.slow
@pytest.mark.parametrize("loss, n", [("infonce", tr.DEFAULT_SEEDS), ("dcl", tr.DEFAULT_SEEDS)])
def test_overlapping_regime_clop_raises_the_accuracy_but_far_less_than_printed(loss, n):
    """Sec. 4 / Table 5: CLOP raises the KNN accuracy of InfoNCE (+30.98 pp) and DCL (+11.44 pp). In the
    overlapping regime it does (interval above 0, clear of 0 and of +-1 pp), by a gain whose interval lies far
    below the printed one."""
    results, _ = _claim_run("overlapping", (loss,), n)
    row = tr.verdict_table(results).iloc[0]
    g = tr.paired_gain(results, loss)
    msg = f"{loss}: gain {g.interval_text()}, n = {g.n}, margins {row['raises_margin_se']:.2f} / {row['size_margin_se']:.2f} SE"
    assert row["raises_verdict"] == "holds" and row["raises_margin_se"] >= CLAIM_MARGIN_SE, msg
    assert row["size_verdict"] == "fails" and g.high < tr.printed_gain(loss), msg
    assert row["size_margin_se"] >= CLAIM_MARGIN_SE, msg
    assert g.low > (ps.DECISION_MARGIN_SE + CLAIM_MARGIN_SE) * g.se, msg  # the same slack, written out
    assert tr.verdicts(results)[loss][0] == "holds"  # the sentence the report prints


@pytest.mark.slow
def test_separable_regime_clop_gains_nothing_because_every_run_sits_at_the_raw_input_ceiling():
    """The negative result itself: with nearly separable classes, InfoNCE and DCL already reach the accuracy
    of KNN on the raw inputs without CLOP, so CLOP's gain is negligible (interval inside +-1 pp) and far below
    the printed +30.98 / +11.44 pp."""
    results, data = _claim_run("separable", ("infonce", "dcl"), 20)
    ceiling = 100 * float(np.mean(fd.input_knn_accuracy(data)))
    summary = tr.summarize(results)
    assert (summary["acc_mean"] >= ceiling - 2.0).all(), (ceiling, summary[["loss", "clop", "acc_mean"]])
    table = tr.verdict_table(results).set_index("loss")
    for loss in ("infonce", "dcl"):
        row, g = table.loc[loss], tr.paired_gain(results, loss)
        msg = f"{loss}: gain {g.interval_text()}, n = {g.n}, margin {row['raises_margin_se']:.2f} SE"
        assert row["raises_verdict"] == "fails" and -1.0 < g.low and g.high < 1.0, msg
        assert row["raises_margin_se"] >= CLAIM_MARGIN_SE, msg
        assert row["size_verdict"] == "fails" and g.high < tr.printed_gain(loss) - 10 * g.se, msg
