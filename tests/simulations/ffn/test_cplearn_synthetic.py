"""simulations/cplearn_synthetic.py and simulations.ffn.cplearn(_study): the projector's shapes and codes, one tiny
study end to end (every output written, claims readable with the CPL- ids, --report-only redraws the same
files), and bad settings refused with one line naming the flag."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from clop.claims import read_claims
from clop.collapse_modes import MODES
from simulations import cplearn_synthetic
from simulations.ffn.cplearn import F, init_projector, project, train_extra
from simulations.ffn.cplearn_study import OUTPUTS, RUN_COLUMNS, SPACE, claims, rule_table, run_regime
from simulations.ffn.data import REGIMES, make_data, stack_data


def test_the_projector_codes_are_fixed_signs_drawn_from_the_seed():
    a, b = init_projector((0, 1)), init_projector((0, 1))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    codes = a[4]
    assert codes.shape == (2, F, 16) and set(codes.unique().tolist()) == {-1.0, 1.0}
    assert not torch.equal(codes[0], codes[1])
    h, logits = project(a, torch.randn(2, 10, 3, generator=torch.Generator().manual_seed(0)), tau=0.5)
    assert h.shape == (2, 10, F) and logits.shape == (2, 10, 16) and h.abs().max() < 1


def test_train_extra_refuses_bad_settings():
    data = stack_data([make_data(0, **REGIMES["separable"])])
    for kwargs, name in (({"loss": "vicreg"}, "loss"), ({"c": 1}, "c"), ({"lr": 0.0}, "lr")):
        args = {"loss": "cplearn", "use_clop": False, "data": data, "epochs": 1, **kwargs}
        with pytest.raises(ValueError, match=name):
            train_extra(**args)
    with pytest.raises(ValueError, match="losses must include cplearn"):
        run_regime("separable", [0], 1, ("infonce",))


def test_the_script_refuses_bad_flags(tmp_path, capsys):
    out = tmp_path / "out"
    for argv, flag in ((["--seeds", "0"], "--seeds"), (["--epochs", "-1"], "--epochs"),
                       (["--losses", "infonce"], "--losses"), (["--losses", "cplearn", "cplearn"], "--losses"),
                       (["--regimes", "spiral"], "--regimes")):
        with pytest.raises(SystemExit) as exc:
            cplearn_synthetic.main([*argv, "--out", str(out)])
        assert exc.value.code == 2
        assert flag in capsys.readouterr().err.strip().splitlines()[-1]
    assert not out.exists()
    with pytest.raises(SystemExit):
        cplearn_synthetic.main(["--report-only", "--out", str(tmp_path)])


@pytest.mark.slow
def test_a_tiny_study_writes_every_output_and_redraws_them(tmp_path):
    out = tmp_path / "cplearn"
    argv = ["--seeds", "6", "--epochs", "2", "--regimes", "separable", "--no-progress", "--out", str(out)]
    assert cplearn_synthetic.main(argv) == 0
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0
    records = read_claims(out / "claims.csv")
    assert [c.id for c in records] == [f"CPL-{m}" for m in MODES]
    assert all(c.paper == "2410.04959" and c.command.startswith("python simulations/cplearn_synthetic.py")
               for c in records)
    assert set(SPACE) == set(MODES)
    before = {name: (out / name).read_text() for name in ("cplearn_runs.csv", "cplearn_rules.csv", "claims.csv")}
    assert cplearn_synthetic.main(["--report-only", "--out", str(out)]) == 0
    assert {name: (out / name).read_text() for name in before} == before


def _made_up_runs() -> pd.DataFrame:
    """CPLearn: y spread out (mu 0.5, decades 1) but collapsed on h's codes (entropy 0.2); InfoNCE: y only."""
    rows = []
    for regime in ("separable", "overlapping"):
        for seed in range(6):
            jitter = 0.01 * seed
            base = {"regime": regime, "clop": False, "seed": seed, "points": 500, "dim": 3.0}
            rows.append({**base, "loss": "cplearn", "space": "y", "mu": 0.5 + jitter, "decades": 1.0 + jitter,
                         "stable_rank": 2.0, "knn_accuracy": 0.9})
            rows.append({**base, "loss": "cplearn", "space": "h", "mu": 0.99, "decades": 10.0 + jitter,
                         "code_entropy": 0.2 + jitter, "within_cluster": 0.3 + jitter, "dim": 32.0})
            rows.append({**base, "loss": "infonce", "space": "y", "mu": 0.05 + jitter, "decades": 0.3 + jitter})
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS))


def test_each_mode_is_read_in_its_space_and_infonce_gets_the_same_rules():
    runs = _made_up_runs()
    verdicts = {c.id: c.verdict for c in claims(runs)}
    # mu and decades of h (0.99, 10) would fail: the claims read them on y
    assert verdicts == {"CPL-representation": "holds", "CPL-dimensional": "holds", "CPL-cluster": "fails",
                        "CPL-intracluster": "holds"}
    table = rule_table(runs)
    infonce = table[table["loss"] == "infonce"]
    assert set(infonce["mode"]) == {"representation", "dimensional"} and set(infonce["verdict"]) == {"holds"}
    h_rows = table[(table["loss"] == "cplearn") & (table["space"] == "h")].set_index(["regime", "mode"])
    assert h_rows.loc[("separable", "representation"), "verdict"] == "fails"
