"""Tests of simulations.lclass.memory (and clop.util.memory.format_bytes): the estimates follow the shapes."""

from __future__ import annotations

import torch

from clop.util.memory import format_bytes
from simulations.lclass import memory as mem


def test_memory_estimates_follow_the_tensor_shapes():
    cpu = torch.device("cpu")
    one = sum(mem.search_bytes([30], 1000, 100, 1, cpu))
    ten = sum(mem.search_bytes([30], 1000, 1000, 1, cpu))
    assert 9 < ten / one < 11  # linear in trials
    # at least the float64 starts themselves: trials x k x m x 8 bytes
    assert one > 100 * 30 * 1000 * 8
    # the default Figure 3 run is estimated at tens of MiB, not refused on any machine that runs the suite
    assert sum(mem.search_bytes(list(range(3, 101)), 100, 5, 1, cpu)) < 2**30
    assert format_bytes(1536) == "1.5 KiB" and format_bytes(3 * 2**50) == "3.0 PiB"
