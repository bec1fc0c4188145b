"""Memory needed by a run of the L_class engine, estimated before anything is allocated.

The scripts of simulations/ and benchmarks/bench_lclass.py call :func:`check_fits` right after parsing
their flags, so that a size that cannot fit (``--m 100000000``, ``--trials 1000000000``) is refused with
the estimate and the memory available, instead of dying in the allocator after minutes of work.

What is counted (float64, 8 bytes a number; shapes from :mod:`simulations.lclass`):

* starts, on the host, one k at a time: ``initial_embeddings(k, m, T)`` draws T Gaussian (k, m) blocks,
  stacks and normalises them (three (T, k, m) arrays alive at once), and ``reduce_coordinates`` adds the
  (T, m, d) factor Q of the QR, d = min(k, m): ``8 T (3 k m + m d)`` bytes at the peak of the largest k;
* the reduced starts C0: (T, k, d) per k, kept for the whole search;
* the stacked state of one chunk, ``(B, K, D)``: at most the engine's chunk size (1 MiB on CPU, 1 GiB on
  CUDA), held about four times (the padded stack, its copy on the device, the working copy, the rows;
  the native CPU kernel holds one padded copy per group of runs of at most the same size);
* records of :func:`simulations.lclass.simulate`: (R, T, E[, d]) with R = steps / record_every + 2;
* Python bookkeeping per run (a tensor view, list entries, bracket history, one row of the result
  table): :data:`PER_RUN_BYTES` (and half of it per start), set from peak-RSS measurements of small-k
  searches and sweeps with 20 000 trials (1.5-1.7 KB a run).

The estimate is meant to be of the right order (tens of per cent), not exact: it decides only whether a
run is hopeless. Available memory: ``MemAvailable`` of ``/proc/meminfo`` (else physical memory,
``os.sysconf``) for the host; ``torch.cuda.mem_get_info`` (free bytes) for a CUDA device.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from simulations.lclass_engine import _CPU_CHUNK_BYTES, _CUDA_CHUNK_BYTES

__all__ = [
    "PER_RUN_BYTES",
    "starts_bytes",
    "simulate_bytes",
    "search_bytes",
    "sweep_bytes",
    "available_bytes",
    "format_bytes",
    "check_fits",
]

PER_RUN_BYTES = 1536
"""Python-side bookkeeping per run, in bytes (see the module docstring)."""

_F64 = 8
_CHUNK_COPIES = 4


def _chunk(dev: torch.device, state_bytes: int) -> int:
    cap = _CUDA_CHUNK_BYTES if dev.type == "cuda" else _CPU_CHUNK_BYTES
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
    """(host, device) bytes of :func:`simulations.lclass.simulate` with these arguments, and of its final
    embeddings in R^m (``SimulationResult.embeddings``, used by the Figure 4 script)."""
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
    """(host, device) bytes of :func:`simulations.lclass.max_stable_lr` over ``ks`` x ``trials``: the starts,
    the bookkeeping of the largest round (``grid`` etas per bracket, 2 in the first) and the chunk state."""
    runs = len(ks) * trials * max(2, grid)
    host = starts_bytes(ks, m, trials) + PER_RUN_BYTES * runs
    state = _F64 * runs * max(ks) * min(max(ks), m)
    return host, _chunk(dev, state)


def sweep_bytes(ks: Sequence[int], m: int, n_etas: int, trials: int, dev: torch.device) -> tuple[int, int]:
    """(host, device) bytes of :func:`simulations.lclass.sweep`: starts, per-run bookkeeping, chunk state."""
    runs = len(ks) * trials * n_etas
    host = starts_bytes(ks, m, trials) + PER_RUN_BYTES * runs
    state = _F64 * runs * max(ks) * min(max(ks), m)
    return host, _chunk(dev, state)


def _host_available() -> tuple[int, str]:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "physical memory (os.sysconf)"
    except (ValueError, OSError, AttributeError):
        return 2**63 - 1, "unknown (not checked)"


def available_bytes(dev: torch.device) -> tuple[int, str]:
    """(bytes, where the number comes from) available on ``dev``: host memory for CPU, free memory for CUDA."""
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        return int(free), f"free memory of {dev} (torch.cuda.mem_get_info)"
    return _host_available()


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; binary units up to PiB, then EiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"


def check_fits(host: int, device: int, dev: torch.device, settings: str, dtype: str = "float64") -> str | None:
    """None when an estimated (host, device) need fits, else a one-line message naming ``settings``.

    On CPU both parts live in host memory. Called before any allocation. ``dtype`` names the tensors the
    estimate counts (the L_class engine's are float64, the synthetic FFN's float32).
    """
    need_host = host + (device if dev.type != "cuda" else 0)
    avail, where = _host_available()
    if need_host > avail:
        return (f"this run ({settings}) needs about {format_bytes(need_host)} of memory (estimated from its {dtype} "
                f"tensors) but {format_bytes(avail)} is available ({where}); reduce these sizes")
    if dev.type == "cuda":
        avail, where = available_bytes(dev)
        if device > avail:
            return (f"this run ({settings}) needs about {format_bytes(device)} on {dev} (estimated from its {dtype} "
                    f"tensors) but {format_bytes(avail)} is free ({where}); reduce these sizes")
    return None
