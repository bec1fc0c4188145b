"""``python -m training.practice``: see :mod:`training.practice.cli`."""

from training.practice.cli import cli

raise SystemExit(cli())
