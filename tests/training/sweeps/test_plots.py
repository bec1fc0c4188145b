"""Tests of training.plots and training.paper_results: the aggregates of the figure / table CSVs against
pandas groupbys written here, the paper columns against the paper's text parsed here, and the error and
skip paths. The results CSV is synthetic (made up numbers in the contract's columns, several seeds).

The paper's text is read from ``tests/fixtures/clop_paper_tables_excerpt.txt``: its Tables 1-3, figure
captions and quoted paragraphs, verbatim, kept in the repository so that a fresh clone runs these tests;
where the full text export is present (``../shared/papers/...`` or ``CLOP_PAPER_TXT``) every line of the
excerpt is checked against it.
"""

from __future__ import annotations

import doctest
import itertools
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers import REPO
from training import paper_results as PR
from training import plots
from training.sweeps.report import make_all
from training.sweeps.results import load_results, variant_label

# The contract's results columns (training.linear_eval), in order.
COLUMNS = (
    "run dataset data_root download loss clop_lambda prototypes similarity clop_reduction label_fraction "
    "augmentation arch image_size batch_size base_lr epochs warmup_epochs weight_decay momentum "
    "trust_coefficient temperature projection_dim hidden_dim eval_batch steps_per_epoch seed probe_labels "
    "probe_train_images test_images probe_epochs probe_lr probe_weight_decay probe_seed top1 top5 stable_rank "
    "entropy_rank feature_stable_rank feature_entropy_rank"
).split()

PAPER_TXT = Path(os.environ.get(
    "CLOP_PAPER_TXT", REPO.parent / "shared" / "papers" / "001_a0916c72eb7a88d5.txt"))
PAPER_EXCERPT = REPO / "tests" / "fixtures" / "clop_paper_tables_excerpt.txt"


def excerpt_blocks(path: Path = PAPER_EXCERPT) -> list[tuple[int, int, list[str]]]:
    """The excerpt's blocks: (first line, last line, the lines) per '## lines A-B: ...' header; lines are
    1-based line numbers of the paper's text export."""
    blocks: list[tuple[int, int, list[str]]] = []
    for line in path.read_text(encoding="utf-8").split("\n")[:-1]:  # the file ends with a newline
        header = re.match(r"## lines (\d+)-(\d+): ", line)
        if header:
            blocks.append((int(header.group(1)), int(header.group(2)), []))
        elif blocks:
            blocks[-1][2].append(line)
        else:
            assert line.startswith("# "), f"{path.name}: text before the first block: {line!r}"
    return blocks


def paper_text() -> str:
    """The paper's text as the tests read it: the excerpt's blocks, one after another."""
    return "\n\n".join("\n".join(lines) for _, _, lines in excerpt_blocks())

# (loss, label fraction, clop_lambda, prototypes) of the paper's Figure 6/7 variants, and our names for them
# (written out here, not taken from training.plots).
VARIANTS = {
    ("infonce", 0.1, 0.0, "orthonormal"): "InfoNCE 10%",
    ("infonce", 0.1, 1.0, "orthonormal"): "InfoNCE 10% + CLOP",
    ("supcon", 1.0, 0.0, "orthonormal"): "SupCon 100%",
    ("supcon", 1.0, 1.0, "orthonormal"): "SupCon 100% + CLOP",
    ("supcon", 1.0, 1.0, "etf"): "SupCon 100% + CLOP (ETF)",
}


def _row(rng, *, dataset, loss, frac, lam, protos="orthonormal", sim="cosine", aug="simclr", batch=1024,
         base_lr=0.3, seed=0, epochs=None, arch="resnet50") -> dict:
    """One made-up results row: accuracy falls at small batch and large lr, less so with CLOP."""
    top = {"cifar100": 0.70, "tiny-imagenet": 0.58, "imagenet": 0.66}[dataset]
    lr = base_lr * batch / 256
    clop = lam > 0
    top -= (0.01 if clop else 0.03) * abs(np.log2(batch / 1024))
    top -= (0.04 if clop else 0.25) * max(0.0, np.log10(lr / 1.2)) ** 2
    top -= 0.05 * (frac < 1) + 0.01 * (protos == "etf" and clop) + 0.03 * (sim == "manhattan") * clop
    top += {"simclr": 0.0, "randaugment": 0.04, "autoaugment": 0.02}[aug] + 0.01 * (lam == 1.5)
    top1 = float(np.clip(top + rng.normal(0, 0.01), 0.01, 0.99))
    top5 = float(np.clip(top1 + 0.2 + rng.normal(0, 0.005), 0.0, 1.0))
    ep = epochs if epochs is not None else PR.EPOCHS[dataset]
    run = f"runs/{dataset}-{loss}-{lam:g}-{protos}-{sim}-{aug}-l{frac:g}-b{batch}-lr{base_lr:g}-e{ep}-{arch}-s{seed}"
    return {
        "run": run, "dataset": dataset, "data_root": "data", "download": False, "loss": loss, "clop_lambda": lam,
        "prototypes": protos, "similarity": sim, "clop_reduction": "mean", "label_fraction": frac,
        "augmentation": aug, "arch": arch, "image_size": 32 if dataset == "cifar100" else 64, "batch_size": batch,
        "base_lr": base_lr, "epochs": ep, "warmup_epochs": 10.0, "weight_decay": 1e-6, "momentum": 0.9,
        "trust_coefficient": 1e-3, "temperature": 0.5 if loss == "infonce" else 0.1, "projection_dim": 128,
        "hidden_dim": 2048, "eval_batch": 512, "steps_per_epoch": np.nan, "seed": seed, "probe_labels": "run",
        "probe_train_images": 5000, "test_images": 10000, "probe_epochs": 100, "probe_lr": 0.1,
        "probe_weight_decay": 0.0, "probe_seed": 0, "top1": top1, "top5": top5, "stable_rank": 10.0,
        "entropy_rank": 50.0, "feature_stable_rank": 5.0, "feature_entropy_rank": 100.0,
    }


def fake_results(seed: int = 0, seeds=(0, 1, 2), datasets=("cifar100", "tiny-imagenet", "imagenet")) -> pd.DataFrame:
    """A results table as the paper's Sec. 5 sweeps would write it (made-up accuracies)."""
    rng = np.random.default_rng(seed)
    rows = []
    for ds, (loss, frac, lam, protos), s in itertools.product(datasets, VARIANTS, seeds):
        for b in PR.BATCH_SIZES:  # Figure 6
            rows.append(_row(rng, dataset=ds, loss=loss, frac=frac, lam=lam, protos=protos, batch=b, seed=s))
        for lr in PR.LR_GRID:  # Figure 7
            rows.append(_row(rng, dataset=ds, loss=loss, frac=frac, lam=lam, protos=protos, base_lr=lr / 4, seed=s))
    for s in seeds:
        for ds, lam in itertools.product(("cifar100", "tiny-imagenet"), (0.1, 0.5, 1.5)):  # Table 1
            rows.append(_row(rng, dataset=ds, loss="supcon", frac=1.0, lam=lam, seed=s))
        for sim in ("euclidean", "manhattan"):  # Table 2
            rows.append(_row(rng, dataset="cifar100", loss="supcon", frac=1.0, lam=1.0, sim=sim, seed=s))
        for aug in ("randaugment", "autoaugment"):  # Table 3
            rows.append(_row(rng, dataset="tiny-imagenet", loss="supcon", frac=1.0, lam=1.0, aug=aug, seed=s))
    return pd.DataFrame(rows, columns=COLUMNS)


def parse_paper_table1(text: str) -> pd.DataFrame:
    """Table 1 of the paper's text: the rows between the header line 'λ<TAB>CIFAR-100...' and the caption."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("λ") and "CIFAR-100" in ln and "Tiny-ImageNet" in ln)
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("Table 1:"))
    rows = []
    for ln in lines[start + 1:end]:
        nums = re.findall(r"\d+(?:\.\d+)?", ln)
        if len(nums) == 5:  # λ, CIFAR top-1, top-5, Tiny top-1, top-5
            lam, c1, c5, t1, t5 = map(float, nums)
            rows += [("cifar100", lam, c1, c5), ("tiny-imagenet", lam, t1, t5)]
    return pd.DataFrame(rows, columns=["dataset", "clop_lambda", "top1", "top5"])


def _our_name(r) -> str:
    """Our name of a row's variant (λ itself is not part of it, only CLOP on / off)."""
    clop = r.clop_lambda > 0
    return VARIANTS[(r.loss, r.label_fraction, 1.0 if clop else 0.0, r.prototypes if clop else "orthonormal")]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    d = tmp_path_factory.mktemp("plots")
    raw = fake_results()
    # a repeated evaluation of one run: the last row counts, the first must be ignored
    dup = raw.iloc[[0]].copy()
    dup["top1"], dup["top5"] = 0.0, 0.0
    csv_a, csv_b = d / "a.csv", d / "b.csv"
    pd.concat([dup, raw.iloc[: len(raw) // 2]]).to_csv(csv_a, index=False)
    raw.iloc[len(raw) // 2:].to_csv(csv_b, index=False)
    out = d / "out"
    rc = plots.main(["--results", str(csv_a), str(csv_b), "--out", str(out), "--prefix", "t_"])
    return raw, out, rc


def test_main_writes_every_file(made):
    raw, out, rc = made
    assert rc == 0
    names = ["figure6.csv", "figure6.png", "figure8.png", "figure7.csv", "figure7.png", "figure9.png",
             "table1.md", "table1.csv", "table2.md", "table2.csv", "table3.md", "table3.csv", "figures.md"]
    for n in names:
        f = out / f"t_{n}"
        assert f.is_file() and f.stat().st_size > 0, n
    assert (out / "t_figure6.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure6_equals_groupby(made):
    raw, out, _ = made
    sel = raw[np.isclose(raw["base_lr"], 0.3) & (raw["augmentation"] == "simclr") & raw["clop_lambda"].isin([0.0, 1.0])
              & ((raw["clop_lambda"] == 0) | (raw["similarity"] == "cosine"))].copy()
    sel["variant"] = [_our_name(r) for r in sel.itertuples()]
    want = sel.groupby(["dataset", "variant", "batch_size"])["top1"].agg(["mean", "min", "max", "size"]).reset_index()
    got = pd.read_csv(out / "t_figure6.csv")
    assert len(got) == len(want) == 3 * len(VARIANTS) * len(PR.BATCH_SIZES)
    m = want.merge(got, on=["dataset", "variant", "batch_size"], how="outer", indicator=True)
    assert (m["_merge"] == "both").all()
    np.testing.assert_allclose(m["top1_mean"], m["mean"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(m["top1_min"], m["min"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(m["top1_max"], m["max"], rtol=0, atol=1e-12)
    assert (m["n_runs"] == m["size"]).all() and (m["n_runs"] == 3).all()
    assert set(got["seeds"]) == {"0;1;2"}
    # lr column = base_lr x batch / 256
    np.testing.assert_allclose(got["lr"], 0.3 * got["batch_size"] / 256)


def test_figure7_x_is_the_learning_rate_at_batch_1024(made):
    raw, out, _ = made
    got = pd.read_csv(out / "t_figure7.csv")
    assert set(got["batch_size"]) == {1024}
    sel = raw[(raw["batch_size"] == 1024) & (raw["augmentation"] == "simclr") & raw["clop_lambda"].isin([0.0, 1.0])
              & ((raw["clop_lambda"] == 0) | (raw["similarity"] == "cosine"))].copy()
    sel["variant"] = [_our_name(r) for r in sel.itertuples()]
    sel["lr"] = (sel["base_lr"] * 4).round(9)
    want = sel.groupby(["dataset", "variant", "lr"])["top5"].mean().reset_index()
    got["lr"] = got["lr"].round(9)
    m = want.merge(got, on=["dataset", "variant", "lr"], how="outer", indicator=True)
    assert (m["_merge"] == "both").all()
    np.testing.assert_allclose(m["top5_mean"], m["top5"], rtol=0, atol=1e-12)
    assert {0.1, 0.3, 1.0, 3.0, 10.0} <= set(got["lr"])


def test_table1_ours_equals_groupby_and_paper_equals_the_text(made):
    raw, out, _ = made
    paper = parse_paper_table1(paper_text())
    assert len(paper) == 8
    # every loss with CLOP (orthonormal, cosine, simclr) at batch 1024 and base_lr 0.3: the sweeps' InfoNCE + CLOP
    # rows at that point join the λ = 1 rows as a second variant
    sel = raw[(raw["clop_lambda"] > 0) & (raw["prototypes"] == "orthonormal") & (raw["similarity"] == "cosine")
              & (raw["augmentation"] == "simclr") & (raw["batch_size"] == 1024) & np.isclose(raw["base_lr"], 0.3)
              & raw["dataset"].isin(["cifar100", "tiny-imagenet"])].copy()
    sel["variant"] = [_our_name(r) for r in sel.itertuples()]
    want = sel.groupby(["dataset", "variant", "clop_lambda"])[["top1", "top5"]].agg(["mean", "min", "max"])
    want.columns = [f"{a}_{b}" for a, b in want.columns]
    want = want.reset_index()
    # the paper's numbers (SupCon + CLOP, all labels) beside our SupCon 100% rows only
    paper["variant"] = "SupCon 100% + CLOP"
    want = want.merge(paper, on=["dataset", "variant", "clop_lambda"], how="outer")
    assert len(want) == 10  # 4 λ of SupCon + λ = 1 of InfoNCE, two datasets
    got = pd.read_csv(out / "t_table1.csv")
    assert set(got["variant"]) == {"SupCon 100% + CLOP", "InfoNCE 10% + CLOP"}
    m = want.merge(got, on=["dataset", "variant", "clop_lambda"], how="outer", suffixes=("", "_got"), indicator=True)
    assert len(m) == 10 and (m["_merge"] == "both").all()
    for c in ("top1_mean", "top1_min", "top1_max", "top5_mean", "top5_max"):
        np.testing.assert_allclose(m[c + "_got"], m[c], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(m["paper_top1"], m["top1"])  # NaN == NaN for the InfoNCE rows
    np.testing.assert_array_equal(m["paper_top5"], m["top5"])
    assert m.loc[m["variant"] == "InfoNCE 10% + CLOP", "paper_top1"].isna().all()
    assert m.loc[m["variant"] == "SupCon 100% + CLOP", "paper_top1"].notna().sum() == 8
    np.testing.assert_allclose(m["diff_top1"], m["top1_mean"] - m["top1"], atol=1e-12)
    # the module's data equal the text too
    mod = PR.table1().merge(paper, on=["dataset", "clop_lambda"], suffixes=("", "_txt"))
    assert len(mod) == 8
    np.testing.assert_array_equal(mod["top1"], mod["top1_txt"])
    np.testing.assert_array_equal(mod["top5"], mod["top5_txt"])
    md = (out / "t_table1.md").read_text()
    assert "Rows used (ours)" in md and "batch size 1024" in md and "augmentation simclr" in md


def test_tables2_and_3_have_every_paper_row(made):
    _, out, _ = made
    t2 = pd.read_csv(out / "t_table2.csv")
    t3 = pd.read_csv(out / "t_table3.csv")
    for t, p, key in ((t2, PR.table2(), "similarity"), (t3, PR.table3(), "augmentation")):
        assert (t["n_runs"] == 3).all()
        sup = t[t["variant"] == "SupCon 100% + CLOP"]
        assert list(sup[key]) == list(p[key])  # the paper's order
        np.testing.assert_array_equal(sup["paper_top1"], p["top1"])
        np.testing.assert_array_equal(sup["paper_top5"], p["top5"])
        # InfoNCE + CLOP (from the sweeps) only in the default setting: cosine / simclr
        assert list(t.loc[t["variant"] == "InfoNCE 10% + CLOP", key]) == [{"similarity": "cosine", "augmentation": "simclr"}[key]]
        assert t.loc[t["variant"] == "InfoNCE 10% + CLOP", "paper_top1"].isna().all()


def test_repeated_evaluation_keeps_the_last_row(tmp_path):
    raw = fake_results(seeds=(0,), datasets=("cifar100",))
    first = raw.iloc[[0]].copy()
    first["top1"] = 0.0
    other_probe = raw.iloc[[0]].copy()
    other_probe["probe_labels"] = "all"  # another evaluation of the same run: kept
    csv = tmp_path / "r.csv"
    pd.concat([first, raw, other_probe]).to_csv(csv, index=False)
    df = load_results([csv])
    assert len(df) == len(raw) + 1
    same = df[(df["run"] == raw["run"].iloc[0]) & (df["probe_labels"] == "run")]
    assert len(same) == 1 and same["top1"].iloc[0] == raw["top1"].iloc[0]


def test_missing_columns_is_an_error_naming_them(tmp_path, capsys):
    raw = fake_results(seeds=(0,), datasets=("cifar100",))
    csv = tmp_path / "bad.csv"
    raw.drop(columns=["top5", "base_lr"]).to_csv(csv, index=False)
    with pytest.raises(ValueError, match=r"lacks the required column\(s\) \['base_lr', 'top5'\]"):
        load_results([csv])
    assert plots.main(["--results", str(csv), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "base_lr" in err and "top5" in err and str(csv) in err
    assert not (tmp_path / "o" / "figure6.png").exists()


def test_bad_values_fail_with_the_column_named(tmp_path):
    raw = fake_results(seeds=(0,), datasets=("cifar100",))
    raw.loc[0, "top1"] = 75.4  # percent instead of a fraction
    csv = tmp_path / "pct.csv"
    raw.to_csv(csv, index=False)
    with pytest.raises(ValueError, match="'top1'.*fractions in \\[0, 1\\].*75.4"):
        load_results([csv])
    with pytest.raises(ValueError, match="is not a file"):
        load_results([tmp_path / "nope.csv"])
    with pytest.raises(ValueError, match="prefix"):
        make_all([csv], tmp_path, prefix="../x")


def test_nothing_matching_is_skipped_with_a_note(tmp_path, capsys):
    # only a DCL run at batch 512 with lr rule 0.5: no figure 6 (base_lr), no figure 7 (batch), no tables
    rng = np.random.default_rng(0)
    csv = tmp_path / "odd.csv"
    pd.DataFrame([_row(rng, dataset="cifar100", loss="dcl", frac=0.1, lam=0.0, batch=512, base_lr=0.5)],
                 columns=COLUMNS).to_csv(csv, index=False)
    assert plots.main(["--results", str(csv), "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    for name in ("figure6", "figure7", "table1", "table2", "table3"):
        assert f"note: {name} skipped" in text
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("table*"))
    assert "not drawn" in (tmp_path / "figures.md").read_text()


def test_differing_settings_are_not_averaged(tmp_path):
    # SupCon + CLOP at two epoch counts, and InfoNCE + CLOP in the λ ablation: kept apart
    rng = np.random.default_rng(1)
    rows = [_row(rng, dataset="cifar100", loss="supcon", frac=1.0, lam=1.0, epochs=e, seed=s)
            for e in (100, 200) for s in (0, 1)]
    rows += [_row(rng, dataset="cifar100", loss="infonce", frac=0.1, lam=0.5, seed=0)]
    csv = tmp_path / "r.csv"
    pd.DataFrame(rows, columns=COLUMNS).to_csv(csv, index=False)
    assert plots.main(["--results", str(csv), "--out", str(tmp_path)]) == 0
    f6 = pd.read_csv(tmp_path / "figure6.csv")
    assert sorted(f6["variant"]) == ["SupCon 100% + CLOP [epochs=100]", "SupCon 100% + CLOP [epochs=200]"]
    assert (f6["n_runs"] == 2).all()
    t1 = pd.read_csv(tmp_path / "table1.csv")
    ours = t1[t1["n_runs"].notna()]
    assert set(zip(ours["variant"], ours["epochs"], ours["clop_lambda"])) == {
        ("SupCon 100% + CLOP", 100, 1.0), ("SupCon 100% + CLOP", 200, 1.0), ("InfoNCE 10% + CLOP", 200, 0.5)}
    md = (tmp_path / "table1.md").read_text()
    assert "| Variant | epochs |" in md
    # paper rows without runs of ours stay in the table: Tiny-ImageNet has none here
    assert t1[t1["dataset"] == "tiny-imagenet"]["n_runs"].isna().all()
    assert len(t1[t1["dataset"] == "tiny-imagenet"]) == 4


def test_variant_label():
    assert variant_label("infonce", 0.1, 1.0, "orthonormal") == "InfoNCE 10% + CLOP"
    assert variant_label("supcon", 1.0, 0.0, "etf") == "SupCon 100%"
    assert variant_label("supcon", 1.0, 1.0, "etf") == "SupCon 100% + CLOP (ETF)"


def test_paper_results_doctest_and_shapes():
    result = doctest.testmod(PR)
    assert result.attempted > 0 and result.failed == 0
    assert PR.table1().shape == (8, 4) and PR.table2().shape == (3, 4) and PR.table3().shape == (3, 5)
    assert PR.FIGURE_VALUES_AVAILABLE is False
    assert all(c.quote and c.source for c in PR.FIGURE_CLAIMS)
    with pytest.raises(ValueError, match="name must be one of"):
        PR.paper_table("table4")


def test_paper_tables_2_and_3_equal_the_text():
    text = paper_text()
    for table, first, caption in ((PR.TABLE2, "Similarity Metric", "Table 2:"), (PR.TABLE3, "Augmentation\t", "Table 3:")):
        block = re.search(f"^{first}.*?\n(.*?)\n\n?{caption}", text, re.S | re.M).group(1)
        printed = [ln.split("\t") for ln in block.strip().splitlines()]
        frame = table.frame()
        assert len(printed) == len(frame)
        for (name, t1, t5), r in zip(printed, frame.itertuples()):
            assert (float(t1), float(t5)) == (r.top1, r.top5)
            assert name.lower() == (r.printed_name if table is PR.TABLE3 else r.similarity).lower()


def test_every_claim_is_verbatim_in_the_text():
    text = paper_text()
    for c in PR.FIGURE_CLAIMS:
        assert c.quote in text, c.key
    for cap in PR.FIGURE_CAPTIONS.values():
        assert cap in text


def test_paper_excerpt_is_verbatim_where_the_full_text_is_present():
    blocks = excerpt_blocks()
    assert [(a, b) for a, b, _ in blocks][0] == (187, 208), "the first block is Tables 1-3"
    for a, b, lines in blocks:
        assert len(lines) == b - a + 1, (a, b)
    if PAPER_TXT.is_file():  # absent in a fresh clone: then the excerpt stands for it
        full = PAPER_TXT.read_text(encoding="utf-8").split("\n")
        for a, b, lines in blocks:
            assert lines == full[a - 1 : b], f"excerpt lines {a}-{b} differ from {PAPER_TXT}"
