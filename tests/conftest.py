"""Shared fixtures, and the torch threads of a parallel test run."""

from __future__ import annotations

import os

import pytest
import torch


def pytest_configure(config):
    """Under pytest-xdist, each of the W workers gets cpu_count // W torch threads (at least one), and so do the
    processes it starts (``OMP_NUM_THREADS``). torch's default, one thread per core in every worker, oversubscribes
    the cores W-fold, and its OpenMP threads then spin against each other: on 2 cores the ResNet-50 smoke run took
    23 s under two workers against 6 s alone. Only the speed changes: no test depends on the thread count (those
    that need one thread say so with :func:`one_thread`)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        threads = max(1, (os.cpu_count() or 1) // int(workers))
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests, restored afterwards.

    The tensors in most tests are small; on a shared 2-core CPU the OpenMP synchronisation per operation
    costs more than a second thread gains (and the scripts under test default to one thread too).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
