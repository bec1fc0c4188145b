"""Rung 3 of the ladder: the digits CNN at large learning rates, with and without BatchNorm (docs/ladder.md)."""
