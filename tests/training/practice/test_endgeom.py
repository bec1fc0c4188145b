"""The end-of-run geometry and its bootstrap resolution (training.practice.endgeom) on constructed embeddings, and
the class-mean shape behind it (training.eval.geometry.class_mean_shape) on exact configurations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clop.prototypes import orthonormal, simplex_etf
from training.eval.geometry import class_mean_shape
from training.practice.endgeom import END_COLUMNS, end_geometry


def test_shape_of_exact_configurations():
    k, d = 10, 32
    etf = class_mean_shape(simplex_etf(k, d, seed=0, dtype=torch.float64, device="cpu"))
    assert etf["sum_norm"] < 1e-12 and etf["sv_min_ratio"] < 1e-12 and etf["sv_next_ratio"] == pytest.approx(1.0)
    assert etf["cos_mean"] == pytest.approx(-1 / (k - 1)) and etf["cos_std"] < 1e-12
    assert etf["abs_cos_mean"] == pytest.approx(1 / (k - 1))
    ortho = class_mean_shape(orthonormal(k, d, seed=0, dtype=torch.float64, device="cpu"))
    assert ortho["sum_norm"] == pytest.approx(math.sqrt(k)) and ortho["sv_min_ratio"] == pytest.approx(1.0)
    assert ortho["abs_cos_mean"] < 1e-12
    same = class_mean_shape(np.ones((k, d)))
    assert same["sum_norm"] == pytest.approx(k) and same["sv_next_ratio"] < 1e-12 and same["cos_mean"] == pytest.approx(1)
    assert all(math.isnan(v) for v in class_mean_shape(np.vstack([np.ones((k - 1, d)), np.full((1, d), np.nan)])).values())


def _embeddings(per_class: int, seed: int, collapsed: bool = False, noise: float = 0.15):
    g = np.random.default_rng(seed)
    k, d = 10, 32
    centres = simplex_etf(k, d, seed=0, dtype=torch.float64, device="cpu").numpy()
    if collapsed:
        centres = np.repeat(centres[:1], k, axis=0)
    y = np.repeat(np.arange(k), per_class)
    return centres[y] + noise * g.standard_normal((y.size, d)), y


def test_end_geometry_values_and_bootstrap_resolution():
    z, y = _embeddings(36, 0)
    out = end_geometry(z, y, 10, boots=100, seed=3)
    assert set(out) == set(END_COLUMNS)
    assert out["end_sum_norm"] < 1.0 and out["end_sv_min_ratio"] < 0.1 < out["end_sv_next_ratio"]
    assert all(out[f"res_{k}"] > 0 for k in ("mu_norm", "sum_norm", "sv_min_ratio", "abs_cos_mean"))
    assert out == end_geometry(z, y, 10, boots=100, seed=3)  # seeded
    big = end_geometry(*_embeddings(36 * 16, 0), 10, boots=100, seed=3)  # 16 x the images: a smaller spread
    for key in ("mu_norm", "sum_norm", "sv_next_ratio", "abs_cos_mean"):
        assert 0 < big[f"res_{key}"] < 0.5 * out[f"res_{key}"], key
    col = end_geometry(*_embeddings(36, 1, collapsed=True, noise=0.02), 10, boots=50)
    assert col["end_mu_norm"] > 0.9 and col["end_sum_norm"] > 9 and col["end_abs_cos_mean"] > 0.9


def test_end_geometry_refusals_and_nan():
    z, y = _embeddings(5, 0)
    bad = z.copy()
    bad[0, 0] = np.nan
    assert all(math.isnan(v) for v in end_geometry(bad, y, 10, boots=5).values())
    with pytest.raises(ValueError, match="lacks the class"):
        end_geometry(z[y != 3], y[y != 3], 10, boots=5)
    with pytest.raises(ValueError, match="boots"):
        end_geometry(z, y, 10, boots=1)
