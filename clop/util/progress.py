"""Progress bars for people, not for log files.

:func:`progress_bar` is tqdm when standard error is a terminal and a silent stand-in otherwise, so a run whose
output goes to a file or a CI log gets no carriage-return updates; scripts that run long print one line per
finished stage instead (see their ``--no-progress`` flags).
"""

from __future__ import annotations

import sys

__all__ = ["interactive", "progress_bar"]


def interactive() -> bool:
    """True when standard error is a terminal (a person is watching)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def progress_bar(*args, enabled: bool = True, **kwargs):
    """``tqdm(*args, **kwargs)``, disabled unless ``enabled`` and standard error is a terminal."""
    from tqdm.auto import tqdm

    return tqdm(*args, disable=not (enabled and interactive()), **kwargs)
