"""``python -m training.pretrain``: one pre-training run of the CLOP paper's Section 5 (arXiv 2403.18699) into a
run folder: ResNet-50 in the SimCLR framework, with or without CLOP.

    python -m training.pretrain --dataset cifar100 --data-root DATA --loss infonce --label-fraction 0.1
    python -m training.pretrain --smoke            # a few steps on generated data, on the CPU
    python -m training.pretrain --dataset digits --arch small --device cpu   # real 8x8 digits, on a CPU
    torchrun --nproc-per-node 8 -m training.pretrain ...   # several GPUs (training.engine.distributed)
    python -m training.pretrain ... --resume       # continue a killed run exactly where it stopped

The flags and their defaults are the fields of :class:`training.config.PretrainConfig`; the loop is
:func:`training.engine.loop.pretrain`. Exit status: 0 done (the run folder is printed), 2 a refused setting or
folder (one line on stderr), :data:`NONFINITE_EXIT` when the loss became NaN or infinite (the state before
that step is in last_good.pt).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from clop.util.lock import FolderLockedError
from training.config import config_from_args
from training.data.catalog import DatasetNotFoundError
from training.engine.distributed import PeerFailedError
from training.engine.loop import NonFiniteLossError, Step, pretrain
from training.engine.steps import forward_loss

NONFINITE_EXIT = 3
"""The exit status of :func:`main` when the loss became NaN or infinite."""


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


if __name__ == "__main__":
    raise SystemExit(main())
