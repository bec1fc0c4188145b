"""The class geometry of a finished run's held-out images, with its resolution from a bootstrap over the images.

Paper: "Preventing collapse in contrastive learning with orthonormal prototypes" (CLOP), arXiv 2403.18699
(Theorem 1's mu; Sec. 3.2's zero-mean subspace of rank k - 1; Sec. 4's "more orthogonal" classes).

A geometry finding of the practice study is a sample over seeds of one number per run, measured on the 359
held-out test images of digits. Those images are a sample too: another draw of them would move each run's
number by about its bootstrap standard deviation, which is the smallest spread over seeds that means anything
(the resolution that :func:`clop.stats.paired_gain` floors the spread at).

* :func:`end_geometry` - embeddings z: (N, D), labels y: (N,) in 0..k-1 -> ``end_<key>`` (the value on all
  images) and ``res_<key>`` (the standard deviation over ``boots`` bootstrap samples that redraw the images of
  each class with replacement, :data:`BOOTSTRAPS` by default, ``numpy.random.default_rng(seed)``) for every
  key of :data:`END_KEYS`: ``mu_norm`` (the norm of the mean unit embedding, Theorem 1's mu; >= 0.999 is
  training.pretrain's complete collapse) and the keys of :func:`training.eval.geometry.class_mean_shape`.
* :func:`run_end_geometry` - the same for a run folder: the network of its last checkpoint
  (:func:`training.eval.linear.load_run`, on the CPU), its held-out images
  (:func:`training.eval.evaluate.load_heldout`), embedded in eval mode (:func:`training.eval.evaluate.embed`).

Everything is computed in float64 from the float32 embeddings; the same run and seed give the same numbers.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from training.eval.evaluate import embed, load_heldout
from training.eval.geometry import class_mean_shape
from training.eval.linear import load_run

__all__ = ["END_KEYS", "END_COLUMNS", "BOOTSTRAPS", "end_geometry", "run_end_geometry"]

END_KEYS = ("mu_norm", "sum_norm", "sv_min_ratio", "sv_next_ratio", "cos_mean", "cos_std", "abs_cos_mean")
END_COLUMNS = tuple(f"{p}_{k}" for k in END_KEYS for p in ("end", "res"))
"""Columns of the practice study's per-run table: ``end_<key>`` then ``res_<key>`` for each key."""
BOOTSTRAPS = 200


def _unit(x: torch.Tensor) -> torch.Tensor:
    n = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    return x / torch.where(n > 0, n, torch.ones_like(n))


def _values(u: torch.Tensor, y: torch.Tensor, k: int) -> dict[str, float]:
    means = torch.stack([u[y == i].mean(dim=0) for i in range(k)])
    return {"mu_norm": float(torch.linalg.vector_norm(u.mean(dim=0))), **class_mean_shape(_unit(means))}


def end_geometry(z, y, k: int, *, boots: int = BOOTSTRAPS, seed: int = 0) -> dict[str, float]:
    """``end_<key>`` and ``res_<key>`` for :data:`END_KEYS` (module docstring); z: (N, D), y: (N,) with every
    class 0..k-1 present. Non-finite embeddings (a diverged run) give NaN everywhere."""
    zt = torch.as_tensor(np.asarray(z), dtype=torch.float64)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.long)
    if zt.dim() != 2 or yt.shape != (zt.shape[0],):
        raise ValueError(f"z must be (N, D) and y (N,); got {tuple(zt.shape)} and {tuple(yt.shape)}")
    if boots < 2:
        raise ValueError(f"boots must be an integer >= 2; got {boots!r}")
    missing = [i for i in range(k) if not bool((yt == i).any())]
    if missing:
        raise ValueError(f"y lacks the class(es) {missing}; every class 0..{k - 1} needs held-out images")
    out = {c: math.nan for c in END_COLUMNS}
    if not bool(torch.isfinite(zt).all()):
        return out
    u = _unit(zt)
    rng = np.random.default_rng(seed)
    members = [torch.as_tensor(np.flatnonzero(yt.numpy() == i)) for i in range(k)]
    draws = []
    for _ in range(boots):
        idx = torch.cat([m[torch.as_tensor(rng.integers(0, len(m), len(m)))] for m in members])
        draws.append(_values(u[idx], yt[idx], k))
    for key, value in _values(u, yt, k).items():
        out[f"end_{key}"] = value
        out[f"res_{key}"] = float(np.std([d[key] for d in draws], ddof=1))
    return out


def run_end_geometry(run: str | Path, *, boots: int = BOOTSTRAPS) -> dict[str, float]:
    """:func:`end_geometry` of the held-out images of the finished run in ``run`` (its own seed draws the
    bootstrap)."""
    device = torch.device("cpu")
    cfg, model, _ = load_run(run, device)
    held = load_heldout(cfg)
    z = embed(model, held.x, device)[1]
    return end_geometry(z.numpy(), held.y.numpy(), held.k, boots=boots, seed=cfg.seed)
