"""Tests of simulations.ffn.seeds (the seed study behind Table 5's default number of seeds): the pool is read
back or resumed instead of trained again, the agreement table judges blocks and bootstrap samples with the
report's own verdict rules, and the recommendation is the smallest n that keeps every decided verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simulations.ffn import report, seeds, train
from simulations.ffn.data import REGIMES
from tests.helpers import no_compute

POOL = 12


def _pool(gains: dict[str, np.ndarray], configs=None) -> pd.DataFrame:
    """A per-run table of seeds 0..len-1 with the given per-seed gains (pp), as run_experiment writes it."""
    rows = []
    for loss, diffs in gains.items():
        for s, d in enumerate(diffs):
            for clop, acc in ((False, 0.6), (True, 0.6 + d / 100)):
                if configs is None or (loss, clop) in configs:
                    rows.append({"loss": loss, "clop": clop, "seed": s, "knn_accuracy": acc, "stable_rank": 2.0,
                                 "entropy_rank": 2.0})
    return pd.DataFrame(rows, columns=["loss", "clop", "seed", "knn_accuracy", "stable_rank", "entropy_rank"])


def _gains(pool: int = POOL) -> dict[str, np.ndarray]:
    i = np.arange(pool)
    return {
        "infonce": 5.0 + 0.3 * np.sin(i),  # clearly up, far below the printed +30.98
        "dcl": 0.05 * np.cos(i),  # negligible
        "vicreg": np.where(i % 2 == 0, 4.0, -3.0),  # straddles 0: the pool leaves it inconclusive
        "barlowtwins": 17.5 + 0.2 * np.sin(3 * i),  # the printed +17.50
    }


def test_a_complete_pool_is_read_back_not_trained(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "run_experiment", no_compute)
    _pool(_gains()).to_csv(seeds.runs_path(tmp_path, "separable"), index=False)
    got = seeds.pool_results("separable", POOL, tmp_path, device="cpu", chunk=None, show_progress=False)
    assert len(got) == POOL * 8 and set(got["loss"]) == set(train.LOSSES)


def test_an_interrupted_pool_trains_only_the_missing_configurations(tmp_path, monkeypatch):
    present = [(loss, clop) for loss in train.LOSSES for clop in (False, True)][:5]
    _pool(_gains(), present).to_csv(seeds.runs_path(tmp_path, "overlapping"), index=False)
    calls = []

    def fake_run(seed_list, *, losses, clop_settings, data_options, **kwargs):
        calls.append((losses, clop_settings))
        assert seed_list == list(range(len(seed_list))) and data_options == REGIMES["overlapping"]
        return _pool(_gains(len(seed_list)), [(losses[0], clop_settings[0])]), None, None

    monkeypatch.setattr(train, "run_experiment", fake_run)
    got = seeds.pool_results("overlapping", POOL, tmp_path, device="cpu", chunk=None, show_progress=False)
    missing = [(loss, clop) for loss in train.LOSSES for clop in (False, True)][5:]
    assert calls == [((loss,), (clop,)) for loss, clop in missing]
    saved = pd.read_csv(seeds.runs_path(tmp_path, "overlapping"))  # saved after every configuration
    assert len(got) == len(saved) == POOL * 8
    # a runs file of another pool size is not reused
    calls.clear()
    seeds.pool_results("overlapping", POOL + 1, tmp_path, device="cpu", chunk=None, show_progress=False)
    assert len(calls) == 8


def test_agreement_uses_the_reports_verdicts_and_blocks_of_consecutive_seeds():
    results = _pool(_gains())
    table = seeds.agreement(results, "separable", [2, 3, 4, 6], n_boot=50, seed=0)
    assert len(table) == 4 * 2 * 4  # losses x claims x sizes
    verdicts = report.verdict_table(results).set_index("loss")
    for (loss, claim), sub in table.groupby(["loss", "claim"]):
        column = "raises_verdict" if claim == "raises" else "size_verdict"
        assert (sub["pool_verdict"] == verdicts.loc[loss, column]).all(), (loss, claim)
        assert (sub["blocks"] == POOL // sub["n"]).all() and (sub["pool_n"] == POOL).all()
        assert sub["bootstrap_agree"].between(0, 1).all()
    assert set(table["pool_verdict"]) >= {"holds", "fails", "inconclusive"}
    # the same bootstrap seed gives the same table
    pd.testing.assert_frame_equal(table, seeds.agreement(results, "separable", [2, 3, 4, 6], n_boot=50, seed=0))


def test_recommend_is_the_smallest_n_that_keeps_every_decided_verdict():
    def row(n, verdict, agree, blocks, boot):
        return {"n": n, "pool_verdict": verdict, "blocks": blocks, "blocks_agree": agree, "bootstrap_agree": boot}

    table = pd.DataFrame([
        row(10, "holds", 3, 4, 1.0), row(20, "holds", 2, 2, 0.98), row(40, "holds", 1, 1, 0.995),
        row(10, "fails", 4, 4, 1.0), row(20, "fails", 2, 2, 1.0), row(40, "fails", 1, 1, 1.0),
        row(10, "inconclusive", 0, 4, 0.1), row(20, "inconclusive", 0, 2, 0.2), row(40, "inconclusive", 0, 1, 0.3),
    ])
    assert seeds.recommend(table) == 40  # the inconclusive claim does not count
    assert seeds.recommend(table[table["n"] < 40]) is None


def test_markdown_states_the_recommendation_and_the_undecided_claims():
    table = seeds.agreement(_pool(_gains()), "overlapping", [2, 3, 4, 6], n_boot=50)
    assert seeds.recommend(table) is None  # this pool's blocks disagree somewhere at every n tried
    text = seeds.markdown(table, POOL, 50, 1.0)
    assert text.startswith("# How many seeds Table 5 needs (simulations/table5_seeds.py)\n")
    assert "**No block size tried keeps every decided verdict in place**" in text
    assert "**Recommended" not in text
    agreeing = table.assign(blocks_agree=table["blocks"], bootstrap_agree=1.0)  # every block keeps every verdict
    assert f"**Recommended: n = {table['n'].min()}**" in seeds.markdown(agreeing, POOL, 50, 1.0)
    assert 'Left inconclusive by the pool itself' in text and 'overlapping VICReg "raises"' in text
    assert text.count("| overlapping |") == 4 * 2


@pytest.mark.parametrize("n_boot", [1, 7])
def test_bootstrap_shares_are_multiples_of_one_sample(n_boot):
    table = seeds.agreement(_pool(_gains()), "separable", [3], n_boot=n_boot)
    assert ((table["bootstrap_agree"] * n_boot).round(9) % 1 == 0).all()
