"""Fixtures shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.data.cifar import write_synthetic_cifar


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    """A ``--data-root`` holding the generated synthetic set, written once for the whole session (the tests only
    read it: the default set, seed 0, as ``load_dataset("synthetic", ...)`` would write it)."""
    root = tmp_path_factory.mktemp("synthetic-data")
    write_synthetic_cifar(root / "synthetic")
    return root
