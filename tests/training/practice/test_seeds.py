"""The seed-block study (training.practice.seeds) on constructed tables: relabelled bootstrap draws, agreement of
disjoint blocks with the pool, and the recommended n."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.training.practice.synth import eta_table, runs_table
from training.practice import claims as PC
from training.practice import seeds as PS
from training.practice.grid import STUDY

pytestmark = pytest.mark.usefixtures("one_thread")


def _judge(runs, eta):
    return PC.all_claims(runs, eta, lrs=STUDY.lrs, batches=STUDY.batches)


def test_relabel_makes_a_seed_drawn_twice_two_samples():
    runs = runs_table(seeds=(0,), verdict_seeds=3)
    eta = eta_table(runs, lambda r: 0.5)
    r, e = PS.relabel(runs, eta, [2, 2, 0])
    assert sorted(set(r["seed"])) == [0, 1, 2]
    assert (r["seed"] == 0).sum() == (runs["seed"] == 2).sum() == (r["seed"] == 1).sum()
    assert r["run"].is_unique and set(e["run"]) <= set(r["run"])
    first = r[r["seed"] == 0].reset_index(drop=True)
    again = r[r["seed"] == 1].reset_index(drop=True)
    assert first["top1"].tolist() == again["top1"].tolist()


@pytest.mark.slow
def test_blocks_of_a_strong_effect_agree_with_the_pool():
    better = lambda r: 90.0 + (4.0 if r["clop_lambda"] > 0 else 0.0)  # noqa: E731
    runs = runs_table(top1=better, seeds=(0,), verdict_seeds=12)
    eta = eta_table(runs, lambda r: 0.5, r2_step=0.2)
    table = PS.agreement(runs, eta, _judge, list(range(12)), [6], boots=4)
    row = table[(table["claim"] == "clop-all-batches") & (table["measured"] == "claim")].iloc[0]
    assert row["pool"] == "holds" and row["blocks_6"] == 2 and row["agree_6"] == 2 and row["boot_6"] == 1.0
    assert set(table["pool"]) <= {"holds", "fails", "inconclusive", "not testable"}


def test_recommend_needs_every_block_and_the_bootstrap():
    table = pd.DataFrame({"pool": ["holds", "fails", "inconclusive"], "blocks_6": [2, 2, 2], "agree_6": [2, 1, 0],
                          "boot_6": [1.0, 0.9, 0.2], "blocks_8": [2, 2, 2], "agree_8": [2, 2, 0],
                          "boot_8": [1.0, 0.995, 0.3]})
    assert PS.recommend(table, [6, 8]) == 8
    table["boot_8"] = [1.0, 0.98, 0.3]
    assert PS.recommend(table, [6, 8]) is None
    md = PS.markdown(table.assign(claim="c", scope="s", measured="m"), list(range(16)), [6, 8], 100, 1.0)
    assert "No n here keeps every decided verdict in place" in md and "| c | s | m | holds | 2/2, 100 % | 2/2, 100 % |" in md
