"""Checks on digit images shared by the digits and loader tests: an asymmetric template and a mirror test."""

from __future__ import annotations

import numpy as np
import torch

from training.data.catalog import DATASET_INFO

INFO = DATASET_INFO["digits"]

# An "F": no shift of its mirror images (left-right, up-down, both) lines up with it.
F_SHAPE = np.array([
    [0, 0, 0, 0, 0, 0, 0, 0],
    [0, 1, 1, 1, 1, 1, 1, 0],
    [0, 1, 0, 0, 0, 0, 0, 0],
    [0, 1, 0, 0, 0, 0, 0, 0],
    [0, 1, 1, 1, 1, 0, 0, 0],
    [0, 1, 0, 0, 0, 0, 0, 0],
    [0, 1, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0],
], dtype=np.float32)


def shifted(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(a)
    h, w = a.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = a[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def match(view: np.ndarray, template: np.ndarray, reach: int = 2) -> float:
    """Best Pearson correlation of ``view`` with ``template`` shifted by up to ``reach`` px per axis."""
    best = -1.0
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            t = shifted(template, dy, dx)
            if t.std() > 0:
                best = max(best, float(np.corrcoef(view.ravel(), t.ravel())[0, 1]))
    return best


def looks_mirrored(view: np.ndarray, template: np.ndarray) -> bool:
    """Whether a view matches a mirror image of ``template`` (under any shift of up to 2 px) at least as
    well as ``template`` itself."""
    mirrors = (template[:, ::-1], template[::-1, :], template[::-1, ::-1])
    return max(match(view, m) for m in mirrors) >= match(view, template)


def grey_view(x: torch.Tensor) -> np.ndarray:
    """A normalised (3, S, S) view back on the [0, 1] scale, first channel."""
    mean = torch.tensor(INFO.mean).view(3, 1, 1)
    std = torch.tensor(INFO.std).view(3, 1, 1)
    return (x * std + mean)[0].numpy()
