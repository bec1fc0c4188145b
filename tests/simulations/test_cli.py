"""Tests of simulations.cli (the checks lr_bound.py and dimensional_collapse.py share through run_script): the
memory a run needs and an --out that cannot be written are refused before any compute, with the flags,
the estimate and what is available in the message.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import clop.util.memory
from simulations import dimensional_collapse, lr_bound
from tests.helpers import no_compute, refused


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One torch thread (tests/conftest.py), as the scripts use by default."""


def test_memory_refusal_names_the_estimate_and_the_available_memory(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(lr_bound, "spectra_table", no_compute)
    line = refused(lr_bound.main, ["--m", "100000000", "--out", str(tmp_path)], capsys)
    assert "TiB of memory" in line
    assert "is available" in line and "--ks 3..100 (98 values)" in line
    # refusal decided by the estimate against what is available: pretend 1 MiB is left
    monkeypatch.setattr(clop.util.memory, "host_available", lambda: (2**20, "test"))
    line = refused(lr_bound.main, ["--out", str(tmp_path)], capsys)
    assert "but 1.0 MiB is available (test)" in line
    line = refused(dimensional_collapse.main, ["--out", str(tmp_path)], capsys)
    assert "but 1.0 MiB is available (test)" in line and "--trials 10" in line
    assert not any(tmp_path.iterdir())  # refused before --out was touched


@pytest.mark.parametrize("kind", ["file", "read-only"])
def test_out_that_cannot_be_written_is_refused_before_compute(kind, tmp_path, monkeypatch, capsys):
    import clop.util.io

    target = tmp_path / "out"
    if kind == "file":
        target.write_text("not a folder")
        expected = f"--out {str(target)!r} is a file"
    else:  # root ignores permission bits, so refuse the write itself
        target.mkdir()
        real = clop.util.io.tempfile.mkstemp

        def mkstemp(*args, dir=None, **kwargs):
            if Path(dir) == target:
                raise PermissionError(13, "Permission denied")
            return real(*args, dir=dir, **kwargs)

        monkeypatch.setattr(clop.util.io.tempfile, "mkstemp", mkstemp)
        expected = f"--out {str(target)!r} cannot be written: Permission denied"
    monkeypatch.setattr(lr_bound, "spectra_table", no_compute)
    monkeypatch.setattr(dimensional_collapse, "figure4_table", no_compute)
    assert expected in refused(lr_bound.main, ["--out", str(target)], capsys)
    assert expected in refused(dimensional_collapse.main, ["--out", str(target)], capsys)
