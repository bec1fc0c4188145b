"""The results CSVs of linear probes (training.linear_eval), read for the paper's figures and tables.

:func:`load_results` reads and checks them (one row per evaluation, repeated evaluations of a run dropped but
the last); :func:`variant_label` names a variant as the paper does ("InfoNCE 10% + CLOP"); :func:`aggregate`
takes the mean / min / max over seeds. The names and orders of datasets, losses and augmentations used in
every figure and table are here too. Settings of :data:`CONTEXT_COLUMNS` that differ inside one point are
never averaged over: they join the variant's name (figures) or become a column (tables), :func:`varying`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from training import paper_results as PR

__all__ = [
    "REQUIRED_COLUMNS", "CONTEXT_COLUMNS", "CLOP_ONLY", "EVAL_KEY", "LOSS_NAMES", "LOSS_ORDER", "DATASET_NAMES",
    "DATASET_ORDER", "AUG_NAMES", "METRIC_NAMES", "KEY_NAMES", "FIGURE_LAMBDAS", "close_to", "format_setting",
    "load_results", "variant_label", "variant_order", "dataset_order", "varying", "aggregate",
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
CLOP_ONLY = ("prototypes", "similarity", "clop_reduction")
"""Settings of the CLOP term, meaningless when clop_lambda == 0 (set to "n/a" there)."""
EVAL_KEY = ("run", "probe_labels", "probe_epochs", "probe_lr", "probe_weight_decay", "probe_seed")
"""Rows that are the same evaluation of the same run (the last one is kept)."""

LOSS_NAMES = {"infonce": "InfoNCE", "supcon": "SupCon", "dcl": "DCL", "barlowtwins": "Barlow Twins",
               "vicreg": "VICReg"}
LOSS_ORDER = ("infonce", "supcon", "dcl", "barlowtwins", "vicreg")
DATASET_NAMES = {"cifar100": "CIFAR-100", "tiny-imagenet": "Tiny-ImageNet", "imagenet": "ImageNet",
                  "synthetic": "synthetic (CIFAR format)"}
DATASET_ORDER = ("cifar100", "tiny-imagenet", "imagenet", "synthetic")
AUG_NAMES = {"randaugment": "RandAugment", "autoaugment": "AutoAugment (ImageNet policy)", "simclr": "SimCLR"}
METRIC_NAMES = {"top1": "top-1", "top5": "top-5"}
KEY_NAMES = {"clop_lambda": "λ", "similarity": "similarity", "augmentation": "augmentation"}

FIGURE_LAMBDAS = (0.0, PR.CLOP_LAMBDA)




def close_to(a: pd.Series, b: float) -> pd.Series:
    """Elementwise ``a == b`` up to round-off (rtol 1e-9)."""
    return pd.Series(np.isclose(a.to_numpy(dtype=float), b, rtol=1e-9, atol=1e-12), index=a.index)


def format_setting(v: object) -> str:
    """A setting's value as text: integers without '.0', NaN / None as 'default'."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "default"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v)


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
    key = [c for c in EVAL_KEY if c in df.columns]
    if "run" in key:
        df = df.drop_duplicates(subset=key, keep="last").reset_index(drop=True)
    df["clop"] = df["clop_lambda"] > 0
    for c in CLOP_ONLY:
        if c in df.columns:
            df[c] = df[c].astype(object).where(df["clop"], "n/a")
    df["variant"] = [variant_label(r.loss, r.label_fraction, r.clop_lambda, r.prototypes)
                     for r in df[["loss", "label_fraction", "clop_lambda", "prototypes"]].itertuples()]
    df["lr"] = df["base_lr"] * df["batch_size"] / 256.0
    return df


def variant_label(loss: str, label_fraction: float, clop_lambda: float, prototypes: str) -> str:
    """E.g. ``variant_label("infonce", 0.1, 1.0, "orthonormal") == "InfoNCE 10% + CLOP"``; ETF prototypes
    add " (ETF)"; clop_lambda == 0 means no CLOP."""
    name = f"{LOSS_NAMES.get(loss, loss)} {100 * float(label_fraction):g}%"
    if clop_lambda > 0:
        name += " + CLOP" + (" (ETF)" if prototypes == "etf" else "")
    return name


def variant_order(df: pd.DataFrame) -> list[str]:
    """Variants sorted by loss (paper order), label fraction, CLOP off / orthonormal / ETF, then name."""
    rank = {n: i for i, n in enumerate(LOSS_ORDER)}
    keys = {}
    for r in df.itertuples():
        mode = 0 if not r.clop else (2 if r.prototypes == "etf" else 1)
        keys.setdefault(r.variant, (rank.get(r.loss, len(rank)), r.loss, r.label_fraction, mode, r.variant))
    return sorted(keys, key=keys.get)


def dataset_order(values) -> list[str]:
    """The distinct datasets of ``values``, the paper's first (CIFAR-100, Tiny-ImageNet, ImageNet), then by name."""
    rank = {n: i for i, n in enumerate(DATASET_ORDER)}
    return sorted(set(values), key=lambda d: (rank.get(d, len(rank)), d))


def varying(df: pd.DataFrame, groups: list[str]) -> list[str]:
    """The CONTEXT_COLUMNS that take more than one value inside some group of ``groups``."""
    out = []
    for c in CONTEXT_COLUMNS:
        if c not in df.columns or df.empty:
            continue
        n = df.assign(_v=df[c].map(format_setting)).groupby(groups, dropna=False)["_v"].nunique()
        if (n > 1).any():
            out.append(c)
    return out


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
