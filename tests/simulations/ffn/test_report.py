"""Tests of simulations.ffn.report: the verdict rules on constructed gains (with their margins) and the
report's first paragraphs per regime (Appendix B, Table 5)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clop import stats as ps
from simulations.ffn import data as fd
from simulations.ffn import report as tr


def _frame(diffs, loss="dcl"):
    rows = []
    for s, d in enumerate(diffs):
        rows.append({"loss": loss, "clop": False, "seed": s, "knn_accuracy": 0.5})
        rows.append({"loss": loss, "clop": True, "seed": s, "knn_accuracy": 0.5 + d / 100})
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "diffs, raises, size",
    [
        ([3.0, 4.0, 5.0, 4.0, 3.5, 4.5], "holds", "fails"),  # clearly above 0 and 1 pp, far below the printed +11.44
        ([-3.0, -4.0, -5.0, -4.0, -3.5, -4.5], "fails", "fails"),  # clearly below 0
        ([0.1, -0.1, 0.05, 0.0, -0.05, 0.1], "fails", "fails"),  # within +-1 pp: negligible either way
        ([0.3, 0.2, 0.25, 0.3, 0.2, 0.25], "fails", "fails"),  # above 0 but within +-1 pp: still negligible
        ([3.0, -2.0, 4.0, -3.0, 3.5, -2.5], "inconclusive", "fails"),  # straddles 0 and reaches beyond 1 pp
        ([10.0, 13.0, 11.0, 12.0, 10.5, 12.5], "holds", "holds"),  # the printed +11.44 lies inside
        ([20.0, 21.0, 22.0, 20.5, 21.5, 21.0], "holds", "fails"),  # larger than printed
        ([6.2, 0.2] * 5, "inconclusive", "fails"),  # above 0, but by less than 2 SE (mean 3.2, SE 1.0)
        ([11.5, 8.5] * 5, "holds", "inconclusive"),  # misses the printed +11.44 by less than 2 SE
        ([13.0, 10.0, -1.0, 25.0, 12.0, 11.0], "inconclusive", "inconclusive"),  # holds +11.44, but also 0
        ([1.25, 0.55] * 6, "inconclusive", "fails"),  # above 0 by 2 SE, but +1 pp not cleared by 2 SE (held before)
    ],
)
def test_verdict_rules_on_constructed_gains(diffs, raises, size):
    """Constructed paired gains (n >= 6, the fewest that may decide) against the rules of clop.stats."""
    results = _frame(diffs)
    row = tr.verdict_table(results).iloc[0]
    assert (row["raises_verdict"], row["size_verdict"]) == (raises, size)
    assert tr.verdicts(results)["dcl"][0] == raises  # what the report prints
    g = tr.paired_gain(results, "dcl")
    assert g.n == len(diffs) and g.mean == pytest.approx(np.mean(diffs))
    # the margin: shifting the mean by (margin - a hair) SE keeps the verdict, by (margin + a hair) SE changes it
    judges = (("raises_margin_se", ps.raises_judge(tr.NEGLIGIBLE_PP)), ("size_margin_se", ps.size_judge(tr.printed_gain("dcl"))))
    for key, judge in judges:
        margin = row[key]
        assert margin > 0
        base = judge(g)[0]
        moved = lambda d: ps.PairedGain(g.n, g.mean + d, g.std, g.se, g.low + d, g.high + d, g.up, g.down)  # noqa: E731
        assert judge(moved(0.999 * margin * g.se))[0] == base and judge(moved(-0.999 * margin * g.se))[0] == base
        changed = {judge(moved(s * 1.001 * margin * g.se))[0] for s in (1, -1)}
        assert changed != {base}, (key, margin, base, changed)


def _fake_results(gain_pp: dict[str, list[float]]):
    rows = []
    for name, diffs in gain_pp.items():
        for s, d in enumerate(diffs):
            ranks = {"stable_rank": 2.0, "entropy_rank": 2.0}
            rows.append({"loss": name, "clop": False, "seed": s, "knn_accuracy": 0.6, **ranks})
            rows.append({"loss": name, "clop": True, "seed": s, "knn_accuracy": 0.6 + d / 100, **ranks})
    return pd.DataFrame(rows)


def _settings(**data_opts):
    base = {"seeds": 3, "base_seed": 0, "epochs": 1, "batch_size": 100, "lr": 0.01, "hidden": 32, "device": "cpu"}
    return {**base, **data_opts}


def test_report_names_its_regime_and_links_to_the_other():
    sep = tr.markdown_report(
        _fake_results({"infonce": [0.0, 0.1, -0.1], "dcl": [0.0, 0.0, 0.1]}),
        [0.6, 0.6, 0.6],
        settings=_settings(**fd.REGIMES["separable"]),
    )
    first = sep.split("\n\n")[:2]
    assert "separable regime" in first[0] and "**separable**" in first[1]
    assert "(table5_overlap/table5.md)" in first[1]
    ovl = tr.markdown_report(
        _fake_results({"infonce": [3.0, 4.0, 5.0], "dcl": [-1.0, 2.0, -1.0]}),
        [0.6, 0.6, 0.6],
        settings=_settings(**fd.REGIMES["overlapping"]),
        bayes_acc=[0.75, 0.7, 0.8],
    )
    first = ovl.split("\n\n")[:2]
    assert "overlapping regime" in first[0] and "**overlapping**" in first[1]
    assert "(../table5.md)" in first[1]
    # InfoNCE +4.00 pp holds, DCL +0.00 pp fails: the first paragraph must not say that CLOP helps
    assert "InfoNCE by +4.00 pp" in first[1] and "DCL by +0.00 pp" in first[1]
    assert "not confirmed" in first[1] and "CLOP helps" not in first[1]
    assert "Bayes-optimal" in ovl and "75.00 ± 5.00 %" in ovl
    custom = tr.markdown_report(
        _fake_results({"dcl": [1.0, 2.0, 3.0]}),
        [0.6] * 3,
        settings=_settings(directions="orthogonal", min_angle_deg=45.0, magnitudes="uniform"),
    )
    assert "custom" in custom.split("\n\n")[0]


def test_fewer_than_six_seeds_decide_nothing():
    results = _frame([20.0, 21.0, 22.0])
    row = tr.verdict_table(results).iloc[0]
    assert (row["raises_verdict"], row["size_verdict"]) == ("inconclusive", "inconclusive")
    assert np.isnan(row["raises_margin_se"]) and np.isnan(row["size_margin_se"])
