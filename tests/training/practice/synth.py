"""Constructed per-run and per-interval tables of the practice study, for the claim tests (no training).

Top-1 is quantised to whole test images (1/359) with a spread of about two images; every geometry value has
noise over seeds and a bootstrap resolution, so that no finding is decided by a zero spread.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from training.eval.evaluate import GEOM_COLUMNS
from training.practice.endgeom import END_KEYS
from training.practice.grid import study_points
from training.practice.table import CHANCE, ETA_COLUMNS, RUN_COLUMNS, TEST_IMAGES

SEEDS = (0, 1, 2)
VERDICT_SEEDS = 8

# end-of-run geometry (value, seed-to-seed noise, bootstrap resolution)
BASELINE = {"mu_norm": (0.1, 0.01, 0.003), "sum_norm": (0.3, 0.05, 0.02), "sv_min_ratio": (0.03, 0.005, 0.002),
            "sv_next_ratio": (0.4, 0.02, 0.01), "cos_mean": (-0.105, 0.002, 0.001), "cos_std": (0.15, 0.01, 0.005),
            "abs_cos_mean": (0.15, 0.01, 0.005)}
WITH_CLOP = {"mu_norm": (0.3, 0.01, 0.003), "sum_norm": (3.0, 0.05, 0.02), "sv_min_ratio": (0.6, 0.02, 0.01),
             "sv_next_ratio": (0.7, 0.02, 0.01), "cos_mean": (0.0, 0.002, 0.001), "cos_std": (0.05, 0.005, 0.003),
             "abs_cos_mean": (0.04, 0.005, 0.003)}
COLLAPSED = {"mu_norm": (0.9996, 0.0001, 0.0001), "sum_norm": (9.995, 0.001, 0.001), "sv_min_ratio": (0.001, 0.0002, 0.0001),
             "sv_next_ratio": (0.002, 0.0003, 0.0001), "cos_mean": (0.999, 0.0002, 0.0001),
             "cos_std": (0.0005, 0.0001, 0.0001), "abs_cos_mean": (0.999, 0.0002, 0.0001)}
"""A consistent completely collapsed geometry: every class mean along one direction (cos ~ 1)."""


def quantised(pp: float) -> float:
    """A top-1 in pp rounded to whole test images, as a fraction."""
    return round(pp * TEST_IMAGES / 100.0) / TEST_IMAGES


def runs_table(*, top1=None, geom=None, diverged=None, noise_pp=0.6, seeds=SEEDS, verdict_seeds=VERDICT_SEEDS, rng=0):
    """A per-run table of the study's grid; ``top1(row)`` in pp, ``geom(row)`` a dict like :data:`BASELINE` (or None),
    ``diverged(row)``."""
    g = np.random.default_rng(rng)
    rows = []
    for p in study_points(seeds=seeds, epochs=8, runs="/nonexistent", verdict_seeds=verdict_seeds):
        s = p.settings
        clop = s["clop_lambda"] > 0
        lr = s["base_lr"] * s["batch_size"] / 256
        row = {"run": p.name, "variant": p.variant, "label": p.variant, "reference": not p.in_paper, "loss": s["loss"],
               "label_fraction": s["label_fraction"], "clop_lambda": s["clop_lambda"], "prototypes": s["prototypes"],
               "optimizer": s["optimizer"], "batch_size": s["batch_size"], "base_lr": s["base_lr"], "lr": lr,
               "seed": s["seed"], "epochs": 8, "diverged": False, "top5": 0.99, "loss_first": 6.0, "loss_last": 5.0,
               "contrastive_first": 6.0, "contrastive_last": 5.0 - 0.01 * math.log10(max(lr, 1e-6)),
               **{c: math.nan for c in GEOM_COLUMNS}}
        pp = top1(row) if top1 is not None else 90.0
        row["top1"] = quantised(pp + noise_pp * g.standard_normal())
        shape = (geom(row) if geom is not None else None) or (WITH_CLOP if clop else BASELINE)
        for key in END_KEYS:
            value, spread, res = shape[key]
            row[f"end_{key}"] = value + spread * g.standard_normal()
            row[f"res_{key}"] = res
        row["end_mu_norm"] = min(row["end_mu_norm"], 1.0)
        row["geom_mu_norm"] = row["end_mu_norm"]
        if diverged is not None and diverged(row):
            row["diverged"], row["top1"] = True, CHANCE
        rows.append(row)
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS))


def eta_table(runs, eta_step, *, r2_step=0.95, se=0.05):
    """Three logged intervals of every run with per-step eta ``eta_step(row)``."""
    rows = [{"run": r.run, "variant": r.variant, "optimizer": r.optimizer, "batch_size": r.batch_size, "lr": r.lr,
             "clop_lambda": r.clop_lambda, "seed": r.seed, "reference": r.reference, "epoch": e, "step": 5 * e,
             "step_lr": r.lr, "interval": e - 1, "eta_eff": 5 * eta_step(r), "eta_step": eta_step(r), "steps": 5,
             "r2": 0.9, "r2_step": r2_step, "sst": 0.5, "ssr": 0.01, "s_min": 0.5, "eta_step_se": se,
             "mu_norm_before": 0.5, "mu_norm_after": 0.5, "eta_crit": 2.25, "trusted": False}
            for r in runs.itertuples() for e in (1, 2, 3)]
    return pd.DataFrame(rows, columns=list(ETA_COLUMNS))
