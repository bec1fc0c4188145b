"""Command-line helpers shared by every entry point of the suite.

Every setting is checked before any compute, and a bad one ends the program with a one-line message that
names the flag, the value received and what is accepted (``parser.error``: exit status 2), never a
traceback (scikit-learn's style of error messages).
"""

from __future__ import annotations

import argparse
import errno
import math
import sys
from collections.abc import Callable, Sequence

import torch

from clop.util.checks import check_distinct
from clop.util.device import default_device
from clop.util.io import WriteFailedError

__all__ = ["HelpFormatter", "check_device", "parse_device", "check_int", "check_positive_float", "check_unique",
           "run_main", "INTERRUPTED_EXIT", "WRITE_FAILED_EXIT"]

INTERRUPTED_EXIT = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""
WRITE_FAILED_EXIT = 1
"""Exit status when an output could not be written (a full disk, a file-size limit)."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" except where the default is None (those flags say in words what they default to)
    and for switches (store_true / store_false: "(default: True)" beside ``--no-x`` would read as the switch
    being on; their help says what they change)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.nargs == 0:
            return action.help or ""
        return super()._get_help_string(action)


def check_device(device: str | torch.device | None, name: str = "device") -> torch.device:
    """The torch device of a ``--device`` value (None: CUDA when present, else the CPU).

    ValueError naming ``name`` for anything but 'cpu', 'cuda' or 'cuda:N' with N a CUDA device of this
    machine ('meta', 'mps' and other torch device types are refused: the suite runs on CPUs and CUDA).
    """
    try:
        dev = default_device(device)
    except ValueError as exc:
        raise ValueError(str(exc).replace("device=", f"{name}=", 1)) from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{name}={device!r} is not supported; expected 'cpu', 'cuda' or 'cuda:N'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise ValueError(f"{name}={device!r}: this machine has {n} CUDA device(s); expected 'cpu', 'cuda' or "
                         f"'cuda:N' with N in 0..{n - 1}")
    return dev


def parse_device(parser: argparse.ArgumentParser, value: str | None, flag: str = "--device") -> torch.device:
    """``--device`` as a torch.device (:func:`check_device`), or ``parser.error`` naming ``flag``."""
    try:
        return check_device(value, flag)
    except ValueError as exc:
        parser.error(str(exc))


def check_int(parser: argparse.ArgumentParser, flag: str, value: int, minimum: int) -> None:
    """``parser.error`` unless the integer flag value is >= ``minimum``."""
    if value < minimum:
        parser.error(f"{flag} must be an integer >= {minimum}; got {value}")


def check_positive_float(parser: argparse.ArgumentParser, flag: str, value: float, below: float | None = None,
                         why: str = "") -> None:
    """``parser.error`` unless the float flag value is finite, > 0 (and < ``below`` when given)."""
    if not (math.isfinite(value) and value > 0 and (below is None or value < below)):
        allowed = "a finite number > 0" if below is None else f"a finite number in (0, {below:g})"
        parser.error(f"{flag} must be {allowed}{why}; got {value}")


def check_unique(parser: argparse.ArgumentParser, flag: str, values: Sequence) -> None:
    """``parser.error`` when ``values`` repeats an item (:func:`clop.util.checks.check_distinct`)."""
    try:
        check_distinct(flag, values)
    except ValueError as exc:
        parser.error(str(exc))


def run_main(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None, *,
             interrupted: str = "interrupted; no output was changed (every file is replaced only when complete)") -> int:
    """``main(argv)`` as a command line runs it: Ctrl-C prints ``interrupted`` and exits with status 130, and an
    output that cannot be written (full disk, file-size limit) prints one line naming it and exits with status 1,
    instead of a traceback."""
    try:
        rc = main(argv)
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return INTERRUPTED_EXIT
    except WriteFailedError as exc:
        print(f"error: {exc.strerror}", file=sys.stderr)
        return WRITE_FAILED_EXIT
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise
        where = f" {exc.filename!r}" if exc.filename else ""
        print(f"error: cannot write{where}: {exc.strerror}", file=sys.stderr)
        return WRITE_FAILED_EXIT
    return 0 if rc is None else int(rc)
