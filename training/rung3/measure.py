"""What rung 3 measures at the end of each run: collapse, stable rank, the probe's top-1 and the weight norms.

Paper: CLOP, arXiv 2403.18699, Sec. 3.1 (Theorem 1's mu; complete collapse is mu -> 1).

For a finished run (its last checkpoint, on the CPU, its held-out test images embedded in eval mode, as the
practice study's end geometry, :mod:`training.practice.endgeom`):

* ``mu_norm``, ``res_mu_norm``: the norm of the mean unit projection embedding (the practice study's
  ``end_mu_norm``, :mod:`training.practice.endgeom`) and its standard deviation over :data:`BOOTSTRAPS`
  bootstrap draws of the images, class by class;
* ``mu``: the mean pairwise cosine of the N held-out unit embeddings (i != j), ``(N mu_norm^2 - 1) / (N - 1)``,
  1 at complete collapse; ``res_mu`` its resolution, ``2 mu_norm res_mu_norm N / (N - 1)`` (first order);
  ``collapsed``: ``mu >= COLLAPSE_MU`` (the same event as training.pretrain's mu_norm >= 0.999);
* ``stable_rank``: ``||U||_F^2 / ||U||_2^2`` of the (N, D) unit embeddings U (1 when all point one way);
* ``top1``: the linear probe's (``linear_eval.json``; chance, 0.1, for a diverged run, as the practice study);
* ``w_init``, ``w_end``: the joint norm of the weights that sit before a BatchNorm in ``--arch small`` (the three
  convolutions and the projection head's first linear layer; the same positions in ``small-nobn``), at
  initialisation (the run's seed, as training.pretrain builds it) and at the end; ``w_growth = w_end / w_init``;
* ``diverged``: the loss became non-finite (training.pretrain's ``last_good.pt``); such a run has NaN geometry.

:func:`run_row` keeps its numbers in ``RUN/rung3_end.json`` (recomputed when the checkpoint is newer).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from clop.util.io import atomic_write_text
from training.engine.build import build_model
from training.engine.rundir import CHECKPOINT, PROBE_RESULT
from training.eval.evaluate import embed, load_heldout
from training.eval.linear import load_config, load_run
from training.practice.run import diverged

__all__ = [
    "BOOTSTRAPS",
    "CACHE",
    "CHANCE",
    "COLLAPSE_MU",
    "MEASURES",
    "invariant_positions",
    "run_row",
    "unit_metrics",
    "weight_norm",
]

COLLAPSE_MU = 0.998
"""mu >= this is complete collapse: mu_norm >= 0.999 (training.pretrain's threshold) gives mu >= 0.998."""
CHANCE = 0.1
MEASURES = ("diverged", "mu", "res_mu", "mu_norm", "res_mu_norm", "collapsed", "stable_rank", "top1", "w_init",
            "w_end", "w_growth")
CACHE = "rung3_end.json"
BOOTSTRAPS = 200


def invariant_positions(model: nn.Module) -> list[nn.Parameter]:
    """The weights of the encoder's convolutions and of the projection head's first linear layer: the
    positions that feed a BatchNorm in ``--arch small`` (module docstring)."""
    convs = [m.weight for m in model.encoder.modules() if isinstance(m, nn.Conv2d)]
    return convs + [model.head[0].weight]


def weight_norm(model: nn.Module) -> float:
    """The joint Frobenius norm of :func:`invariant_positions`."""
    return float(torch.sqrt(sum(p.detach().double().pow(2).sum() for p in invariant_positions(model))))


def unit_metrics(z, y, k: int, seed: int, boots: int = BOOTSTRAPS) -> dict[str, float]:
    """mu, res_mu, mu_norm, res_mu_norm, collapsed and stable_rank of embeddings z: (N, D), labels y: (N,) in
    0..k-1. The bootstrap redraws the images of each class with replacement, ``boots`` times, from
    ``numpy.random.default_rng(seed)`` (the resampling of :func:`training.practice.endgeom.end_geometry`)."""
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y)
    if z.ndim != 2 or y.shape != (z.shape[0],):
        raise ValueError(f"z must be (N, D) and y (N,); got {z.shape} and {y.shape}")
    nan = {"mu": math.nan, "res_mu": math.nan, "mu_norm": math.nan, "res_mu_norm": math.nan, "collapsed": False,
           "stable_rank": math.nan}
    if not np.isfinite(z).all():
        return nan
    n = len(y)
    u = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-300)
    mu_norm = float(np.linalg.norm(u.mean(axis=0)))
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(y == i) for i in range(k)]
    idx = np.concatenate([m[rng.integers(0, len(m), (boots, len(m)))] for m in members if len(m)], axis=1)
    res = float(np.linalg.norm(u[idx].mean(axis=1), axis=1).std(ddof=1))
    mu = (n * mu_norm**2 - 1) / (n - 1)
    s = np.linalg.svd(u, compute_uv=False)
    return {"mu": mu, "res_mu": 2 * mu_norm * res * n / (n - 1), "mu_norm": mu_norm, "res_mu_norm": res,
            "collapsed": bool(mu >= COLLAPSE_MU), "stable_rank": float((s**2).sum() / s[0] ** 2)}


def _initial_norm(run: Path) -> float:
    cfg = load_config(run)
    torch.manual_seed(cfg.seed)  # as training.engine.loop builds the network
    return weight_norm(build_model(cfg))


def run_row(run: str | Path) -> dict[str, object]:
    """:data:`MEASURES` of a finished or diverged run folder (module docstring)."""
    run = Path(run)
    w_init = _initial_norm(run)
    if diverged(run):
        return {"diverged": True, "mu": math.nan, "res_mu": math.nan, "mu_norm": math.nan, "res_mu_norm": math.nan,
                "collapsed": False, "stable_rank": math.nan, "top1": CHANCE, "w_init": w_init, "w_end": math.nan,
                "w_growth": math.nan}
    cache = run / CACHE
    if cache.is_file() and cache.stat().st_mtime_ns >= (run / CHECKPOINT).stat().st_mtime_ns:
        try:
            saved = json.loads(cache.read_text())
            if set(saved) == set(MEASURES):
                return {k: math.nan if saved[k] is None else saved[k] for k in MEASURES}
        except (OSError, ValueError):
            pass
    cfg, model, _ = load_run(run, torch.device("cpu"))
    held = load_heldout(cfg)
    z = embed(model, held.x, torch.device("cpu"))[1]
    row: dict[str, object] = {"diverged": False, **unit_metrics(z.numpy(), held.y.numpy(), held.k, cfg.seed)}
    row["top1"] = float(json.loads((run / PROBE_RESULT).read_text())["top1"])
    row["w_init"], row["w_end"] = w_init, weight_norm(model)
    row["w_growth"] = row["w_end"] / w_init
    row = {k: row[k] for k in MEASURES}
    atomic_write_text(cache, json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                                         for k, v in row.items()}))
    return row
