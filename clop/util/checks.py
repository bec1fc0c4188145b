"""Argument validation shared by clop.losses, clop.metrics and clop.prototypes.

scikit-learn style: a bad argument fails at once with a ``ValueError`` whose message starts with the
argument's name, then says what is accepted and the value received, e.g.
``"temperature must be a finite real number > 0; got -0.5"``. Pure Python: no tensor is touched, so
none of these checks synchronises a device.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import torch

__all__ = ["check_positive", "check_nonnegative", "check_size", "check_choice", "check_distinct", "check_dtype"]


def is_finite_real(value: object) -> bool:
    """A finite real number (Python or numpy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def is_integer(value: object) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive(name: str, value: object) -> float:
    """``value`` as a float if it is a finite real number > 0, else ``ValueError`` naming ``name``."""
    if is_finite_real(value) and value > 0:
        return float(value)
    raise ValueError(f"{name} must be a finite real number > 0; got {value!r}")


def check_nonnegative(name: str, value: object) -> float:
    """``value`` as a float if it is a finite real number >= 0, else ``ValueError`` naming ``name``."""
    if is_finite_real(value) and value >= 0:
        return float(value)
    raise ValueError(f"{name} must be a finite real number >= 0; got {value!r}")


def check_size(name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int if it is an integer (Python or numpy, not bool) >= ``minimum``."""
    if not is_integer(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """``value`` lower-cased if it is one of ``choices`` (case-insensitive)."""
    if not isinstance(value, str) or value.lower() not in choices:
        raise ValueError(f"{name}={value!r} is not supported; expected one of {list(choices)}")
    return value.lower()


def check_distinct(name: str, values: Iterable) -> None:
    """ValueError when ``values`` repeats an item (a repeated seed or loss would be run and counted twice)."""
    seen, repeated = set(), []
    for v in values:
        if v in seen and v not in repeated:
            repeated.append(v)
        seen.add(v)
    if repeated:
        raise ValueError(f"{name} repeats {', '.join(map(str, repeated))}; give each value once")


def check_dtype(dtype: object, name: str = "dtype") -> torch.dtype:
    """``dtype`` if it is a floating-point :class:`torch.dtype`."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating-point torch.dtype (e.g. torch.float32); got {dtype!r}")
    return dtype
