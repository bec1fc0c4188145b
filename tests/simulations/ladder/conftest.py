"""Fixtures of the ladder's tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def functorch_loaded():
    """Load torch.func's transforms once (their first use imports several seconds of modules), so that the
    time is not charged to whichever test happens to run first."""
    torch.func.hessian(lambda x: (x**3).sum())(torch.ones(2, dtype=torch.float64))
    torch.func.vmap(torch.func.grad(lambda x: (x**2).sum()))(torch.ones(2, 2, dtype=torch.float64))
