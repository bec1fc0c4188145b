"""The ladder script (simulations/ladder.py) and the study's parts: refusals before compute, resuming, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clop.claims import read_claims
from simulations import ladder
from simulations.rungs.problem import Problem
from simulations.rungs.settings import check_settings, default_settings
from simulations.rungs.study import run_study

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("argv,flag", [
    (["--k", "2"], "--k"), (["--ks", "2", "5"], "--ks"), (["--batches", "100"], "--batches"),
    (["--d", "3"], "--d"), (["--steps", "0"], "--steps"), (["--resolution", "0"], "--resolution"),
    (["--r2-steps", "-1"], "--r2-steps"), (["--threads", "0"], "--threads"), (["--trials", "0"], "--trials"),
    (["--device", "tpu"], "--device"),
    # a repeated value would train and count the same setting twice; a tau sweep needs a loss with a temperature
    (["--losses", "lclass", "lclass"], "--losses"), (["--taus", "0.1", "0.1"], "--taus"), (["--ks", "3", "3"], "--ks"),
    (["--batches", "4", "4"], "--batches"), (["--tau-losses", "infonce", "infonce"], "--tau-losses"),
    (["--only", "r1_tau", "--tau-losses", "lclass", "--taus", "0.1"], "--tau-losses"),
    (["--report-only"], "--report-only"),  # a folder without a ladder study in it
])
def test_bad_settings_refused_with_one_line_before_compute(argv, flag, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        ladder.main(argv + ["--out", str(out)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert flag in err
    assert not out.exists() or not any(out.glob("*.csv"))


def test_a_study_of_one_part_draws_its_figures(tmp_path):
    """--only r1_base has no tau or B sweep and no k sweep: the figures say so instead of failing."""
    argv = ["--quick", "--no-progress", "--only", "r1_base", "--losses", "lclass", "--out", str(tmp_path)]
    assert ladder.main(argv) == 0
    assert ladder.main([*argv[:-2], "--report-only", "--out", str(tmp_path)]) == 0
    for name in ("ladder_a_critical_vs_k.png", "ladder_b_phase.png", "ladder_c_ladder.png"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_memory_is_estimated_before_allocating(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        ladder.main(["--trials", "1000000000", "--out", str(tmp_path)])
    assert info.value.code == 2 and "memory" in capsys.readouterr().err


def test_out_must_be_a_folder(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(SystemExit):
        ladder.main(["--out", str(f)])
    assert "--out" in capsys.readouterr().err


def test_problem_checks_name_the_field():
    with pytest.raises(ValueError, match="^k must"):
        Problem.make("infonce", 2, 1)
    with pytest.raises(ValueError, match="^batch must"):
        Problem.make("infonce", 3, 1, batch=4)
    with pytest.raises(ValueError, match="^d must be an integer >= 6"):
        Problem.make("lclass", 3, 1, d=5)
    with pytest.raises(ValueError, match="^tau"):
        Problem.make("supcon", 3, 1, tau=-1.0)
    with pytest.raises(ValueError, match="^loss"):
        Problem.make("nce", 3, 1)
    assert Problem.make("infonce", 3, 2, batch=6).batch is None  # B = N is full batch


def test_settings_checks():
    check_settings(default_settings())
    check_settings(default_settings(quick=True))
    with pytest.raises(ValueError, match="--r2-k"):
        check_settings(default_settings(r2_k=11))


def _tiny():
    return default_settings(quick=True, ks=(3,), k_losses=("lclass",), sweep_trials=1, steps=40, resolution=0.2)


def test_parts_resume_and_an_interrupted_part_leaves_no_files(tmp_path):
    s = _tiny()
    msgs = []
    run_study(s, tmp_path, only=("r1_k",), progress=msgs.append)
    files = {p.name: p.read_bytes() for p in tmp_path.glob("rung1_*_k.csv")}
    assert set(files) == {"rung1_events_k.csv", "rung1_runs_k.csv"}
    assert json.loads((tmp_path / "parts.json").read_text())["r1_k"]["files"] == sorted(files)
    msgs.clear()
    times = run_study(s, tmp_path, only=("r1_k",), progress=msgs.append)
    assert times["r1_k"] == 0.0 and any("skipped" in m for m in msgs)
    assert {p.name: p.read_bytes() for p in tmp_path.glob("rung1_*_k.csv")} == files

    def dying(msg):
        if msg.startswith("  search"):
            raise KeyboardInterrupt

    other = tmp_path / "other"
    with pytest.raises(KeyboardInterrupt):
        run_study(s, other, only=("r1_k",), progress=dying)
    assert not list(other.glob("*.csv")) and not (other / "parts.json").exists()


@pytest.mark.slow
def test_quick_study_writes_report_claims_and_figures(tmp_path):
    assert ladder.main(["--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    for name in ("ladder.md", "ladder_rows.csv", "claims.csv", "ladder_a_critical_vs_k.png", "ladder_b_phase.png",
                 "ladder_c_ladder.png", "rung1_linearisation.csv", "rung2_mapping.csv"):
        assert (tmp_path / name).stat().st_size > 0, name
    claims = read_claims(tmp_path / "claims.csv")
    ids = {c.id for c in claims}
    assert {"LAD-T1-r0", "LAD-T1-r1", "LAD-T1-r2", "LAD-OS-r1", "LAD-LR-r1", "LAD-L1-infonce"} <= ids
    assert next(c for c in claims if c.id == "LAD-L1-infonce").verdict == "fails"  # a saddle
    text = (tmp_path / "ladder.md").read_text()
    assert "## Answer, rung by rung" in text and "**Rung 1**" in text
    # the report redraws from the CSVs alone
    before = (tmp_path / "ladder.md").read_text()
    assert ladder.main(["--quick", "--out", str(tmp_path), "--report-only"]) == 0
    assert (tmp_path / "ladder.md").read_text() == before
    assert Path(tmp_path / "parts.json").exists()
