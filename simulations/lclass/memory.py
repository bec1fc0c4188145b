"""Memory needed by a run of the L_class engine, estimated before anything is allocated.

The figure scripts and ``benchmarks/bench_lclass.py`` pass these estimates to
:func:`clop.util.memory.check_fits` right after parsing their flags, so that a size that cannot fit
(``--m 100000000``, ``--trials 1000000000``) is refused before any compute.

What is counted (float64, 8 bytes a number; shapes as in :mod:`simulations.lclass.simulate`):

* starts, on the host, one k at a time: ``initial_embeddings(k, m, T)`` draws T Gaussian (k, m) blocks,
  stacks and normalises them (three (T, k, m) arrays alive at once), and ``reduce_coordinates`` adds the
  (T, m, d) factor Q of the QR, d = min(k, m): ``8 T (3 k m + m d)`` bytes at the peak of the largest k;
* the reduced starts C0: (T, k, d) per k, kept for the whole search;
* the stacked state of one chunk, ``(B, K, D)``: at most the engine's chunk size
  (:data:`~simulations.lclass.engine.CPU_CHUNK_BYTES`, :data:`~simulations.lclass.engine.CUDA_CHUNK_BYTES`),
  held about four times (the padded stack, its copy on the device, the working copy, the rows; the native
  CPU kernel holds one padded copy per group of runs of at most the same size);
* records of :func:`simulations.lclass.simulate.simulate`: (R, T, E[, d]) with R = steps / record_every + 2;
* Python bookkeeping per run (a tensor view, list entries, bracket history, one row of the result
  table): :data:`PER_RUN_BYTES` (and half of it per start).

The estimate is meant to be of the right order (tens of per cent), not exact: it decides only whether a
run is hopeless.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from simulations.lclass.engine import CPU_CHUNK_BYTES, CUDA_CHUNK_BYTES

__all__ = ["PER_RUN_BYTES", "starts_bytes", "simulate_bytes", "search_bytes", "sweep_bytes"]

PER_RUN_BYTES = 1536
"""Python-side bookkeeping per run, in bytes: set from peak-RSS measurements of small-k searches and sweeps
with 20 000 trials (docs/simulations.md)."""

_F64 = 8
_CHUNK_COPIES = 4


def _chunk(dev: torch.device, state_bytes: int) -> int:
    cap = CUDA_CHUNK_BYTES if dev.type == "cuda" else CPU_CHUNK_BYTES
    return _CHUNK_COPIES * min(state_bytes, cap)


def starts_bytes(ks: Sequence[int], m: int, trials: int) -> int:
    """Host bytes of the starts of all ``ks``: the peak of the largest k plus the reduced starts kept for all."""
    peak = max(_F64 * trials * (3 * k * m + m * min(k, m)) for k in ks)
    kept = sum(_F64 * trials * k * min(k, m) for k in ks)
    return peak + kept + PER_RUN_BYTES // 2 * trials * len(ks)


def simulate_bytes(
    k: int, m: int, n_etas: int, trials: int, steps: int, record_every: int, record: Sequence[str],
    dev: torch.device,
) -> tuple[int, int]:
    """(host, device) bytes of :func:`~simulations.lclass.simulate.simulate` with these arguments, and of its
    final embeddings in R^m (``SimulationResult.embeddings``, used by the Figure 4 script)."""
    d = min(k, m)
    runs = trials * n_etas
    n_rec = steps // record_every + 2
    host = starts_bytes([k], m, trials)
    per_record = (1 if "mean_norm" in record else 0) + (1 if "l_class" in record else 0)
    per_record += d if "singular_values" in record else 0
    device = _F64 * (n_rec * runs * per_record + runs * k * d + runs * k * m + trials * m * d)
    device += _chunk(dev, _F64 * runs * k * d)
    return host, device


def search_bytes(ks: Sequence[int], m: int, trials: int, grid: int, dev: torch.device) -> tuple[int, int]:
    """(host, device) bytes of :func:`~simulations.lclass.search.max_stable_lr` over ``ks`` x ``trials``: the
    starts, the bookkeeping of the largest round (``grid`` etas per bracket, 2 in the first) and the chunk state."""
    runs = len(ks) * trials * max(2, grid)
    host = starts_bytes(ks, m, trials) + PER_RUN_BYTES * runs
    state = _F64 * runs * max(ks) * min(max(ks), m)
    return host, _chunk(dev, state)


def sweep_bytes(ks: Sequence[int], m: int, n_etas: int, trials: int, dev: torch.device) -> tuple[int, int]:
    """(host, device) bytes of :func:`~simulations.lclass.search.sweep`: starts, per-run bookkeeping, chunk state."""
    runs = len(ks) * trials * n_etas
    host = starts_bytes(ks, m, trials) + PER_RUN_BYTES * runs
    state = _F64 * runs * max(ks) * min(max(ks), m)
    return host, _chunk(dev, state)
