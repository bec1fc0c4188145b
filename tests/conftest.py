"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch


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
