"""Shared by the rung 3 and rung 4 tests."""

from __future__ import annotations

import pytest

from training.rung3 import cli
from training.rung3.grid import NetworkRung


def one_line_refusal(argv: list[str], rung: NetworkRung, capsys, tmp_path) -> str:
    """The error line of ``rung``'s command line refusing ``argv``: exit status 2, exactly one
    ``<command>: error`` line on stderr, and no runs folder created. Returns that line."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--ladder-rows", "", *argv],
                 rung=rung)
    assert exc.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith(f"{rung.command}: error")]
    assert len(err) == 1
    assert not (tmp_path / "runs").exists()
    return err[0]
