"""``python -m training.sweep NAME [options] [-- extra training.pretrain flags]``: one of the CLOP paper's grids
(arXiv 2403.18699, Sec. 5: Figs. 6-7, Tables 1-3) as pre-training + linear probe per point.

``NAME`` is one of :data:`training.sweeps.grid.SWEEPS` (batch-size, lr, lambda, similarity, augmentation); the
points, their run folders (``ROOT/NAME/DATASET/<variant>_<setting>_s<seed>``) and the launchers are in
:mod:`training.sweeps`. Every probe's row goes to ``ROOT/NAME/results.csv``. Flags after ``--`` go to every
pre-training command, after the sweep's own settings, so they override them.

Examples::

    python -m training.sweep batch-size --variants supcon100 supcon100-clop --seeds 0 1 2
    python -m training.sweep augmentation --launcher print > jobs.txt
    python -m training.sweep lr --dataset tiny-imagenet --data-root DATA -- --checkpoint-every 200 --workers 16
    # two nodes of 8 GPUs: the same line on each, with its --node-rank
    python -m training.sweep lr --launcher torchrun --nproc-per-node 8 --nnodes 2 --node-rank 0 --rdzv-endpoint gpu-a:29500
    python -m training.sweep batch-size --dataset synthetic --values 32 --variants supcon100-clop \\
        --root /tmp/sweeps -- --smoke --arch resnet18 --epochs 1

Exit status: 0 every point done (or printed), 1 some point failed or holds a run made with other settings,
2 a refused setting, 130 after Ctrl-C (one line: :data:`INTERRUPTED`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from clop.util.cli import HelpFormatter, run_main
from clop.util.io import check_output_dir, check_path_text
from training.data.catalog import DATASETS
from training.sweeps.grid import SWEEPS, VARIANTS, format_value, points
from training.sweeps.launch import (
    LAUNCHERS,
    Launch,
    Runner,
    check_extra,
    check_extra_against_points,
    pretrain_config,
    print_commands,
    run_command,
    run_points,
)

INTERRUPTED = "interrupted; finished points are kept: the same command continues (partial runs resume)"
"""What the command line prints after Ctrl-C."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.sweep",
        usage="python -m training.sweep NAME [options] [-- extra training.pretrain flags]",
        description="Run one of the CLOP paper's grids (Sec. 5: Figs. 6-7, Tables 1-3): pre-training + linear "
        "probe per point, finished points skipped, partial runs resumed. Flags after '--' go to every "
        "training.pretrain command and override the sweep's settings.",
        formatter_class=HelpFormatter,
        epilog="sweeps: " + "; ".join(f"{s.name}: {s.param} {[format_value(v) for v in s.values]} ({s.source.split(':')[0]})"
                                      for s in SWEEPS.values()) + ". Variants: " + ", ".join(VARIANTS) + ".",
    )
    p.add_argument("name", metavar="NAME", choices=list(SWEEPS), help=f"sweep, one of {list(SWEEPS)}")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="dataset (default: cifar100; tiny-imagenet for augmentation, as in the paper)")
    p.add_argument("--data-root", default=None, help="dataset folder, passed to training.pretrain (default: its own)")
    p.add_argument("--root", default="runs/sweeps", help="runs go to ROOT/NAME/DATASET/<run>, results to ROOT/NAME/results.csv")
    p.add_argument("--variants", nargs="+", default=None, metavar="V",
                   help="only these variants (space or comma separated; default: all the sweep's)")
    p.add_argument("--values", nargs="+", default=None, metavar="X", help="only these grid values (default: the whole grid)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="S", help="one run per seed")
    p.add_argument("--launcher", choices=LAUNCHERS, default="local", help="run here, under torchrun, or print the commands")
    p.add_argument("--nproc-per-node", type=int, default=None, help="torchrun processes per node (default 1)")
    p.add_argument("--nnodes", type=int, default=None, help="torchrun nodes (several: start the sweep on each)")
    p.add_argument("--node-rank", type=int, default=None, help="this node's rank, 0 .. nnodes-1 (node 0 runs the probes)")
    p.add_argument("--rdzv-endpoint", default=None, help="host:port of node 0, for several nodes")
    p.add_argument("--rdzv-timeout", type=int, default=Launch.rdzv_timeout,
                   help="seconds the other nodes wait at a rendezvous (node 0 may be running a probe)")
    p.add_argument("--probe-epochs", type=int, default=None, help="linear-probe epochs (default: training.linear_eval's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar over the points")
    return p


def main(argv: Sequence[str] | None = None, *, runner: Runner = run_command) -> int:
    """Run the command line ``argv``; ``runner`` runs each command of a point (default: a subprocess)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    own, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = build_parser()
    args = parser.parse_args(own)
    split = lambda xs: None if xs is None else [x for s in xs for x in s.split(",") if x]  # noqa: E731
    try:
        check_path_text(args.root, "--root")
        if args.data_root is not None:
            check_path_text(args.data_root, "--data-root")
        pts = points(args.name, args.dataset, split(args.variants), args.seeds, values=split(args.values), root=args.root)
        launch = Launch(
            args.launcher, args.root, check_extra(extra), args.data_root, args.probe_epochs, args.nproc_per_node,
            args.nnodes, args.node_rank, args.rdzv_endpoint, args.rdzv_timeout,
        )
        check_extra_against_points(extra, pts)
        for point in pts:  # training.pretrain's own checks, before anything runs
            pretrain_config(point, launch)
        if launch.launcher != "print":  # print only reads the run directories
            check_output_dir(args.root, "--root")
    except ValueError as exc:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    if launch.launcher == "print":
        n, clashes = print_commands(pts, launch)
        print(f"# {args.name}: {len(pts)} points, {n} to run, {len(clashes)} with other settings, "
              f"{len(pts) - n - len(clashes)} finished", file=sys.stderr)
        return 1 if clashes else 0
    failures = run_points(pts, launch, progress=not args.no_progress, runner=runner)
    if failures:
        print(f"{len(failures)} of {len(pts)} points failed:", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    done = "pre-trained (node 0 runs the probes)" if not launch.probes else "done"
    print(f"{args.name}: {len(pts)} points {done}; results in {Path(args.root) / args.name / 'results.csv'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main, interrupted=INTERRUPTED))
