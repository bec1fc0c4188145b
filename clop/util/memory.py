"""Memory available to a run, and the check that refuses a run whose estimated need exceeds it.

A script estimates the memory its tensors will take right after parsing its flags and asks
:func:`check_fits` before it allocates anything, so that a size that cannot fit is refused with the
estimate and what is available, instead of dying in the allocator after minutes of work.

Available memory: ``MemAvailable`` of ``/proc/meminfo`` (else physical memory, ``os.sysconf``) for the
host; ``torch.cuda.mem_get_info`` (free bytes) for a CUDA device.
"""

from __future__ import annotations

import os

import torch

__all__ = ["host_available", "available_bytes", "format_bytes", "check_fits"]


def host_available() -> tuple[int, str]:
    """(bytes, where the number comes from) of host memory available now."""
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
    return host_available()


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; binary units up to PiB, then EiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"


def check_fits(host: int, device: int, dev: torch.device, settings: str, dtype: str = "float64") -> str | None:
    """None when an estimated (host, device) need in bytes fits, else a one-line message naming ``settings``
    (the flags that set the size).

    On CPU both parts live in host memory. ``dtype`` names the tensors the estimate counts, for the message.
    """
    need_host = host + (device if dev.type != "cuda" else 0)
    avail, where = host_available()
    if need_host > avail:
        return (f"this run ({settings}) needs about {format_bytes(need_host)} of memory (estimated from its {dtype} "
                f"tensors) but {format_bytes(avail)} is available ({where}); reduce these sizes")
    if dev.type == "cuda":
        avail, where = available_bytes(dev)
        if device > avail:
            return (f"this run ({settings}) needs about {format_bytes(device)} on {dev} (estimated from its {dtype} "
                    f"tensors) but {format_bytes(avail)} is free ({where}); reduce these sizes")
    return None
