"""The SSEM grid (simulations.ssem, simulations/ssem_grid.py): the batched loss against clop.losses.ssem, the
measurements on the family's own configurations, the cell verdicts on made-up runs, and the script."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from clop.claims import read_claims
from clop.losses import ssem
from simulations.rungs.free import sphere_views
from simulations.ssem.grid import QUICK, RUN_COLUMNS, Settings, class_variances, train_grid
from simulations.ssem.loss import batched_ssem
from simulations.ssem.report import BAND, COLLAPSE_TOL, cell_table, grid_claims
from simulations import ssem_grid
from tests.helpers import REPO
from theory import ssem_derivation as D
from theory import ssem_family as F
from theory.ssem import boundary, optimal_rho
from theory.ssem_family import family_embeddings


@pytest.mark.parametrize("convention", ["pairs", "anchors"])
def test_batched_loss_and_gradient_equal_clop_losses_per_run(convention):
    k, n, d = 3, 2, 7
    labels = torch.arange(k * n) % k
    z = torch.randn(4, 2, k * n, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 1.7
    alpha = torch.tensor([0.0, 0.3, 0.8, 1.0], dtype=torch.float64)
    tau = torch.tensor([0.07, 0.5, 1.3, 0.2], dtype=torch.float64)
    zb = z.clone().requires_grad_(True)
    values = batched_ssem(zb, labels, alpha, tau, convention)
    (grad,) = torch.autograd.grad(values.sum(), zb)
    for r in range(4):
        zr = z[r].clone().requires_grad_(True)
        ref = ssem(zr[0], zr[1], labels, float(alpha[r]), float(tau[r]), convention)
        (gref,) = torch.autograd.grad(ref, zr)
        assert torch.allclose(values[r], ref, rtol=1e-13, atol=1e-13)
        assert torch.allclose(grad[r], gref, rtol=1e-11, atol=1e-13)


def test_batched_loss_refuses_bad_shapes_and_conventions():
    z = torch.zeros(2, 2, 4, 3, dtype=torch.float64)
    a = torch.zeros(2, dtype=torch.float64)
    with pytest.raises(ValueError, match="convention"):
        batched_ssem(z, torch.arange(4) % 2, a, a + 1, "rows")
    with pytest.raises(ValueError, match="labels"):
        batched_ssem(z, torch.arange(3), a, a + 1)
    with pytest.raises(ValueError, match="alpha and tau"):
        batched_ssem(z, torch.arange(4) % 2, a[:1], a + 1)


def test_variances_of_the_family_are_rho_and_one_minus_rho():
    for k, n, s in ((3, 2, 0.0), (4, 3, 0.4), (2, 5, 0.9)):
        u, labels = family_embeddings(k, n, s)
        z = torch.stack([u, u])[None]
        within, between, mean_norm = class_variances(z, labels)
        assert within.item() == pytest.approx(s * s, abs=1e-12)
        assert between.item() == pytest.approx(1 - s * s, abs=1e-12)
        assert mean_norm.item() == pytest.approx(0.0, abs=1e-12)


def test_the_starts_are_the_ladders():
    from simulations.rungs.free import initial_views
    from simulations.rungs.problem import Problem

    p = Problem.make("infonce", 3, 2, 7)
    assert torch.equal(initial_views(p, 4), sphere_views(0, 3, 2, 7, 4))


def test_settings_refuse_bad_values():
    for change, name in (({"k": 1}, "k"), ({"alphas": (1.5,)}, "alphas"), ({"taus": (0.0,)}, "tau"),
                         ({"d": 3}, "d"), ({"lr0": -1.0}, "lr0"), ({"grow_until": 2.0}, "grow_until")):
        with pytest.raises(ValueError, match=name):
            dataclasses.replace(Settings(), **change).check()


def test_a_short_grid_reaches_the_derived_spread(one_thread):
    s = dataclasses.replace(QUICK, taus=(0.5,), alphas=(0.0, 0.8), trials=2, steps=800, drift_steps=80)
    runs = train_grid(s, "pairs")
    assert list(runs.columns) == list(RUN_COLUMNS) and len(runs) == 4
    # alpha* from the derivation's own expression (the slope at collapse), not the q-form the grid evaluates
    derived_boundary = float(D.boundary_expr("pairs").subs({F.tau: 0.5, F.k: 3, F.n: 3}))
    for _, r in runs.iterrows():
        assert r["within"] == pytest.approx(r["rho_star"], abs=2e-3)
        assert r["alpha_star"] == pytest.approx(derived_boundary, rel=1e-12)
        assert r["loss_gap"] > -1e-12  # never below the family's minimum


def _runs(within_by_cell: dict, trials: int = 6, k: int = 3, n: int = 3, convention: str = "pairs") -> pd.DataFrame:
    rows = []
    for (tau, alpha), w in within_by_cell.items():
        a_star, rho = boundary(tau, k, n, convention), optimal_rho(alpha, tau, k, n, convention)
        for t in range(trials):
            value = rho if w is None else w
            rows.append({"convention": convention, "k": k, "n": n, "d": k * n, "tau": tau, "alpha": alpha, "trial": t,
                         "within": value + 1e-5 * t, "between": 1 - value, "mean_norm": 0.0, "drift": 0.0,
                         "loss_end": 1.0, "loss_family_min": 1.0, "loss_gap": 0.0, "lr_end": 1.0, "alpha_star": a_star,
                         "rho_star": rho})
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS))


def test_cells_and_claims_hold_where_the_runs_follow_the_derivation():
    cells = cell_table(_runs({(0.5, 0.0): None, (0.5, 0.9): None, (1.0, 0.2): None, (1.0, 1.0): None}))
    assert set(cells["separation"]) == {"holds"} and set(cells["spread"]) == {"holds"}
    assert [c.verdict for c in grid_claims(cells, "test")] == ["holds", "holds"]


def test_a_cell_on_the_wrong_side_fails_and_the_band_is_not_counted():
    a_star = boundary(0.5, 3, 3)
    just_beyond = next(a for a in np.linspace(a_star, 1, 2000) if a > a_star and 0 < optimal_rho(a, 0.5, 3, 3) < BAND)
    cells = cell_table(_runs({(0.5, 0.0): 0.3, (0.5, 0.9): None, (0.5, float(just_beyond)): 0.0}))
    wrong = cells[cells["alpha"] == 0.0].iloc[0]
    assert wrong["separation"] == "fails" and wrong["measured"] == "spread" and wrong["predicted"] == "collapsed"
    assert cells[cells["alpha"] == float(just_beyond)].iloc[0]["separation"] == "not counted"
    sep, spread = grid_claims(cells, "test")
    assert sep.verdict == "fails" and "1 counted cells on the other side" in sep.result
    assert spread.verdict == "fails" and sep.paper == "2503.08203"
    assert COLLAPSE_TOL < BAND


def test_the_script_refuses_bad_flags(tmp_path):
    for argv in (["--trials", "0"], ["--steps", "-3"], ["--conventions", "rows"], ["--conventions", "pairs", "pairs"]):
        with pytest.raises(SystemExit) as exc:
            ssem_grid.main([*argv, "--out", str(tmp_path / "out")])
        assert exc.value.code == 2
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        ssem_grid.main(["--report-only", "--out", str(tmp_path)])
    other = tmp_path / "cplearn"  # another study's folder: its claims.csv is not replaced
    other.mkdir()
    (other / "claims.csv").write_bytes((REPO / "paper_figures/cplearn/claims.csv").read_bytes())
    with pytest.raises(SystemExit) as exc:
        ssem_grid.main(["--quick", "--out", str(other)])
    assert exc.value.code == 2
    assert (other / "claims.csv").read_bytes() == (REPO / "paper_figures/cplearn/claims.csv").read_bytes()


@pytest.mark.slow
def test_the_quick_script_writes_every_output_and_redraws_them(tmp_path):
    out = tmp_path / "ssem"
    proc = subprocess.run([sys.executable, "simulations/ssem_grid.py", "--quick", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "SSEM-sim-boundary-pairs: holds" in proc.stdout
    before = (out / "ssem_cells.csv").read_text()
    assert ssem_grid.main(["--report-only", "--out", str(out)]) == 0
    assert (out / "ssem_cells.csv").read_text() == before
    for name in ssem_grid.OUTPUTS:
        assert (out / name).stat().st_size > 0
    ids = [c.id for c in read_claims(out / "claims.csv")]
    assert ids[:4] == ["SSEM-threshold", "SSEM-tau", "SSEM-conventions", "SSEM-spread"]
    assert all(i.startswith("SSEM-") for i in ids) and len(ids) == 8
