"""Tests of simulations/synthetic_ffn.py (CLOP paper, Sec. 4, Figure 5 and Appendix B, Table 5).

Budget: under 100 s on a 2-core CPU; the paper-claim tests (the InfoNCE and DCL configurations of the run of
each data regime, separable and overlapping, about 38 s each) are marked slow.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from clop import losses as clop_losses
from simulations import synthetic_ffn as sf

REPO = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------------- data


def test_make_data_shapes_sizes_and_determinism():
    d = sf.make_data(7)
    assert d.x.shape == (500, 3) and d.y.shape == (500,) and d.labeled.shape == (500,)
    assert d.directions.shape == (3, 3) and d.x.dtype == torch.float32
    assert torch.bincount(d.y, minlength=3).tolist() == [167, 167, 166]
    assert torch.bincount(d.y[d.labeled], minlength=3).tolist() == [17, 17, 16]  # stratified 10% = 50 points
    assert d.train_labels[~d.labeled].eq(-1).all() and d.train_labels[d.labeled].equal(d.y[d.labeled])
    again = sf.make_data(7)
    for name in ("x", "y", "labeled", "directions", "t", "clean"):
        assert torch.equal(getattr(d, name), getattr(again, name)), name
    assert not torch.equal(d.x, sf.make_data(8).x)


def test_classes_lie_along_their_directions_with_noise_variance_005():
    """Per class: the noiseless points are exactly t u_c; the top principal direction of the NOISY points is u_c;
    the noise left after projecting out u_c has variance 0.05 per coordinate (pooled over 10 seeds)."""
    residual_sq, residual_dof = 0.0, 0
    for seed in range(10):
        d = sf.make_data(seed)
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
        d = sf.make_data(seed)
        gram = (d.directions @ d.directions.T).double()
        torch.testing.assert_close(torch.diagonal(gram), torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-6)
        off = gram.abs()[~torch.eye(3, dtype=torch.bool)]
        assert float(off.max()) <= math.cos(math.radians(45.0)) + 1e-6
        assert float(d.t.abs().min()) >= 1.0 and float(d.t.abs().max()) <= 2.0
    signs = torch.cat([torch.sign(sf.make_data(s).t) for s in range(5)])
    assert abs(float(signs.mean())) < 0.1  # both halves of each line are used
    o = sf.make_data(3, directions="orthogonal")
    torch.testing.assert_close(o.directions @ o.directions.T, torch.eye(3), rtol=0, atol=1e-5)
    nrm = sf.make_data(3, magnitudes="normal", min_angle_deg=0.0)
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
        sf.make_data(**kwargs)


def test_train_runs_rejects_bad_input():
    data = sf.stack_data([sf.make_data(0)])
    with pytest.raises(ValueError, match="loss"):
        sf.train_runs("simclr", False, data, epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        sf.train_runs("dcl", False, data, epochs=-1)
    with pytest.raises(ValueError, match="data must be stacked"):
        sf.train_runs("dcl", False, sf.make_data(0), epochs=1)


# ---------------------------------------------------------------------------------------------- model


def test_batched_ffn_equals_torch_sequential():
    """The stacked bmm network equals nn.Sequential(Linear, ReLU, Linear, ReLU, Linear) per seed."""
    params = sf.init_params((0, 1), hidden=8)
    x = torch.randn(2, 11, 3, generator=torch.Generator().manual_seed(0))
    out = sf.ffn(params, x)
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
    got = sf.clop_term_all_seeds(z1, z2, labels, protos)
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
    """Training seeds together gives each seed's own result (no cross-talk); vmap and loop agree."""
    seeds = [3, 4]
    together = sf.train_runs("dcl", True, sf.stack_data([sf.make_data(s) for s in seeds]), epochs=3)
    for i, s in enumerate(seeds):
        alone = sf.train_runs("dcl", True, sf.stack_data([sf.make_data(s)]), epochs=3)
        torch.testing.assert_close(together[i], alone[0], rtol=1e-5, atol=1e-6)
    data = sf.stack_data([sf.make_data(s) for s in seeds])
    vm = sf.train_runs("barlowtwins", True, data, epochs=3, loss_mode="vmap")
    lp = sf.train_runs("barlowtwins", True, data, epochs=3, loss_mode="loop")
    torch.testing.assert_close(vm, lp, rtol=1e-4, atol=1e-5)


def test_run_is_deterministic_for_a_seed():
    kwargs = dict(losses=("infonce", "vicreg"), epochs=3, show_progress=False)
    r1, e1, _ = sf.run_experiment([0, 1], **kwargs)
    r2, e2, _ = sf.run_experiment([0, 1], **kwargs)
    pd.testing.assert_frame_equal(r1, r2, check_exact=True)
    for key in e1:
        assert torch.equal(e1[key], e2[key])
    assert list(r1.columns) == ["loss", "clop", "seed", "knn_accuracy", "stable_rank", "entropy_rank"]
    assert len(r1) == 2 * 2 * 2


def test_clop_term_changes_the_result_and_pulls_labeled_points_to_their_prototypes():
    data = sf.stack_data([sf.make_data(s) for s in (0, 1)])
    without = sf.train_runs("infonce", False, data, epochs=30)
    with_clop = sf.train_runs("infonce", True, data, epochs=30)
    assert float((without - with_clop).abs().max()) > 0.1
    for i, seed in enumerate(data.seeds):
        protos = sf.clop_prototypes.orthonormal(3, 3, seed=seed, dtype=torch.float32, device="cpu")
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
    assert sf.knn_accuracy(emb, y, labeled) == pytest.approx(correct / te.size)


def test_verdict_rule_is_two_standard_errors_of_the_paired_gain():
    def frame(diffs):
        rows = []
        for s, d in enumerate(diffs):
            rows.append({"loss": "dcl", "clop": False, "seed": s, "knn_accuracy": 0.5})
            rows.append({"loss": "dcl", "clop": True, "seed": s, "knn_accuracy": 0.5 + d / 100})
        return pd.DataFrame(rows)

    clear = frame([2.0, 1.0, 3.0, 2.0])  # mean 2, std 0.816, se 0.41: t = 4.9
    noisy = frame([2.0, -1.0, 3.0, -1.5])  # mean 0.625, std 2.2, se 1.1: t = 0.57
    assert sf.paired_gain(clear, "dcl")[0] == pytest.approx(2.0)
    assert sf.paired_gain(clear, "dcl")[2:] == (4, 4)
    assert sf.verdicts(clear)["dcl"][0] == "holds"
    assert sf.verdicts(noisy)["dcl"][0] == "fails"
    assert sf.verdicts(frame([-1.0, -2.0, -1.0]))["dcl"][0] == "fails"


def test_regime_of_names_the_two_reported_regimes():
    assert sf.regime_of("random", 45.0, "uniform") == "separable"
    assert sf.regime_of("random", 0, "normal") == "overlapping"
    assert sf.regime_of("random", 30.0, "normal") == "custom"
    assert sf.regime_of("orthogonal", 45.0, "uniform") == "custom"
    # make_data's defaults are the separable regime
    torch.testing.assert_close(sf.make_data(2).x, sf.make_data(2, **sf.REGIMES["separable"]).x, rtol=0, atol=0)


def test_overlapping_classes_are_gaussian_with_the_covariance_the_bayes_rule_uses():
    """t ~ N(0, 1): x given class c is N(0, u u^T + 0.05 I), so x^T Sigma^-1 x is chi-square with 3 degrees of
    freedom (mean 3, variance 6). Sigma^-1 by Sherman-Morrison, pooled over 10 seeds (5000 points)."""
    m2 = []
    for seed in range(10):
        d = sf.make_data(seed, **sf.REGIMES["overlapping"])
        for c in range(3):
            x, u = d.x[d.y == c].double(), d.directions[c].double()
            inv = (torch.eye(3, dtype=torch.float64) - torch.outer(u, u) / (0.05 + 1.0)) / 0.05
            m2.append(((x @ inv) * x).sum(1))
    m2 = torch.cat(m2)
    assert abs(float(m2.mean()) - 3.0) < 5 * math.sqrt(6.0 / m2.numel()), float(m2.mean())


def test_bayes_accuracy_matches_a_pointwise_closed_form_and_beats_raw_knn():
    data = sf.stack_data([sf.make_data(s, **sf.REGIMES["overlapping"]) for s in range(5)])
    got = sf.bayes_accuracy(data)
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
    assert np.mean(got) > np.mean(sf.input_knn_accuracy(data))
    with pytest.raises(ValueError, match="stacked"):
        sf.bayes_accuracy(sf.make_data(0))
    with pytest.raises(ValueError, match="noise_var"):
        sf.bayes_accuracy(data, noise_var=0.0)


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
    sep = sf.markdown_report(
        _fake_results({"infonce": [0.0, 0.1, -0.1], "dcl": [0.0, 0.0, 0.1]}),
        [0.6, 0.6, 0.6],
        settings=_settings(**sf.REGIMES["separable"]),
    )
    first = sep.split("\n\n")[:2]
    assert "separable regime" in first[0] and "**separable**" in first[1]
    assert "(table5_overlap/table5.md)" in first[1]
    ovl = sf.markdown_report(
        _fake_results({"infonce": [3.0, 4.0, 5.0], "dcl": [-1.0, 2.0, -1.0]}),
        [0.6, 0.6, 0.6],
        settings=_settings(**sf.REGIMES["overlapping"]),
        bayes_acc=[0.75, 0.7, 0.8],
    )
    first = ovl.split("\n\n")[:2]
    assert "overlapping regime" in first[0] and "**overlapping**" in first[1]
    assert "(../table5.md)" in first[1]
    # InfoNCE +4.00 pp holds, DCL +0.00 pp fails: the first paragraph must not say that CLOP helps
    assert "InfoNCE by +4.00 pp" in first[1] and "DCL by +0.00 pp" in first[1]
    assert "not confirmed" in first[1] and "CLOP helps" not in first[1]
    assert "Bayes-optimal" in ovl and "75.00 ± 5.00 %" in ovl
    custom = sf.markdown_report(
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
    table = pd.read_csv(tmp_path / "table5.csv")
    assert list(table.columns) == ["loss", "clop", "seed", "knn_accuracy", "stable_rank", "entropy_rank"]
    assert len(table) == 4 * 2 * 2 and set(table["loss"]) == set(sf.LOSSES)
    emb = pd.read_csv(tmp_path / "figure5_embeddings.csv")
    assert len(emb) == 8 * 500 and set(emb["seed"]) == {0}
    # the figure's accuracies are recomputed from the CSV: they match the table's seed-0 rows
    for (loss, clop), sub in emb.groupby(["loss", "clop"]):
        row = table[(table["loss"] == loss) & (table["clop"] == clop) & (table["seed"] == 0)]
        acc = sf.knn_accuracy(sub[["z0", "z1", "z2"]].to_numpy(), sub["label"].to_numpy(), sub["labeled"].to_numpy())
        assert acc == pytest.approx(float(row["knn_accuracy"].iloc[0]))
    md = (tmp_path / "table5.md").read_text()
    assert "68.91" in md and "Verdicts" in md and "45 degrees" in md
    assert "separable regime" in md.splitlines()[0] and "(table5_overlap/table5.md)" in md
    assert "Bayes-optimal" not in md  # only for t ~ N(0, 1)
    assert set(emb["regime"]) == {"separable"}  # the figure's title reads it from here
    assert (tmp_path / "figure5.png").stat().st_size > 10_000
    redrawn = sf.plot_figure5(tmp_path / "figure5_embeddings.csv", tmp_path / "again.png")
    assert redrawn.stat().st_size > 10_000
    assert "| InfoNCE | yes |" in capsys.readouterr().out


def test_cli_rejects_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        sf.main(["--seeds", "0", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        sf.main(["--min-angle", "95", "--out", str(tmp_path)])


@pytest.mark.parametrize("how", [["simulations/synthetic_ffn.py"], ["-m", "simulations.synthetic_ffn"]])
def test_runs_as_script_and_as_module(how):
    out = subprocess.run([sys.executable, *how, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--seeds" in out.stdout


# ------------------------------------------------------------------------------------------ the claim

# The two data regimes of the report (sf.REGIMES). Separable (the default, paper_figures/table5.md): the paper's
# claim does not reproduce; overlapping (paper_figures/table5_overlap/table5.md): it does, qualitatively.
_SEPARABLE_XFAIL = pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason=(
        "CLOP paper Sec. 4 / Table 5: CLOP raises the KNN accuracy of InfoNCE (+30.98 pp) and DCL (+11.44 pp). "
        "Not reproduced in the separable regime: the baselines do not collapse and every run sits near the "
        "raw-input KNN ceiling (98.76 %). Default settings, 10 seeds: InfoNCE 99.56 -> 99.27 % (paired gain "
        "-0.29 pp, std 0.39, higher on 2/10 seeds), DCL 99.58 -> 99.56 % (-0.02 pp, std 0.29, higher on 3/10)."
    ),
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "regime", [pytest.param("separable", marks=_SEPARABLE_XFAIL), pytest.param("overlapping")]
)
def test_paper_claim_clop_raises_knn_accuracy_for_infonce_and_dcl(regime):
    """Paper claim, mean over the default 10 seeds: KNN accuracy with CLOP > without by more than 2 standard
    errors of the paired gain (the report's verdict rule). Same settings as the run of that regime (10 seeds,
    200 epochs, sf.REGIMES[regime] = the CLI's data options), so the numbers are exactly that run's InfoNCE and
    DCL rows (seeds train independently; checked by the batching test).

    Overlapping regime at these settings (measured): InfoNCE 65.44 -> 68.82 % (gain +3.38 pp, standard error
    1.45), DCL 67.16 -> 68.87 % (+1.71 pp, standard error 0.81): the claim holds qualitatively, by a narrow
    margin for DCL, and far below the paper's +30.98 / +11.44 pp."""
    results, _, _ = sf.run_experiment(
        list(range(10)), losses=("infonce", "dcl"), data_options=sf.REGIMES[regime], show_progress=False
    )
    gains = {name: sf.paired_gain(results, name) for name in ("infonce", "dcl")}
    for name, (mean, std, _, n) in gains.items():
        msg = f"{regime}, {name}: mean gain {mean:+.2f} pp, paired std {std:.2f}, {gains}"
        assert mean > 2.0 * std / math.sqrt(n), msg
        assert sf.verdicts(results)[name][0] == "holds"  # the report prints the same verdict
