"""Tables 1-3 of the CLOP paper (Sec. 5, the lambda, similarity and augmentation ablations): ours beside the
paper's printed numbers (:mod:`training.paper_results`) and the difference ours - paper.

Rows used: CLOP with orthonormal prototypes, batch 1024, base_lr 0.3 (the paper states neither the learning rate
of its ablations nor the loss of Tables 2 and 3); Table 1 every lambda > 0, cosine, augmentation simclr,
CIFAR-100 and Tiny-ImageNet; Table 2 lambda = 1, simclr, every similarity, CIFAR-100; Table 3 lambda = 1,
cosine, every augmentation, Tiny-ImageNet. Every loss present is shown, with a variant column when there are
several.
"""

from __future__ import annotations

import pandas as pd

from training import paper_results as PR
from training.sweeps.results import (
    AUG_NAMES,
    DATASET_NAMES,
    KEY_NAMES,
    aggregate,
    close_to,
    dataset_order,
    format_setting,
    variant_label,
    variant_order,
    varying,
)

__all__ = ["select_table", "compare_table", "table_markdown"]


def select_table(df: pd.DataFrame, name: str, *, base_lr: float = PR.BASE_LR, augmentation: str = "simclr",
                 batch_size: int = PR.ABLATION_BATCH) -> tuple[pd.DataFrame, str]:
    """Rows for the ablation table ``name`` ("table1", "table2", "table3"); returns (rows, rule in words).

    Common to all three: the table's dataset(s), batch ``batch_size``, base_lr ``base_lr``, CLOP on with
    orthonormal prototypes; Table 1 any λ > 0, cosine, augmentation ``augmentation``; Table 2 λ = 1,
    augmentation ``augmentation``, any similarity; Table 3 λ = 1, cosine, any augmentation.
    """
    if name not in PR.TABLES:
        raise ValueError(f"name must be one of {sorted(PR.TABLES)}; got {name!r}")
    datasets = list(dict.fromkeys(PR.TABLES[name].frame()["dataset"]))
    mask = df["dataset"].isin(datasets) & (df["batch_size"] == batch_size) & close_to(df["base_lr"], base_lr)
    mask &= df["clop"] & (df["prototypes"] == "orthonormal")
    parts = [" and ".join(DATASET_NAMES.get(d, d) for d in datasets), f"batch size {batch_size}",
             f"base_lr {base_lr:g} (lr = {base_lr * batch_size / 256:g})", "CLOP with orthonormal prototypes"]
    if name == "table1":
        mask &= (df["similarity"] == "cosine") & (df["augmentation"] == augmentation)
        parts += ["every λ > 0", "cosine similarity", f"augmentation {augmentation}"]
    elif name == "table2":
        mask &= close_to(df["clop_lambda"], PR.CLOP_LAMBDA) & (df["augmentation"] == augmentation)
        parts += [f"λ = {PR.CLOP_LAMBDA:g}", "every similarity", f"augmentation {augmentation}"]
    else:
        mask &= close_to(df["clop_lambda"], PR.CLOP_LAMBDA) & (df["similarity"] == "cosine")
        parts += [f"λ = {PR.CLOP_LAMBDA:g}", "cosine similarity", "every augmentation"]
    parts.append("every loss and label fraction (a variant column appears when there are several)")
    return df[mask].copy(), "; ".join(parts)


def _key_values(frame: pd.DataFrame, key: str) -> pd.Series:
    return frame[key].astype(float).round(6) if key == "clop_lambda" else frame[key].astype(str)


def compare_table(rows: pd.DataFrame, name: str) -> tuple[pd.DataFrame, list[str]]:
    """Our rows of one ablation table aggregated over seeds, merged with the paper's printed numbers.

    The paper's numbers are set beside the rows of the paper's variant only (SupCon with all labels + CLOP,
    see ``PaperTable.loss`` / ``label_fraction``); rows of other variants get no paper value, and a paper row
    that none of our runs matches stays in, with the paper's variant and n_runs empty.

    Returns (frame, extra) where ``extra`` lists the settings that became columns. One row per (dataset,
    variant, extra settings, key). Columns: dataset, variant, *extra, key (clop_lambda / similarity /
    augmentation), n_runs, seeds, top1_mean, top1_min, top1_max, top5_mean, top5_min, top5_max, paper_top1,
    paper_top5, diff_top1, diff_top5 (ours mean - paper). Sorted by dataset, variant (the paper's first),
    extra settings, key (the paper's order first).
    """
    table = PR.TABLES[name]
    key = table.key
    paper_variant = variant_label(table.loss, table.label_fraction, PR.CLOP_LAMBDA, "orthonormal")
    paper = table.frame()[["dataset", key, "top1", "top5"]].rename(columns={"top1": "paper_top1", "top5": "paper_top5"})
    paper["_k"] = _key_values(paper, key)
    paper["variant"] = paper_variant
    extra = varying(rows, ["dataset", "variant", key])
    cols = ["dataset", "variant", *extra, key, "n_runs", "seeds", "top1_mean", "top1_min", "top1_max",
            "top5_mean", "top5_min", "top5_max", "paper_top1", "paper_top5", "diff_top1", "diff_top5"]
    ours = aggregate(rows, ["dataset", "variant", *extra, key]) if not rows.empty else pd.DataFrame(
        columns=cols[:cols.index("paper_top1")])
    ours["_k"] = _key_values(ours, key)
    merged = ours.drop(columns=[key]).merge(paper.drop(columns=[key]), on=["dataset", "variant", "_k"], how="outer")
    merged[key] = merged["_k"]
    merged["diff_top1"] = merged["top1_mean"] - merged["paper_top1"]
    merged["diff_top5"] = merged["top5_mean"] - merged["paper_top5"]
    ds_rank = {d: i for i, d in enumerate(dataset_order(merged["dataset"]))}
    key_order = list(dict.fromkeys(list(paper["_k"]) + sorted(ours["_k"], key=str)))
    k_rank = {k: i for i, k in enumerate(key_order)}
    variants = variant_order(rows) if not rows.empty else []
    v_rank = {v: i for i, v in enumerate([paper_variant] + [v for v in variants if v != paper_variant])}
    merged = merged.assign(_d=merged["dataset"].map(ds_rank), _v=merged["variant"].map(v_rank).fillna(len(v_rank)),
                           _kr=merged["_k"].map(k_rank))
    merged = merged.sort_values(["_d", "_v", *extra, "_kr"], na_position="last").reset_index(drop=True)
    return merged[cols], extra


def _acc(mean: float, lo: float, hi: float, n: float) -> str:
    if pd.isna(mean):
        return "—"
    return f"{mean:.3f}" + (f" ({lo:.3f}–{hi:.3f})" if n > 1 else "")


def _num(v: float, signed: bool = False) -> str:
    return "—" if pd.isna(v) else (f"{v:+.3f}" if signed else f"{v:.3f}")


def table_markdown(frame: pd.DataFrame, extra: list[str], name: str, rule: str, *, show_variant: bool) -> str:
    """The Markdown report of one ablation table: title, how to read it, the table, the rows used, and the
    paper's source and settings."""
    table = PR.TABLES[name]
    key = table.key
    title = {"table1": "top-1 / top-5 for different λ (CLOP weight)",
             "table2": "top-1 / top-5 for different similarity functions s(z, c) in the CLOP term",
             "table3": "top-1 / top-5 for different augmentation policies"}[name]
    lines = [f"# {table.caption.split(':')[0]} (CLOP paper): {title} — ours beside the paper", "",
             "Ours: mean over runs (seeds) of the linear-probe accuracy, min–max over the runs in brackets when "
             "there are several; n = number of runs, seeds listed. Paper: the single numbers printed in "
             f"{table.caption.split(':')[0]} (no seeds or error bars), set beside our rows of the paper's variant "
             f"({variant_label(table.loss, table.label_fraction, PR.CLOP_LAMBDA, 'orthonormal')}; "
             f"{table.variant_source}); other variants have no paper value. Δ = ours − paper. Accuracies are "
             "fractions, as the paper prints them; — = no value.", ""]
    head = ["Dataset"] + (["Variant"] if show_variant else []) + extra + [KEY_NAMES[key], "n", "seeds",
            "top-1 ours", "top-1 paper", "Δ top-1", "top-5 ours", "top-5 paper", "Δ top-5"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in frame.itertuples(index=False):
        d = r._asdict()
        kv = d[key]
        kv = format_setting(float(kv)) if key == "clop_lambda" else AUG_NAMES.get(kv, kv) if key == "augmentation" else kv
        cells = [DATASET_NAMES.get(d["dataset"], d["dataset"])]
        if show_variant:
            cells.append("—" if pd.isna(d["variant"]) else d["variant"])
        cells += ["—" if pd.isna(d[c]) else format_setting(d[c]) for c in extra]
        n = d["n_runs"]
        cells += [str(kv), "0" if pd.isna(n) else str(int(n)), "—" if pd.isna(d["seeds"]) else str(d["seeds"]),
                  _acc(d["top1_mean"], d["top1_min"], d["top1_max"], 0 if pd.isna(n) else n),
                  _num(d["paper_top1"]), _num(d["diff_top1"], True),
                  _acc(d["top5_mean"], d["top5_min"], d["top5_max"], 0 if pd.isna(n) else n),
                  _num(d["paper_top5"]), _num(d["diff_top5"], True)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"**Rows used (ours):** {rule}."]
    if extra:
        lines.append(f"Settings that differ between the rows of one cell are shown as columns, not averaged: "
                     f"{', '.join(extra)}.")
    lines += ["", f"**Paper:** {table.source}.", "", f"**Paper's settings:** {table.settings}.", ""]
    for note in table.notes:
        lines.append(f"- {note}")
    matches = [m for m in PR.cross_table_matches() if name == "table1" or m.startswith(table.caption.split(':')[0])]
    for m in matches:
        lines.append(f"- Printed numbers: {m}.")
    if name == "table1":
        lines.append("- So the paper's Tiny-ImageNet λ ablation most likely used RandAugment, whereas the rows "
                     "used here have the augmentation stated above (SimCLR by default; `--augmentation "
                     "randaugment` selects the other).")
    lines.append("- The paper states no learning rate for its ablations; base_lr = 0.3 (its rule for Figure 6) is "
                 "our assumption.")
    return "\n".join(lines) + "\n"
