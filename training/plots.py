"""Figures 6-9 and Tables 1-3 of the CLOP paper (Sec. 5) from linear-probe results, beside the paper's numbers.

    python -m training.plots --results CSV [CSV ...] [--out paper_figures] [--prefix ""]

Input: results CSVs written by ``python -m training.linear_eval`` (one row per linear-probe evaluation;
columns in :data:`REQUIRED_COLUMNS` at least, top-1 / top-5 as fractions). Several CSVs are concatenated;
when one evaluation of a run appears more than once (same run and probe settings), the last row is kept.

Outputs under ``--out`` (each name prefixed with ``--prefix``):

* ``figure6.csv`` / ``figure6.png``: top-1 vs global batch size (log2 axis), rows with base_lr = 0.3 (the
  paper's lr = 0.3 x batch / 256); ``figure8.png``: the same for top-5 (the paper's Appendix B figure).
* ``figure7.csv`` / ``figure7.png``: top-1 vs learning rate lr = base_lr x batch / 256 (log axis), rows with
  batch 1024; ``figure9.png``: the same for top-5.
* ``table1.md/.csv`` (λ), ``table2.md/.csv`` (similarity), ``table3.md/.csv`` (augmentation): ours beside
  the paper's printed numbers (:mod:`training.paper_results`) and the difference ours - paper.
* ``figures.md``: what each figure shows, the rows it uses, and the paper's claims about Figures 6 and 7
  (their curve values are not printed in the paper, so there is nothing numeric to set beside ours).

One line per *variant* = loss + label fraction + CLOP on/off + prototypes, e.g. "InfoNCE 10% + CLOP",
"SupCon 100%", "SupCon 100% + CLOP (ETF)" (Sec. 5: InfoNCE with 10 % labels, SupCon with all labels, each
with and without CLOP at λ = 1, and CLOP with ETF prototypes). Each point is the mean over the runs (seeds)
of one setting; the error bar spans their min and max when there are several. Where rows of one point
differ in a setting that is not part of the variant (epochs, architecture, probe settings, ... see
:data:`CONTEXT_COLUMNS`), that setting is added to the variant's name rather than averaged over.

Selection rules (the paper's main setting; ``--augmentation`` and ``--base-lr`` change the defaults):

* Figures: λ in {0, 1} (CLOP off / the paper's λ = 1), CLOP rows with cosine similarity, augmentation
  simclr ("All experiments are performed using the SimCLR framework", Sec. 5).
* Table 1: CLOP rows (λ > 0) with orthonormal prototypes, cosine similarity, batch 1024, base_lr 0.3,
  augmentation simclr, CIFAR-100 and Tiny-ImageNet. Table 2: λ = 1, orthonormal, batch 1024, base_lr 0.3,
  simclr, CIFAR-100. Table 3: λ = 1, orthonormal, cosine, batch 1024, base_lr 0.3, Tiny-ImageNet. The paper
  states neither the learning rate of its ablations nor the loss of Tables 2 and 3 (see
  :mod:`training.paper_results`); every loss present is shown, with a variant column when there are several.

Missing required columns are an error (exit code 2) naming them; a figure or table without matching rows is
skipped with a printed note.

Every output is staged in ``--out`` and renamed into place only when all of them are complete
(:func:`clop.util.io.staged_outputs`); each figure is drawn from the data in memory, the same data its CSV holds.
An interrupted run leaves the previous run's complete set of files as it was.
"""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from clop.util.io import atomic_path, check_output_dir, staged_outputs

from training import paper_results as PR

__all__ = [
    "REQUIRED_COLUMNS",
    "CONTEXT_COLUMNS",
    "load_results",
    "variant_label",
    "select_figure6",
    "select_figure7",
    "aggregate",
    "figure_data",
    "plot_sweep",
    "select_table",
    "compare_table",
    "table_markdown",
    "make_all",
    "main",
]

#: Columns every results CSV must have (written by training.linear_eval).
REQUIRED_COLUMNS: tuple[str, ...] = (
    "dataset", "loss", "label_fraction", "clop_lambda", "prototypes", "similarity", "augmentation",
    "batch_size", "base_lr", "seed", "top1", "top5",
)
#: Settings that are not part of a variant's name but must not be averaged over when they differ: when rows
#: of one point (or table cell) differ in one of these, it joins the variant's name (figures) or becomes a
#: column (tables). Columns absent from the CSV are ignored.
CONTEXT_COLUMNS: tuple[str, ...] = (
    "arch", "optimizer", "epochs", "image_size", "clop_reduction", "temperature", "projection_dim", "hidden_dim",
    "warmup_epochs", "weight_decay", "momentum", "trust_coefficient", "steps_per_epoch",
    "probe_labels", "probe_epochs", "probe_lr", "probe_weight_decay",
)
# Settings of the CLOP term, meaningless when clop_lambda == 0 (set to "n/a" there).
_CLOP_ONLY = ("prototypes", "similarity", "clop_reduction")
# Rows that are the same evaluation of the same run (the last one is kept).
_EVAL_KEY = ("run", "probe_labels", "probe_epochs", "probe_lr", "probe_weight_decay", "probe_seed")

_LOSS_NAMES = {"infonce": "InfoNCE", "supcon": "SupCon", "dcl": "DCL", "barlowtwins": "Barlow Twins",
               "vicreg": "VICReg"}
_LOSS_ORDER = ("infonce", "supcon", "dcl", "barlowtwins", "vicreg")
_DATASET_NAMES = {"cifar100": "CIFAR-100", "tiny-imagenet": "Tiny-ImageNet", "imagenet": "ImageNet",
                  "synthetic": "synthetic (CIFAR format)"}
_DATASET_ORDER = ("cifar100", "tiny-imagenet", "imagenet", "synthetic")
_AUG_NAMES = {"randaugment": "RandAugment", "autoaugment": "AutoAugment (ImageNet policy)", "simclr": "SimCLR"}
_METRIC_NAMES = {"top1": "top-1", "top5": "top-5"}
_KEY_NAMES = {"clop_lambda": "λ", "similarity": "similarity", "augmentation": "augmentation"}

_FIGURE_LAMBDAS = (0.0, PR.CLOP_LAMBDA)


def _close(a: pd.Series, b: float) -> pd.Series:
    return pd.Series(np.isclose(a.to_numpy(dtype=float), b, rtol=1e-9, atol=1e-12), index=a.index)


def _fmt(v: object) -> str:
    """A setting's value as text: integers without '.0', NaN / None as 'default'."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "default"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v)


# ----------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------


def load_results(paths: Sequence[str | Path]) -> pd.DataFrame:
    """The rows of the results CSVs ``paths``, checked and normalised (one row per evaluation).

    Raises ValueError naming the file and the missing columns when a CSV lacks one of
    :data:`REQUIRED_COLUMNS`, or naming the column and value when top-1 / top-5 are not fractions in
    [0, 1]. Adds ``clop`` (clop_lambda > 0) and ``variant`` (:func:`variant_label`); sets the CLOP-only
    settings (prototypes, similarity, clop_reduction) to "n/a" on rows without CLOP; drops repeated
    evaluations of one run (same ``run`` and probe settings), keeping the last.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise ValueError("results: give at least one results CSV; got none")
    frames = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise ValueError(f"results: {str(p)!r} is not a file; give results CSVs written by training.linear_eval")
        try:
            f = pd.read_csv(p)
        except (OSError, ValueError) as exc:  # unreadable, empty, not a CSV (pandas' errors are ValueErrors)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"results CSV {str(p)!r} cannot be read ({first}); give results CSVs written by "
                             "training.linear_eval") from None
        missing = [c for c in REQUIRED_COLUMNS if c not in f.columns]
        if missing:
            raise ValueError(
                f"results CSV {str(p)!r} lacks the required column(s) {missing}; it has {list(f.columns)}; "
                f"needed: {list(REQUIRED_COLUMNS)} (as written by training.linear_eval)"
            )
        frames.append(f)
    df = pd.concat(frames, ignore_index=True)
    for c in ("label_fraction", "clop_lambda", "batch_size", "base_lr", "seed", "top1", "top5"):
        try:
            df[c] = pd.to_numeric(df[c])
        except (ValueError, TypeError) as exc:
            raise ValueError(f"results column {c!r} must be numeric; {exc}") from None
    for c in ("top1", "top5"):
        bad = df[c].notna() & ~df[c].between(0.0, 1.0)
        if bad.any():
            raise ValueError(f"results column {c!r} must hold fractions in [0, 1]; got {df.loc[bad, c].iloc[0]!r}")
    nan = df["top1"].isna() | df["top5"].isna()
    if nan.any():
        print(f"note: {int(nan.sum())} results row(s) without top1/top5 ignored", file=sys.stderr)
        df = df[~nan].reset_index(drop=True)
    for c in ("dataset", "loss", "prototypes", "similarity", "augmentation"):
        df[c] = df[c].astype(str).str.strip().str.lower()
    key = [c for c in _EVAL_KEY if c in df.columns]
    if "run" in key:
        df = df.drop_duplicates(subset=key, keep="last").reset_index(drop=True)
    df["clop"] = df["clop_lambda"] > 0
    for c in _CLOP_ONLY:
        if c in df.columns:
            df[c] = df[c].astype(object).where(df["clop"], "n/a")
    df["variant"] = [variant_label(r.loss, r.label_fraction, r.clop_lambda, r.prototypes)
                     for r in df[["loss", "label_fraction", "clop_lambda", "prototypes"]].itertuples()]
    df["lr"] = df["base_lr"] * df["batch_size"] / 256.0
    return df


def variant_label(loss: str, label_fraction: float, clop_lambda: float, prototypes: str) -> str:
    """E.g. ``variant_label("infonce", 0.1, 1.0, "orthonormal") == "InfoNCE 10% + CLOP"``; ETF prototypes
    add " (ETF)"; clop_lambda == 0 means no CLOP."""
    name = f"{_LOSS_NAMES.get(loss, loss)} {100 * float(label_fraction):g}%"
    if clop_lambda > 0:
        name += " + CLOP" + (" (ETF)" if prototypes == "etf" else "")
    return name


def _variant_order(df: pd.DataFrame) -> list[str]:
    """Variants sorted by loss (paper order), label fraction, CLOP off / orthonormal / ETF, then name."""
    rank = {n: i for i, n in enumerate(_LOSS_ORDER)}
    keys = {}
    for r in df.itertuples():
        mode = 0 if not r.clop else (2 if r.prototypes == "etf" else 1)
        keys.setdefault(r.variant, (rank.get(r.loss, len(rank)), r.loss, r.label_fraction, mode, r.variant))
    return sorted(keys, key=keys.get)


def _dataset_order(values) -> list[str]:
    rank = {n: i for i, n in enumerate(_DATASET_ORDER)}
    return sorted(set(values), key=lambda d: (rank.get(d, len(rank)), d))


def _varying(df: pd.DataFrame, groups: list[str]) -> list[str]:
    """The CONTEXT_COLUMNS that take more than one value inside some group of ``groups``."""
    out = []
    for c in CONTEXT_COLUMNS:
        if c not in df.columns or df.empty:
            continue
        n = df.assign(_v=df[c].map(_fmt)).groupby(groups, dropna=False)["_v"].nunique()
        if (n > 1).any():
            out.append(c)
    return out


# ----------------------------------------------------------------------------------------------------
# Figures 6 and 7
# ----------------------------------------------------------------------------------------------------


def _main_setting(df: pd.DataFrame, augmentation: str) -> tuple[pd.Series, str]:
    mask = (_close(df["clop_lambda"], 0.0) | _close(df["clop_lambda"], PR.CLOP_LAMBDA))
    mask &= (~df["clop"]) | (df["similarity"] == "cosine")
    mask &= df["augmentation"] == augmentation
    rule = (f"λ = 0 (no CLOP) or λ = {PR.CLOP_LAMBDA:g}; CLOP with cosine similarity (orthonormal or ETF "
            f"prototypes); augmentation {augmentation}")
    return mask, rule


def select_figure6(df: pd.DataFrame, *, base_lr: float = PR.BASE_LR, augmentation: str = "simclr") -> tuple[pd.DataFrame, str]:
    """Rows of the batch-size sweep (Fig. 6): base_lr == ``base_lr`` (lr = base_lr x batch/256) and the
    paper's main setting; returns (rows, the rule in words)."""
    mask, rule = _main_setting(df, augmentation)
    mask &= _close(df["base_lr"], base_lr)
    return df[mask].copy(), f"base_lr = {base_lr:g} (lr = {base_lr:g} x batch/256, every batch size); {rule}"


def select_figure7(df: pd.DataFrame, *, batch_size: int = PR.LR_SWEEP_BATCH, augmentation: str = "simclr") -> tuple[pd.DataFrame, str]:
    """Rows of the learning-rate sweep (Fig. 7): batch_size == ``batch_size`` and the paper's main setting;
    returns (rows, the rule in words)."""
    mask, rule = _main_setting(df, augmentation)
    mask &= df["batch_size"] == batch_size
    return df[mask].copy(), f"batch size {batch_size} (every learning rate); {rule}"


def aggregate(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean, min and max of top1 / top5 over the rows of each ``keys`` group, with ``n_runs`` (rows) and
    ``seeds`` (the distinct seeds, ';'-separated). One output row per group, sorted by ``keys``."""
    g = rows.groupby(keys, dropna=False, sort=True)
    out = g.agg(
        n_runs=("top1", "size"),
        top1_mean=("top1", "mean"), top1_min=("top1", "min"), top1_max=("top1", "max"),
        top5_mean=("top5", "mean"), top5_min=("top5", "min"), top5_max=("top5", "max"),
    )
    out["seeds"] = g["seed"].agg(lambda s: ";".join(str(int(v)) for v in sorted(set(s))))
    return out.reset_index()


def figure_data(rows: pd.DataFrame, x: str) -> pd.DataFrame:
    """Points of a sweep figure: one row per (dataset, variant, x) with the mean / min / max over seeds.

    ``x`` is "batch_size" (Fig. 6) or "lr" (Fig. 7). Settings of :data:`CONTEXT_COLUMNS` that differ inside
    one point are appended to the variant's name ("SupCon 100% [epochs=100]"). Columns: dataset, variant,
    loss, label_fraction, clop_lambda, prototypes, batch_size, base_lr, lr, n_runs, seeds, top1_mean,
    top1_min, top1_max, top5_mean, top5_min, top5_max.
    """
    if x not in ("batch_size", "lr"):
        raise ValueError(f"x must be 'batch_size' or 'lr'; got {x!r}")
    rows = rows.copy()
    extra = _varying(rows, ["dataset", "variant", "batch_size", "base_lr"])
    if extra:
        rows["variant"] = rows["variant"] + " [" + rows[extra].apply(
            lambda r: ", ".join(f"{c}={_fmt(r[c])}" for c in extra), axis=1) + "]"
    order = _variant_order(rows)
    keys = ["dataset", "variant", "loss", "label_fraction", "clop_lambda", "prototypes", "batch_size", "base_lr"]
    out = aggregate(rows, keys)
    out.insert(out.columns.get_loc("base_lr") + 1, "lr", out["base_lr"] * out["batch_size"] / 256.0)
    ds_rank = {d: i for i, d in enumerate(_dataset_order(out["dataset"]))}
    v_rank = {v: i for i, v in enumerate(order)}
    out = out.sort_values(["dataset", "variant", x], key=lambda s: s.map(ds_rank) if s.name == "dataset"
                          else (s.map(v_rank) if s.name == "variant" else s))
    cols = ["dataset", "variant", "loss", "label_fraction", "clop_lambda", "prototypes", "batch_size", "base_lr",
            "lr", "n_runs", "seeds", "top1_mean", "top1_min", "top1_max", "top5_mean", "top5_min", "top5_max"]
    return out[cols].reset_index(drop=True)


def _styles(frame: pd.DataFrame) -> dict[str, dict]:
    """Matplotlib style per variant: colour per (loss, label fraction, extra settings); dashed line and open
    marker without CLOP, solid with orthonormal CLOP, dotted with square markers for ETF CLOP."""
    fixed = {("infonce", 0.1): "tab:blue", ("supcon", 1.0): "tab:red"}  # the paper's two baselines
    palette = ["tab:green", "tab:purple", "tab:brown", "tab:olive", "tab:cyan", "tab:pink", "tab:gray",
               "tab:orange"]
    families: dict[tuple, str] = {}
    out = {}
    for r in frame.drop_duplicates("variant").itertuples():
        suffix = r.variant.split(" [", 1)[1] if " [" in r.variant else ""
        fam = (r.loss, round(float(r.label_fraction), 6), suffix)
        if fam not in families:
            base = fixed.get(fam[:2]) if not suffix else None
            taken = set(families.values())
            free = [c for c in palette if c not in taken] or palette
            families[fam] = base if base and base not in taken else free[0]
        color = families[fam]
        if not r.clop_lambda > 0:
            out[r.variant] = dict(color=color, linestyle="--", marker="o", markerfacecolor="white")
        elif r.prototypes == "etf":
            out[r.variant] = dict(color=color, linestyle=":", marker="s", markerfacecolor=color)
        else:
            out[r.variant] = dict(color=color, linestyle="-", marker="o", markerfacecolor=color)
    return out


def plot_sweep(data: pd.DataFrame | str | Path, png_path: str | Path, *, x: str, metric: str = "top1",
               title: str = "", footnote: str = "") -> Path:
    """Draw a sweep figure from its data (the frame of :func:`figure_data`, or the CSV it was written to):
    one panel per dataset, one line per variant, mean over seeds with min-max bars; ``x`` "batch_size"
    (log2 axis) or "lr" (log10 axis); ``metric`` "top1" or "top5" (plotted in percent). Written as PNG
    to ``png_path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    if metric not in _METRIC_NAMES:
        raise ValueError(f"metric must be one of {sorted(_METRIC_NAMES)}; got {metric!r}")
    frame = data if isinstance(data, pd.DataFrame) else pd.read_csv(data)
    datasets = _dataset_order(frame["dataset"])
    order = list(dict.fromkeys(frame["variant"]))  # the CSV is sorted in legend order
    styles = _styles(frame)
    n = len(datasets)
    labels_all = list(order)
    width = max(5.0 * n + 0.8, 8.0)
    ncol = max(1, min(len(labels_all), 2 if n == 1 else (3 if n == 2 else 5)))
    legend_rows = math.ceil(len(labels_all) / ncol)
    # wrap the title (12 pt) and footnote (8.5 pt) to the figure width: about 0.55 em per character
    title = "\n".join(textwrap.fill(t, int(width * 72 / (12 * 0.53))) for t in title.split("\n")) if title else ""
    footnote = textwrap.fill(footnote, int(width * 72 / (8.5 * 0.55))) if footnote else ""
    title_lines = title.count("\n") + 1 if title else 0
    foot_lines = footnote.count("\n") + 1 if footnote else 0
    # layout in inches: title, axes, tick labels + x label, footnote, legend
    top_in = 0.45 + 0.22 * title_lines
    axes_in, xlab_in, foot_in, leg_in = 3.9, 0.85, 0.16 * foot_lines + 0.1, 0.28 * legend_rows + 0.15
    height = top_in + axes_in + xlab_in + foot_in + leg_in
    fig, axes = plt.subplots(1, n, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.2 / width, top=1 - top_in / height,
                        bottom=(xlab_in + foot_in + leg_in) / height, wspace=0.25)
    handles: dict[str, object] = {}
    for ax, ds in zip(axes[0], datasets):
        sub = frame[frame["dataset"] == ds]
        for v in order:
            pts = sub[sub["variant"] == v].sort_values(x)
            if pts.empty:
                continue
            mean = 100 * pts[f"{metric}_mean"].to_numpy()
            lo = mean - 100 * pts[f"{metric}_min"].to_numpy()
            hi = 100 * pts[f"{metric}_max"].to_numpy() - mean
            yerr = np.vstack([lo, hi]) if (pts["n_runs"] > 1).any() else None
            h = ax.errorbar(pts[x].to_numpy(), mean, yerr=yerr, capsize=3, linewidth=1.6, markersize=5,
                            elinewidth=1, label=v, **styles[v])
            handles.setdefault(v, h)
        xs = sorted(set(sub[x]))
        if x == "batch_size":
            ax.set_xscale("log", base=2)
            ax.set_xlabel("global batch size (images, log$_2$ scale)")
        else:
            ax.set_xscale("log")
            ax.set_xlabel("learning rate = base_lr × batch / 256 (log scale)")
        ax.xaxis.set_major_locator(FixedLocator(xs))
        ax.xaxis.set_minor_locator(NullLocator())
        crowded = len(xs) > 1 and min(b / a for a, b in zip(xs, xs[1:])) < 1.5  # e.g. lr 1 and 1.2
        ax.set_xticklabels([_fmt(float(v)) for v in xs], rotation=90 if crowded else (45 if len(xs) > 7 else 0))
        if len(xs) == 1:
            ax.set_xlim(xs[0] / 2, xs[0] * 2)
        ax.set_ylabel(f"{_METRIC_NAMES[metric]} linear-probe accuracy (%)")
        ax.set_title(_DATASET_NAMES.get(ds, ds))
        ax.grid(True, alpha=0.3)
    labels = [v for v in labels_all if v in handles]
    fig.legend([handles[v] for v in labels], labels, loc="lower center", ncol=ncol, fontsize=9.5,
               frameon=False, bbox_to_anchor=(0.5, 0.02 / height))
    if footnote:
        fig.text(0.5, (leg_in + 0.05) / height, footnote, ha="center", va="bottom", fontsize=8.5, color="0.3")
    fig.suptitle(title, fontsize=12, y=1 - 0.08 / height, va="top")
    png_path = Path(png_path)
    try:
        with atomic_path(png_path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)
    return png_path


# ----------------------------------------------------------------------------------------------------
# Tables 1-3
# ----------------------------------------------------------------------------------------------------


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
    mask = df["dataset"].isin(datasets) & (df["batch_size"] == batch_size) & _close(df["base_lr"], base_lr)
    mask &= df["clop"] & (df["prototypes"] == "orthonormal")
    parts = [" and ".join(_DATASET_NAMES.get(d, d) for d in datasets), f"batch size {batch_size}",
             f"base_lr {base_lr:g} (lr = {base_lr * batch_size / 256:g})", "CLOP with orthonormal prototypes"]
    if name == "table1":
        mask &= (df["similarity"] == "cosine") & (df["augmentation"] == augmentation)
        parts += ["every λ > 0", "cosine similarity", f"augmentation {augmentation}"]
    elif name == "table2":
        mask &= _close(df["clop_lambda"], PR.CLOP_LAMBDA) & (df["augmentation"] == augmentation)
        parts += [f"λ = {PR.CLOP_LAMBDA:g}", "every similarity", f"augmentation {augmentation}"]
    else:
        mask &= _close(df["clop_lambda"], PR.CLOP_LAMBDA) & (df["similarity"] == "cosine")
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
    extra = _varying(rows, ["dataset", "variant", key])
    cols = ["dataset", "variant", *extra, key, "n_runs", "seeds", "top1_mean", "top1_min", "top1_max",
            "top5_mean", "top5_min", "top5_max", "paper_top1", "paper_top5", "diff_top1", "diff_top5"]
    ours = aggregate(rows, ["dataset", "variant", *extra, key]) if not rows.empty else pd.DataFrame(
        columns=cols[:cols.index("paper_top1")])
    ours["_k"] = _key_values(ours, key)
    merged = ours.drop(columns=[key]).merge(paper.drop(columns=[key]), on=["dataset", "variant", "_k"], how="outer")
    merged[key] = merged["_k"]
    merged["diff_top1"] = merged["top1_mean"] - merged["paper_top1"]
    merged["diff_top5"] = merged["top5_mean"] - merged["paper_top5"]
    ds_rank = {d: i for i, d in enumerate(_dataset_order(merged["dataset"]))}
    key_order = list(dict.fromkeys(list(paper["_k"]) + sorted(ours["_k"], key=str)))
    k_rank = {k: i for i, k in enumerate(key_order)}
    variants = _variant_order(rows) if not rows.empty else []
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
    head = ["Dataset"] + (["Variant"] if show_variant else []) + extra + [_KEY_NAMES[key], "n", "seeds",
            "top-1 ours", "top-1 paper", "Δ top-1", "top-5 ours", "top-5 paper", "Δ top-5"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in frame.itertuples(index=False):
        d = r._asdict()
        kv = d[key]
        kv = _fmt(float(kv)) if key == "clop_lambda" else _AUG_NAMES.get(kv, kv) if key == "augmentation" else kv
        cells = [_DATASET_NAMES.get(d["dataset"], d["dataset"])]
        if show_variant:
            cells.append("—" if pd.isna(d["variant"]) else d["variant"])
        cells += ["—" if pd.isna(d[c]) else _fmt(d[c]) for c in extra]
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


# ----------------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------------

_FIGURES = {
    # data name: (x column, [(png name = the paper's figure, metric)])
    "figure6": ("batch_size", [("figure6", "top1"), ("figure8", "top5")]),
    "figure7": ("lr", [("figure7", "top1"), ("figure9", "top5")]),
}


def _figures_markdown(drawn: set[str], rules: dict[str, str], prefix: str) -> str:
    lines = ["# Figures 6-9 (CLOP paper): linear-probe accuracy vs batch size and vs learning rate — ours", "",
             PR.FIGURE_VALUES_NOTE, ""]
    for fig, (x, pngs) in _FIGURES.items():
        cap = PR.FIGURE_CAPTIONS[fig]
        lines.append(f"## {cap.split(':')[0]}")
        lines.append("")
        lines.append(f"Paper caption: \"{cap}\"")
        lines.append("")
        if fig in drawn:
            files = ", ".join(f"`{prefix}{p}.png` ({_METRIC_NAMES[m]})" for p, m in pngs)
            lines.append(f"Ours: {files}, data `{prefix}{fig}.csv` (mean over seeds; min–max bars).")
            lines.append(f"Rows used: {rules[fig]}.")
        else:
            lines.append(f"Ours: not drawn, no rows with {rules[fig]}.")
        lines += ["", "Claims of the paper about this figure:"]
        for c in PR.FIGURE_CLAIMS:
            if fig in c.figures:
                lines.append(f"- \"{c.quote}\" ({c.source})")
        lines.append("")
    lines.append("Notes on the text:")
    lines += [f"- {n}" for n in PR.TEXT_NOTES]
    return "\n".join(lines) + "\n"


def make_all(results: Sequence[str | Path], out: str | Path = "paper_figures", *, prefix: str = "",
             base_lr: float = PR.BASE_LR, augmentation: str = "simclr") -> dict[str, list[Path]]:
    """Write every figure and table that the rows allow; print a note for each one skipped.

    Returns {name: [files written]} for name in figure6, figure7, table1, table2, table3, figures (empty
    list when skipped). Raises ValueError for unreadable input (see :func:`load_results`).
    """
    if any(s in prefix for s in ("/", "\\")) or prefix in (".", ".."):
        raise ValueError(f"prefix must be a plain file-name prefix without path separators; got {prefix!r}")
    if isinstance(base_lr, bool) or not isinstance(base_lr, (int, float)) or not (math.isfinite(base_lr) and base_lr > 0):
        raise ValueError(f"base_lr must be a finite real number > 0; got {base_lr!r}")
    if augmentation not in _AUG_NAMES:
        raise ValueError(f"augmentation must be one of {sorted(_AUG_NAMES)}; got {augmentation!r}")
    out = check_output_dir(out, "--out")
    df = load_results(results)
    written: dict[str, list[str]] = {}
    rules: dict[str, str] = {}
    notes: list[str] = []

    with staged_outputs(out) as stage:  # every file, or none: an interrupted run keeps the previous set
        selectors = {"figure6": lambda: select_figure6(df, base_lr=base_lr, augmentation=augmentation),
                     "figure7": lambda: select_figure7(df, augmentation=augmentation)}
        for fig, (x, pngs) in _FIGURES.items():
            rows, rule = selectors[fig]()
            rules[fig] = rule
            if rows.empty:
                notes.append(f"note: {fig} skipped: no rows match ({rule}); {len(df)} rows read")
                written[fig] = []
                continue
            data = figure_data(rows, x)
            csv = f"{prefix}{fig}.csv"
            data.to_csv(stage(csv), index=False)
            files = [csv]
            what = "batch size (lr = {:g} × batch/256)".format(base_lr) if x == "batch_size" else \
                f"learning rate (batch {PR.LR_SWEEP_BATCH})"
            for png, metric in pngs:
                paper_fig = PR.FIGURE_CAPTIONS[png].split(":")[0]
                title = (f"{paper_fig} (CLOP paper), ours: {_METRIC_NAMES[metric]} linear-probe accuracy vs {what}\n"
                         f"each variant with and without CLOP (λ = {PR.CLOP_LAMBDA:g}); % = labels used")
                foot = ("Mean over seeds; bars: min–max over seeds where there are several (n in "
                        f"{csv}). The paper's curve values are not printed in its text, so none are shown.")
                plot_sweep(data, stage(f"{prefix}{png}.png"), x=x, metric=metric, title=title, footnote=foot)
                files.append(f"{prefix}{png}.png")
            written[fig] = files

        for name in PR.TABLES:
            rows, rule = select_table(df, name, base_lr=base_lr, augmentation=augmentation)
            if rows.empty:
                notes.append(f"note: {name} skipped: no rows match ({rule}); {len(df)} rows read")
                written[name] = []
                continue
            frame, extra = compare_table(rows, name)
            frame.to_csv(stage(f"{prefix}{name}.csv"), index=False)
            text = table_markdown(frame, extra, name, rule, show_variant=frame["variant"].nunique() > 1)
            stage(f"{prefix}{name}.md").write_text(text)
            written[name] = [f"{prefix}{name}.md", f"{prefix}{name}.csv"]

        stage(f"{prefix}figures.md").write_text(_figures_markdown({f for f in _FIGURES if written[f]}, rules, prefix))
        written["figures"] = [f"{prefix}figures.md"]

    for note in notes:
        print(note)
    paths = {k: [out / n for n in names] for k, names in written.items()}
    for files in paths.values():
        if files:
            print(f"wrote {', '.join(str(f) for f in files)}")
    return paths


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.plots",
        description="Figures 6-9 and Tables 1-3 of the CLOP paper (Sec. 5) from linear-probe results CSVs, "
                    "beside the paper's printed numbers.",
    )
    p.add_argument("--results", nargs="+", required=True, metavar="CSV",
                   help="results CSV(s) written by training.linear_eval (concatenated)")
    p.add_argument("--out", default="paper_figures", help="output directory (default paper_figures)")
    p.add_argument("--prefix", default="", help="prefix of every output file name, e.g. 'smoke_' (default none)")
    p.add_argument("--base-lr", type=float, default=PR.BASE_LR,
                   help="base_lr of the rows used for Figure 6 and Tables 1-3 (default 0.3: lr = 0.3 x batch/256)")
    p.add_argument("--augmentation", default="simclr", choices=sorted(_AUG_NAMES),
                   help="augmentation of the rows used for Figures 6-7 and Tables 1-2 (default simclr)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        make_all(args.results, args.out, prefix=args.prefix, base_lr=args.base_lr, augmentation=args.augmentation)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
