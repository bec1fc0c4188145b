"""Tests of simulations.lclass.figure4: Sec. 3.2 / Figure 4 of arXiv 2403.18699 (Lemma 2): rank k - 1, not an ETF."""

from __future__ import annotations

import numpy as np
import pytest

from simulations.lclass.figure4 import figure4_table, final_stats
from simulations.lclass.simulate import simulate

pytestmark = pytest.mark.usefixtures("one_thread")


def test_dimensional_collapse_rank_k_minus_1_not_etf():
    df = figure4_table([6, 12], m=30, eta=0.2, steps=300, trials=4, record_every=50, seed=0, device="cpu")
    st = final_stats(df)
    for k in (6, 12):
        assert st.loc[k, "rank_min"] == st.loc[k, "rank_max"] == k - 1
        assert st.loc[k, "max_abs_lclass_plus_k"] < 1e-9
        assert st.loc[k, "min_trial_cos_std"] > 0.02  # pairwise cosines not all equal: not an ETF
        assert st.loc[k, "cos_mean"] == pytest.approx(-1 / (k - 1), abs=1e-9)  # zero mean => mean cosine -1/(k-1)
    # independent check on the raw simulation: numpy SVD of the final embeddings
    res = simulate(12, 30, [0.2], trials=4, steps=300, seed=0, device="cpu")
    s = np.linalg.svd(res.embeddings()[:, 0].numpy(), compute_uv=False)
    assert (s[:, -1] / s[:, 0] < 1e-12).all() and (s[:, -2] / s[:, 0] > 1e-2).all()
