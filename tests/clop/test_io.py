"""Tests of clop.util.io (crash-safe file output): its docstring examples run and pass.

The module is imported as ``clop.util.io`` (not run through ``python -m doctest`` on the file), so its
examples see the package as a user does.
"""

from __future__ import annotations

import doctest

import clop.util.io as io_module


def test_doctests():
    result = doctest.testmod(io_module)
    assert result.attempted > 0 and result.failed == 0
