"""Tests of simulations/synthetic_ffn.py (CLOP paper, Sec. 4, Figure 5 and Appendix B, Table 5).

Budget: about 3 minutes on a 2-core CPU, most of it in the three claim tests (marked slow).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from clop import losses as clop_losses
from clop import prototypes as clop_prototypes
from clop import stats as ps
from clop.util.device import torch_threads
from simulations import ffn_data as fd
from simulations import ffn_train as ft
from simulations import figure5_plot as fp
from simulations import synthetic_ffn as sf
from simulations import table5_report as tr

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------------- data


def test_make_data_shapes_sizes_and_determinism():
    d = fd.make_data(7)
    assert d.x.shape == (500, 3) and d.y.shape == (500,) and d.labeled.shape == (500,)
    assert d.directions.shape == (3, 3) and d.x.dtype == torch.float32
    assert torch.bincount(d.y, minlength=3).tolist() == [167, 167, 166]
    assert torch.bincount(d.y[d.labeled], minlength=3).tolist() == [17, 17, 16]  # stratified 10% = 50 points
    assert d.train_labels[~d.labeled].eq(-1).all() and d.train_labels[d.labeled].equal(d.y[d.labeled])
    again = fd.make_data(7)
    for name in ("x", "y", "labeled", "directions", "t", "clean"):
        assert torch.equal(getattr(d, name), getattr(again, name)), name
    assert not torch.equal(d.x, fd.make_data(8).x)


def test_classes_lie_along_their_directions_with_noise_variance_005():
    """Per class: the noiseless points are exactly t u_c; the top principal direction of the NOISY points is u_c;
    the noise left after projecting out u_c has variance 0.05 per coordinate (pooled over 10 seeds)."""
    residual_sq, residual_dof = 0.0, 0
    for seed in range(10):
        d = fd.make_data(seed)
        u = d.directions.double()
        for c in range(3):
            m = d.y == c
            clean, x, t = d.clean[m].double(), d.x[m].double(), d.t[m].double()
            # noiseless points: rank 1, spanned by u_c
            sv = torch.linalg.svdvals(clean)
            assert float(sv[1] / sv[0]) < 1e-6
            torch.testing.assert_close(clean, t[:, None] * u[c], rtol=1e-6, atol=1e-6)
            # noisy points: top eigenvector of the (uncentred) second moment matrix is +-u_c
            evals, evecs = torch.linalg.eigh(x.T @ x / x.shape[0])
            assert abs(float(evecs[:, -1] @ u[c])) > 0.999
            # residual orthogonal to the line: 2 dimensions of pure noise
            r = x - (x @ u[c])[:, None] * u[c]
            residual_sq += float((r * r).sum())
            residual_dof += 2 * x.shape[0]
    var = residual_sq / residual_dof
    # estimate of a variance from residual_dof (= 10000) Gaussian squares: relative std sqrt(2 / dof) = 1.4%
    assert abs(var - 0.05) < 5 * 0.05 * math.sqrt(2 / residual_dof), var


def test_directions_and_magnitudes_follow_the_documented_choices():
    for seed in range(20):
        d = fd.make_data(seed)
        gram = (d.directions @ d.directions.T).double()
        torch.testing.assert_close(torch.diagonal(gram), torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-6)
        off = gram.abs()[~torch.eye(3, dtype=torch.bool)]
        assert float(off.max()) <= math.cos(math.radians(45.0)) + 1e-6
        assert float(d.t.abs().min()) >= 1.0 and float(d.t.abs().max()) <= 2.0
    signs = torch.cat([torch.sign(fd.make_data(s).t) for s in range(5)])
    assert abs(float(signs.mean())) < 0.1  # both halves of each line are used
    o = fd.make_data(3, directions="orthogonal")
    torch.testing.assert_close(o.directions @ o.directions.T, torch.eye(3), rtol=0, atol=1e-5)
    nrm = fd.make_data(3, magnitudes="normal", min_angle_deg=0.0)
    assert float(nrm.t.abs().min()) < 0.1  # N(0, 1) positions reach the origin


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"seed": -1}, "seed"),
        ({"seed": 0, "directions": "fixed"}, "directions"),
        ({"seed": 0, "magnitudes": "laplace"}, "magnitudes"),
        ({"seed": 0, "min_angle_deg": 90}, "min_angle_deg"),
        ({"seed": 0, "noise_var": -0.1}, "noise_var"),
        ({"seed": 0, "label_fraction": 0.0}, "label_fraction"),
        ({"seed": 0, "n": 2}, "n"),
    ],
)
def test_make_data_rejects_bad_input(kwargs, word):
    with pytest.raises(ValueError, match=word):
        fd.make_data(**kwargs)


def test_train_runs_rejects_bad_input():
    data = fd.stack_data([fd.make_data(0)])
    with pytest.raises(ValueError, match="loss"):
        ft.train_runs("simclr", False, data, epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        ft.train_runs("dcl", False, data, epochs=-1)
    with pytest.raises(ValueError, match="data must be stacked"):
        ft.train_runs("dcl", False, fd.make_data(0), epochs=1)


# ---------------------------------------------------------------------------------------------- model


def test_batched_ffn_equals_torch_sequential():
    """The stacked bmm network equals nn.Sequential(Linear, ReLU, Linear, ReLU, Linear) per seed."""
    params = ft.init_params((0, 1), hidden=8)
    x = torch.randn(2, 11, 3, generator=torch.Generator().manual_seed(0))
    out = ft.ffn(params, x)
    for s in range(2):
        net = torch.nn.Sequential(
            torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
        )
        with torch.no_grad():
            for layer, (w, b) in zip([net[0], net[2], net[4]], zip(params[0::2], params[1::2])):
                layer.weight.copy_(w[s].T)
                layer.bias.copy_(b[s, 0])
            torch.testing.assert_close(out[s], net(x[s]))
    # nn.Linear's default initialisation range: |w| <= 1/sqrt(fan_in)
    assert float(params[2].abs().max()) <= 1 / math.sqrt(8)


def test_clop_term_all_seeds_equals_clop_objective_per_seed():
    """One clop_term call on the stacked seeds == sum over seeds of CLOPObjective's CLOP part (both views)."""
    g = torch.Generator().manual_seed(3)
    s_, b, k = 3, 9, 3
    z1, z2 = torch.randn(s_, b, 3, generator=g), torch.randn(s_, b, 3, generator=g)
    labels = torch.randint(-1, k, (s_, b), generator=g)
    protos = torch.stack([torch.linalg.qr(torch.randn(3, 3, generator=g))[0].T for _ in range(s_)])
    got = ft.clop_term_all_seeds(z1, z2, labels, protos)
    want = 0.0
    for i in range(s_):
        obj = clop_losses.CLOPObjective(
            clop_losses.InfoNCELoss(), clop_losses.CLOPLoss(k, 3, prototypes=protos[i], device="cpu")
        )
        want = want + obj(z1[i], z2[i], labels[i])["clop"]
    torch.testing.assert_close(got, want)
    # and the formula itself, written out: sum over labeled rows of both views of 1 - cos(z, c_y)
    loop = 0.0
    for i in range(s_):
        for z in (z1[i], z2[i]):
            for row, y in zip(z, labels[i].tolist()):
                if y >= 0:
                    loop += 1.0 - float(row @ protos[i, y]) / float(row.norm())
    assert abs(float(got) - loop) < 1e-4


# ------------------------------------------------------------------------------------------- training


def test_batched_training_equals_separate_runs_and_vmap_equals_loop():
    """Training seeds together gives each seed's own result (no cross-talk); vmap and loop agree. Equal in
    exact arithmetic, so compared in float64, where rounding cannot decide it (float32 training amplifies
    last-bit differences of another summation order)."""
    seeds, f64 = [3, 4, 5], torch.float64
    data = fd.stack_data([fd.make_data(s) for s in seeds])
    together = ft.train_runs("dcl", True, data, epochs=3, chunk=3, dtype=f64, device="cpu")
    assert together.dtype == f64
    for i, s in enumerate(seeds):
        alone = ft.train_runs("dcl", True, fd.stack_data([fd.make_data(s)]), epochs=3, dtype=f64, device="cpu")
        torch.testing.assert_close(together[i], alone[0], rtol=0, atol=1e-10)
    chunked = ft.train_runs("dcl", True, data, epochs=3, chunk=2, dtype=f64, device="cpu")
    torch.testing.assert_close(chunked, together, rtol=0, atol=1e-10)
    vm = ft.train_runs("barlowtwins", True, data, epochs=3, loss_mode="vmap", dtype=f64, device="cpu")
    lp = ft.train_runs("barlowtwins", True, data, epochs=3, loss_mode="loop", dtype=f64, device="cpu")
    torch.testing.assert_close(vm, lp, rtol=0, atol=1e-10)
    # and the check can fail: another seed's network is far away
    assert float((together[0] - together[1]).abs().max()) > 1e-2


def test_run_is_deterministic_for_a_seed():
    kwargs = dict(losses=("infonce", "vicreg"), epochs=3, show_progress=False, device="cpu")  # bit-exact: CPU
    r1, e1, _ = ft.run_experiment([0, 1], **kwargs)
    r2, e2, _ = ft.run_experiment([0, 1], **kwargs)
    pd.testing.assert_frame_equal(r1, r2, check_exact=True)
    for key in e1:
        assert torch.equal(e1[key], e2[key])
    assert list(r1.columns) == ["loss", "clop", "seed", "knn_accuracy", "stable_rank", "entropy_rank"]
    assert len(r1) == 2 * 2 * 2


def test_clop_term_changes_the_result_and_pulls_labeled_points_to_their_prototypes():
    data = fd.stack_data([fd.make_data(s) for s in (0, 1)])
    without = ft.train_runs("infonce", False, data, epochs=30)
    with_clop = ft.train_runs("infonce", True, data, epochs=30)
    assert float((without - with_clop).abs().max()) > 0.1
    for i, seed in enumerate(data.seeds):
        protos = clop_prototypes.orthonormal(3, 3, seed=seed, dtype=torch.float32, device="cpu")
        lab = data.labeled[i]
        cos = lambda z: torch.nn.functional.cosine_similarity(z[lab], protos[data.y[i][lab]], dim=1).mean()  # noqa: E731
        assert float(cos(with_clop[i])) > 0.9
        assert float(cos(with_clop[i])) > float(cos(without[i])) + 0.2


# ----------------------------------------------------------------------------------------- evaluation


def test_knn_accuracy_matches_a_brute_force_vote():
    g = np.random.default_rng(0)
    emb = g.normal(size=(120, 3))
    y = g.integers(0, 3, size=120)
    labeled = np.zeros(120, bool)
    labeled[g.choice(120, 30, replace=False)] = True
    tr, te = np.flatnonzero(labeled), np.flatnonzero(~labeled)
    correct = 0
    for j in te:
        dist = ((emb[tr] - emb[j]) ** 2).sum(1)
        votes = np.bincount(y[tr[np.argsort(dist)[:5]]], minlength=3)
        correct += int(np.argmax(votes) == y[j])
    assert fd.knn_accuracy(emb, y, labeled) == pytest.approx(correct / te.size)


def _frame(diffs, loss="dcl"):
    rows = []
    for s, d in enumerate(diffs):
        rows.append({"loss": loss, "clop": False, "seed": s, "knn_accuracy": 0.5})
        rows.append({"loss": loss, "clop": True, "seed": s, "knn_accuracy": 0.5 + d / 100})
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "diffs, raises, size",
    [
        ([3.0, 4.0, 5.0, 4.0, 3.5], "holds", "fails"),  # clearly above 0, far below the printed +11.44
        ([-3.0, -4.0, -5.0, -4.0], "fails", "fails"),  # clearly below 0
        ([0.1, -0.1, 0.05, 0.0, -0.05, 0.1], "fails", "fails"),  # within +-1 pp: negligible either way
        ([0.3, 0.2, 0.25, 0.3, 0.2], "fails", "fails"),  # above 0 but within +-1 pp: still negligible
        ([3.0, -2.0, 4.0, -3.0], "inconclusive", "fails"),  # straddles 0 and reaches beyond 1 pp
        ([10.0, 13.0, 11.0, 12.0], "holds", "holds"),  # the printed +11.44 lies inside
        ([20.0, 21.0, 22.0], "holds", "fails"),  # larger than printed
        ([6.2, 0.2] * 5, "inconclusive", "fails"),  # above 0, but by less than 2 SE (mean 3.2, SE 1.0)
        ([11.5, 8.5] * 5, "holds", "inconclusive"),  # misses the printed +11.44 by less than 2 SE
        ([13.0, 10.0, -1.0, 25.0], "inconclusive", "inconclusive"),  # holds +11.44, but also 0
    ],
)
def test_verdict_rules_on_constructed_gains(diffs, raises, size):
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


def test_regime_of_names_the_two_reported_regimes():
    assert fd.regime_of("random", 45.0, "uniform") == "separable"
    assert fd.regime_of("random", 0, "normal") == "overlapping"
    assert fd.regime_of("random", 30.0, "normal") == "custom"
    assert fd.regime_of("orthogonal", 45.0, "uniform") == "custom"
    # make_data's defaults are the separable regime
    torch.testing.assert_close(fd.make_data(2).x, fd.make_data(2, **fd.REGIMES["separable"]).x, rtol=0, atol=0)


def test_overlapping_classes_are_gaussian_with_the_covariance_the_bayes_rule_uses():
    """t ~ N(0, 1): x given class c is N(0, u u^T + 0.05 I), so x^T Sigma^-1 x is chi-square with 3 degrees of
    freedom (mean 3, variance 6). Sigma^-1 by Sherman-Morrison, pooled over 10 seeds (5000 points)."""
    m2 = []
    for seed in range(10):
        d = fd.make_data(seed, **fd.REGIMES["overlapping"])
        for c in range(3):
            x, u = d.x[d.y == c].double(), d.directions[c].double()
            inv = (torch.eye(3, dtype=torch.float64) - torch.outer(u, u) / (0.05 + 1.0)) / 0.05
            m2.append(((x @ inv) * x).sum(1))
    m2 = torch.cat(m2)
    assert abs(float(m2.mean()) - 3.0) < 5 * math.sqrt(6.0 / m2.numel()), float(m2.mean())


def test_bayes_accuracy_matches_a_pointwise_closed_form_and_beats_raw_knn():
    data = fd.stack_data([fd.make_data(s, **fd.REGIMES["overlapping"]) for s in range(5)])
    got = fd.bayes_accuracy(data)
    for i in range(2):  # loop over points with the closed-form Gaussian log-density
        x, u = data.x[i].double().numpy(), data.directions[i].double().numpy()
        y, lab = data.y[i].numpy(), data.labeled[i].numpy()
        sizes = np.bincount(y, minlength=3)
        correct = total = 0
        for j in np.flatnonzero(~lab):
            best, arg = -np.inf, -1
            for c in range(3):
                proj = float(x[j] @ u[c])
                quad = (float(x[j] @ x[j]) - proj**2 / 1.05) / 0.05  # x^T Sigma_c^-1 x, Sherman-Morrison
                logdet = 3 * math.log(0.05) + math.log(1.0 + 1.0 / 0.05)
                score = -0.5 * quad - 0.5 * logdet + math.log(sizes[c] / y.size)
                if score > best:
                    best, arg = score, c
            correct += int(arg == y[j])
            total += 1
        assert got[i] == pytest.approx(correct / total)
    # the optimal rule beats KNN on the raw inputs on average (it knows the directions)
    assert np.mean(got) > np.mean(fd.input_knn_accuracy(data))
    with pytest.raises(ValueError, match="stacked"):
        fd.bayes_accuracy(fd.make_data(0))
    with pytest.raises(ValueError, match="noise_var"):
        fd.bayes_accuracy(data, noise_var=0.0)


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


# ------------------------------------------------------------------------------------------------ CLI


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
        (["--lr", "inf"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--lr", "-1"], "--lr"),
        (["--batch-size", "1"], "--batch-size"),
        (["--chunk", "0"], "--chunk"),
        (["--seed", "-3"], "--seed"),
        (["--device", "nonsense"], "--device"),
        (["--hidden", "100000000"], "needs about"),  # the memory estimate refuses before allocating
        (["--seeds", "1000000000"], "needs about"),
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
    real = ft._base_loss_fn
    monkeypatch.setattr(ft, "_base_loss_fn", lambda name: (lambda z1, z2: real(name)(z1, z2) * float("nan")))
    assert sf.main([*_TINY, "--out", str(tmp_path), "--loss-mode", "loop"]) == 2
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


@pytest.mark.parametrize("how", [["simulations/synthetic_ffn.py"], ["-m", "simulations.synthetic_ffn"]])
def test_runs_as_script_and_as_module(how):
    out = subprocess.run([sys.executable, *how, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--seeds" in out.stdout


# ------------------------------------------------------------------------------------------ the claims
#
# The report (paper_figures/table5.md and table5_overlap/table5.md, DEFAULT_SEEDS seeds) prints a verdict per
# loss and claim, decided only when the 95 % t-interval of the paired gain clears every deciding threshold by
# 2 standard errors (clop/stats.py). These tests rerun the experiment at the report's settings
# (the overlapping claims on the report's own 100 seeds; the separable ones, decided with a wide margin, on its
# first 20) and assert the verdict the report prints, plus a slack: the mean must be at least CLAIM_MARGIN_SE
# more standard errors away from changing it, so the interval clears the threshold by 3 SE in all. A rerun on
# another CPU moves the mean by a fraction of an SE; a fresh set of seeds by about one (the seed study:
# paper_figures/table5_seed_study.md). To check, rerun with CLOP_CLAIM_BASE_SEED=<another base seed> and/or
# CLOP_CLAIM_THREADS=2 in the environment.

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
