"""A test-only entry point: ``python -m training.pretrain``'s command line whose step sends this process SIGSTOP
on its N-th call (N from the environment variable CLOP_TEST_STOP_AT), i.e. before that step and after every
checkpoint of the steps before it. tests/training/engine/test_resume.py then kills it with SIGKILL.

    python -m tests.training.engine.stopping_pretrain PRETRAIN_FLAGS...
"""

from __future__ import annotations

import os
import signal
import sys

from training.engine.steps import forward_loss
from training.pretrain import main


def stopping_step(stop_at: int):
    """:func:`training.engine.steps.forward_loss`, but its ``stop_at``-th call first stops this process."""
    calls = [0]

    def step(*args, **kwargs):
        calls[0] += 1
        if calls[0] == stop_at:
            os.kill(os.getpid(), signal.SIGSTOP)
        return forward_loss(*args, **kwargs)

    return step


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], step=stopping_step(int(os.environ["CLOP_TEST_STOP_AT"]))))
