"""A stand-in for a killed process in the in-process resume tests."""

from __future__ import annotations


class Killed(BaseException):
    """Stands for the process being killed: not an Exception, so nothing in the run catches it."""


def dies_at(n: int, fn):
    """``fn`` wrapped so that its ``n``-th call raises :class:`Killed` instead of running (calls counted from 1)."""
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise Killed
        return fn(*args, **kwargs)

    return dying
