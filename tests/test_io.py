"""Tests of clop._io (crash-safe file output): its docstring examples run and pass.

``python -m doctest clop/_io.py`` would import the file as a top-level module ``_io`` and shadow the
standard library's ``_io``; importing it as ``clop._io`` avoids that.
"""

from __future__ import annotations

import doctest

import clop._io as io_module


def test_doctests():
    result = doctest.testmod(io_module)
    assert result.attempted > 0 and result.failed == 0
