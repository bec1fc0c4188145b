"""``python -m training.rung3``: see :mod:`training.rung3.cli`."""

from training.rung3.cli import cli

raise SystemExit(cli())
