"""The practice study's per-run and per-interval tables, and how runs are picked from them.

Paper: "Preventing collapse in contrastive learning with orthonormal prototypes" (CLOP), arXiv 2403.18699.

* :data:`RUN_COLUMNS` - one row per finished or diverged run (``practice_runs.csv``): its settings, the probe's
  top-1/top-5 (``top1`` = :data:`CHANCE` for a diverged run: a probe of NaN features), first/last loss, the
  last epoch's logged class geometry (``geom_*``, metrics.csv) and the end-of-run geometry with its bootstrap
  resolution (``end_*``, ``res_*``, :mod:`training.practice.endgeom`).
* :data:`ETA_COLUMNS` - one row per logged interval of every run (``eta_eff.csv``): the run's settings, then
  geometry.csv's row (its ``lr`` as ``step_lr``) and ``trusted`` (:func:`trusted`).
* :func:`pick`, :func:`reference` - the runs of one point (or the untrained-encoder reference), indexed by seed;
  :func:`paired` keeps the seeds that every series has, so differences are paired by seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.eval.evaluate import GEOM_COLUMNS
from training.eval.geometry import MIN_R2_STEP, TABLE_KEYS
from training.practice.endgeom import END_COLUMNS
from training.sweeps.grid import VARIANTS
from training.sweeps.results import variant_label

__all__ = ["Points", "K", "CHANCE", "TEST_IMAGES", "TOP1_RESOLUTION_PP", "RUN_COLUMNS", "ETA_COLUMNS", "check_runs",
           "trusted", "pick", "reference", "paired", "top1_pp", "values", "resolution", "variant_name"]

K = 10
"""Classes of digits."""
CHANCE = 1.0 / K
TEST_IMAGES = 359
"""Test images of digits (training.data.digits' fixed stratified split)."""
TOP1_RESOLUTION_PP = 100.0 / TEST_IMAGES
"""Top-1 moves in steps of one test image: 0.279 pp."""

RUN_COLUMNS = (
    "run", "variant", "label", "reference", "loss", "label_fraction", "clop_lambda", "prototypes", "optimizer",
    "batch_size", "base_lr", "lr", "seed", "epochs", "diverged", "top1", "top5", "loss_first", "loss_last",
    "contrastive_first", "contrastive_last", *GEOM_COLUMNS, *END_COLUMNS,
)
ETA_COLUMNS = ("run", "variant", "optimizer", "batch_size", "lr", "clop_lambda", "seed", "reference", "epoch", "step",
               "step_lr", *TABLE_KEYS, "trusted")
_TEXT = ("run", "variant", "label", "loss", "prototypes", "optimizer", "reference", "diverged")


def _bool(x) -> bool:
    return str(x).strip().lower() in ("true", "1", "1.0")


def check_runs(runs: pd.DataFrame, name: str = "runs") -> pd.DataFrame:
    """``runs`` with typed columns; ValueError naming the missing columns."""
    missing = [c for c in RUN_COLUMNS if c not in runs.columns]
    if missing:
        raise ValueError(f"{name} lacks the column(s) {missing}; expected the columns of practice_runs.csv: "
                         f"{list(RUN_COLUMNS)}")
    out = runs.copy()
    for c in ("reference", "diverged"):
        out[c] = out[c].map(_bool).astype(bool)
    for c in RUN_COLUMNS:
        if c not in _TEXT:
            out[c] = pd.to_numeric(out[c], errors="coerce")
    out[_KEY] = [_key(*k) for k in zip(out["variant"], out["reference"], out["optimizer"], out["batch_size"],
                                       out["lr"], out["clop_lambda"])]
    return out


_KEY = "_point"
"""A column that check_runs adds: each row's point as one string, so that :func:`pick` compares one column."""


def _key(variant, reference, optimizer, batch, lr, lam) -> str:
    return f"{variant}|{bool(reference)}|{optimizer}|{batch:.9g}|{lr:.9g}|{lam:.9g}"


def trusted(eta: pd.DataFrame) -> pd.Series:
    """Intervals with a finite per-step eta and standard error whose fitted steps explain at least
    :data:`training.eval.geometry.MIN_R2_STEP` of the motion (the ones :func:`training.eval.geometry.pooled_eta`
    uses)."""
    e, s, r = (pd.to_numeric(eta[c], errors="coerce") for c in ("eta_step", "eta_step_se", "r2_step"))
    return np.isfinite(e) & np.isfinite(s) & (s > 0) & (r >= MIN_R2_STEP)


class Points:
    """A checked per-run table with its points looked up once: ``frame`` (:func:`check_runs`'s table) and the
    runs of each point, indexed by seed, for :func:`pick` (the claims pick some 130 points per judgement)."""

    def __init__(self, runs: pd.DataFrame) -> None:
        self.frame = runs if _KEY in runs.columns else check_runs(runs)
        ordered = self.frame.sort_values([_KEY, "seed"], kind="stable").drop_duplicates([_KEY, "seed"])
        keys = ordered[_KEY].to_numpy()
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.array([], dtype=int)
        by_seed = ordered.set_index("seed")
        self._points = {keys[a]: by_seed.iloc[a:b] for a, b in zip(starts, [*starts[1:], len(keys)])}
        self._empty = by_seed.iloc[:0]

    def point(self, key: str) -> pd.DataFrame:
        return self._points.get(key, self._empty)


def pick(runs: pd.DataFrame | Points, variant: str, optimizer: str, batch: int, lr: float, lam: float | None = None
         ) -> pd.DataFrame:
    """The runs of one point (not the reference), indexed by seed (the first row of a seed)."""
    lam = VARIANTS[variant].clop_lambda if lam is None else lam
    if isinstance(runs, Points):
        return runs.point(_key(variant, False, optimizer, batch, lr, lam))
    m = ((runs["variant"] == variant) & ~runs["reference"] & (runs["optimizer"] == optimizer)
         & (runs["batch_size"] == batch) & np.isclose(runs["lr"], lr, rtol=1e-6, atol=0)
         & np.isclose(runs["clop_lambda"], lam, rtol=1e-9, atol=1e-12))
    return runs[m].drop_duplicates("seed").set_index("seed").sort_index()


def reference(runs: pd.DataFrame | Points, variant: str) -> pd.DataFrame:
    """The untrained-encoder reference runs with the labels of ``variant``'s family, indexed by seed."""
    fam = VARIANTS[variant]
    runs = runs.frame if isinstance(runs, Points) else runs
    m = (runs["reference"] & (runs["loss"] == fam.loss)
         & np.isclose(runs["label_fraction"], fam.label_fraction, rtol=1e-9, atol=0))
    return runs[m].drop_duplicates("seed").set_index("seed").sort_index()


def paired(*series: pd.Series) -> list[pd.Series]:
    """The series restricted to the seeds they all have (sorted)."""
    seeds = sorted(set.intersection(*(set(s.index) for s in series))) if series else []
    return [s.loc[seeds] for s in series]


def top1_pp(frame: pd.DataFrame) -> pd.Series:
    """Top-1 in percentage points, by seed."""
    return 100.0 * frame["top1"]


def values(frame: pd.DataFrame, key: str) -> pd.Series:
    """``end_<key>`` of the runs that did not diverge, by seed (a diverged run's last state is not its end)."""
    return frame.loc[~frame["diverged"], f"end_{key}"]


def resolution(*frames: pd.DataFrame, key: str) -> float:
    """The resolution of ``end_<key>``, or of a difference of it between ``frames`` (one per side): the root
    sum over the sides of the mean bootstrap variance of their runs."""
    total = 0.0
    for f in frames:
        r = pd.to_numeric(f.loc[~f["diverged"], f"res_{key}"], errors="coerce").dropna()
        total += float((r ** 2).mean()) if len(r) else 0.0
    return float(np.sqrt(total))


def variant_name(variant: str) -> str:
    """The legend label of a :data:`training.sweeps.grid.VARIANTS` key (e.g. ``InfoNCE 10% + CLOP``)."""
    v = VARIANTS[variant]
    return variant_label(v.loss, v.label_fraction, v.clop_lambda, v.prototypes)
