"""``python -m training.pretrain``: one pre-training run of the CLOP paper's Section 5 (arXiv 2403.18699) into a
run folder: ResNet-50 in the SimCLR framework, with or without CLOP.

    python -m training.pretrain --dataset cifar100 --data-root DATA --loss infonce --label-fraction 0.1
    python -m training.pretrain --smoke            # a few steps on generated data, on the CPU
    python -m training.pretrain --dataset digits --arch small --device cpu   # real 8x8 digits, on a CPU
    torchrun --nproc-per-node 8 -m training.pretrain ...   # several GPUs (training.engine.distributed)
    python -m training.pretrain ... --resume       # continue a killed run exactly where it stopped

The flags and their defaults are the fields of :class:`training.config.PretrainConfig`; the loop is
:func:`training.engine.loop.pretrain`. Exit status: 0 done (the run folder is printed), 2 a refused setting,
folder, dataset or checkpoint, or a run that cannot fit in memory (one line on stderr), :data:`NONFINITE_EXIT`
when the loss became NaN or infinite (the state before that step is in last_good.pt), 1 when a file could not
be written (a full disk, a file-size limit; the files in place are intact), 130 after Ctrl-C (:func:`cli`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from clop.util.cli import run_main
from clop.util.lock import FolderLockedError
from training.config import config_from_args
from training.data.catalog import DatasetNotFoundError
from training.engine.distributed import PeerFailedError
from training.engine.loop import NonFiniteLossError, Step, pretrain
from training.engine.steps import forward_loss

NONFINITE_EXIT = 3
"""The exit status of :func:`main` when the loss became NaN or infinite."""
INTERRUPTED = "interrupted; the last checkpoint is kept: --resume continues"
"""What :func:`cli` prints after Ctrl-C."""


def main(argv: Sequence[str] | None = None, *, step: Step = forward_loss) -> int:
    """Run the command line ``argv``; ``step``: the loss of one training step (see training.engine.loop)."""
    cfg, args = config_from_args(argv)
    try:
        run = pretrain(cfg, progress=not args.no_progress, step=step)
    except (ValueError, FileExistsError, DatasetNotFoundError, FolderLockedError, PeerFailedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLossError as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return NONFINITE_EXIT
    print(run)
    return 0


def cli(argv: Sequence[str] | None = None, *, step: Step = forward_loss) -> int:
    """:func:`main` as the command line runs it (:func:`clop.util.cli.run_main`): Ctrl-C prints :data:`INTERRUPTED`
    (exit 130), a file that cannot be written one line naming it (exit 1), never a traceback."""
    return run_main(lambda a: main(a, step=step), argv, interrupted=INTERRUPTED)


if __name__ == "__main__":
    raise SystemExit(cli())
