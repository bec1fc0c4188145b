"""Synthetic 3D feed-forward experiment of the CLOP paper (arXiv 2403.18699, Section 4, Figure 5; Table 5).

Run: python simulations/synthetic_ffn.py [--seeds 100] [--seed 0] [--out paper_figures] [--device cpu]
(also as python -m simulations.synthetic_ffn; --help lists every knob). The overlapping regime:
python simulations/synthetic_ffn.py --magnitudes normal --min-angle 0 --out paper_figures/table5_overlap

Writes table5.csv (one row per run), table5_verdicts.csv (per loss: the paired gain, its 95 % interval and
both verdicts), table5_claims.csv (the same verdicts as claim records, :mod:`simulations.ffn.claims`),
table5.md (the report), figure5_embeddings.csv and figure5.png (seed 0's embeddings) under --out. All six
are staged and put in place together at the end (clop.util.io.staged_outputs), so an
interrupted run leaves the previous complete set as it was. Every flag, ``--device``, ``--out`` and the
memory the run needs are checked before any training (exit status 2 and a message naming the flag; --out
last, and locked while the run writes into it); a run that diverges ends with exit status 2, writes
nothing and leaves no folder it created.

The pieces: :mod:`simulations.ffn.data` (the data and the reference classifiers),
:mod:`simulations.ffn.train` (the network, the batched training and the evaluation), :mod:`clop.stats`
(the paired interval and the verdict rules), :mod:`simulations.ffn.report` (the tables and table5.md),
:mod:`simulations.ffn.plot` (Figure 5); ``simulations/table5_seeds.py`` is the study behind the default
number of seeds.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as `python simulations/synthetic_ffn.py`: make the packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clop.claims import claims_csv  # noqa: E402
from clop.util.alloc import retain_freed_memory  # noqa: E402
from clop.util.cli import (  # noqa: E402
    check_int,
    check_positive_float,
    check_unique,
    parse_device,
    run_main,
)
from clop.util.device import torch_threads  # noqa: E402
from clop.util.io import staged_outputs  # noqa: E402
from clop.util.memory import check_fits  # noqa: E402
from simulations.cli import open_output  # noqa: E402
from simulations.ffn import data as ffn_data  # noqa: E402
from simulations.ffn import report as table5_report  # noqa: E402
from simulations.ffn import train as ffn_train  # noqa: E402
from simulations.ffn.claims import table5_claims  # noqa: E402
from simulations.ffn.plot import embeddings_frame, plot_figure5  # noqa: E402

__all__ = ["build_parser", "run", "main"]

OUTPUTS = ("table5.csv", "table5_verdicts.csv", "table5_claims.csv", "table5.md", "figure5_embeddings.csv", "figure5.png")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Synthetic 3D FFN experiment of the CLOP paper (Figure 5, Table 5): KNN accuracy without/with "
        "CLOP, the paired gain per loss with its 95 % interval, and a verdict per claim."
    )
    p.add_argument("--seeds", type=int, default=table5_report.DEFAULT_SEEDS,
                   help=f"runs per configuration (default {table5_report.DEFAULT_SEEDS}: the seed study's choice, "
                   "see paper_figures/table5_seed_study.md)")
    p.add_argument("--seed", type=int, default=0, help="base seed; runs use seed, seed+1, ... (default 0)")
    p.add_argument("--epochs", type=int, default=ffn_train.EPOCHS, help=f"training epochs (default {ffn_train.EPOCHS})")
    p.add_argument("--batch-size", type=int, default=ffn_train.BATCH_SIZE,
                   help=f"mini-batch size, >= 2 (default {ffn_train.BATCH_SIZE})")
    p.add_argument("--lr", type=float, default=ffn_train.LR, help=f"Adam learning rate (default {ffn_train.LR})")
    p.add_argument("--hidden", type=int, default=ffn_train.HIDDEN,
                   help=f"hidden width of the FFN (default {ffn_train.HIDDEN})")
    p.add_argument("--directions", choices=("random", "orthogonal"), default="random",
                   help="class directions (default random)")
    p.add_argument("--min-angle", type=float, default=ffn_data.MIN_ANGLE_DEG,
                   help="least angle in degrees between two class lines, --directions random "
                   f"(default {ffn_data.MIN_ANGLE_DEG:g}; 0: any)")
    p.add_argument("--magnitudes", choices=("uniform", "normal"), default="uniform",
                   help=f"position along the class line: uniform = +-U({ffn_data.MAG_LOW:g}, {ffn_data.MAG_HIGH:g}), "
                   "normal = N(0, 1) (default uniform)")
    p.add_argument("--losses", nargs="+", choices=ffn_train.LOSSES, default=list(ffn_train.LOSSES),
                   help="losses to run (default all)")
    p.add_argument("--out", default="paper_figures", help="output directory (default paper_figures/)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if present, else cpu)")
    p.add_argument("--loss-mode", choices=("auto", "vmap", "loop"), default="auto",
                   help="per-seed losses by torch.func.vmap or a Python loop (default auto: vmap where it works)")
    p.add_argument("--chunk", type=int, default=None,
                   help=f"runs trained together (default {ffn_train.NATIVE_CHUNK} per call of the native kernel, "
                   f"{ffn_train.CHUNK} for the torch engines on a CPU, all on CUDA; benchmarks/bench_ffn.py measures it)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the tensors are tiny)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    p.add_argument("--engine", choices=ffn_train.ENGINES, default="auto",
                   help="training code: native (the fused C kernel, CPU), fused (the same formulas as torch "
                   "operations), autograd (the plain baseline; the numbers the tables had before), auto (native "
                   "where it compiles on a CPU, else fused; default)")
    p.add_argument("--workers", type=int, default=None,
                   help="threads training chunks of runs in parallel (default: every usable core; the numbers do "
                   "not depend on it)")
    return p


def _validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> torch.device:
    """Every check that can fail before compute: ranges, repeats, the device, the memory (the output folder
    is checked last, by :func:`main`)."""
    for name, least in (("seeds", 1), ("epochs", 1), ("hidden", 1), ("batch_size", 2), ("threads", 1),
                        ("chunk", 1), ("seed", 0), ("workers", 1)):
        if getattr(args, name) is not None:
            check_int(parser, f"--{name.replace('_', '-')}", getattr(args, name), least)
    if args.batch_size > ffn_data.N_POINTS:
        parser.error(f"--batch-size must be at most the {ffn_data.N_POINTS} points of the data; got {args.batch_size}")
    check_unique(parser, "--losses", args.losses)
    if not 0 <= args.min_angle < 90:
        parser.error(f"--min-angle must be in [0, 90) degrees; got {args.min_angle}")
    check_positive_float(parser, "--lr", args.lr)
    device = parse_device(parser, args.device)
    try:
        args.engine = ffn_train.resolve_engine(args.engine, device)
    except (ValueError, RuntimeError) as exc:
        parser.error(f"--engine {args.engine}: {exc}")
    chunk = args.chunk or ffn_train.default_chunk(args.engine, args.seeds, device)
    need = ffn_train.estimate_bytes(args.seeds, 2 * len(args.losses), chunk=chunk, hidden=args.hidden,
                                    batch_size=args.batch_size, workers=args.workers)
    problem = check_fits(need, 0, torch.device("cpu"), f"--seeds {args.seeds}, --hidden {args.hidden}, "
                         f"--chunk {chunk}", dtype="float32")
    if problem:
        parser.error(problem)
    if args.directions == "random" and args.min_angle > 0:  # the lines are redrawn until far enough apart: try now
        for seed in range(args.seed, args.seed + args.seeds):  # (~0.3 ms a seed; the memory check bounds --seeds)
            try:
                ffn_data.make_data(seed, directions="random", min_angle_deg=args.min_angle, magnitudes=args.magnitudes)
            except ValueError as exc:
                parser.error(f"--min-angle {args.min_angle:g}, seed {seed}: {exc}")
    return device


def run(args: argparse.Namespace, device: torch.device, out: Path) -> str:
    """Train, evaluate, and write the outputs of :data:`OUTPUTS` into ``out`` together; returns the report."""
    seeds = list(range(args.seed, args.seed + args.seeds))
    data_options = {"directions": args.directions, "min_angle_deg": args.min_angle, "magnitudes": args.magnitudes}
    start = time.perf_counter()
    results, embs, data = ffn_train.run_experiment(
        seeds, losses=tuple(args.losses), epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        hidden=args.hidden, data_options=data_options, device=device, loss_mode=args.loss_mode, chunk=args.chunk,
        show_progress=not args.no_progress, engine=args.engine, workers=args.workers,
    )
    runtime = time.perf_counter() - start
    settings = {
        "seeds": args.seeds, "base_seed": args.seed, "epochs": args.epochs, "batch_size": args.batch_size,
        "lr": args.lr, "hidden": args.hidden, "device": f"{device}, {args.engine} training engine", **data_options,
    }
    bayes = ffn_data.bayes_accuracy(data) if args.magnitudes == "normal" else None
    report = table5_report.markdown_report(results, ffn_data.input_knn_accuracy(data), settings=settings,
                                           runtime_s=runtime, bayes_acc=bayes)
    regime = ffn_data.regime_of(args.directions, args.min_angle, args.magnitudes)
    frame = embeddings_frame(embs, data, 0, regime=regime)
    verdicts = table5_report.verdict_table(results)
    with staged_outputs(out) as stage:
        results.to_csv(stage("table5.csv"), index=False)
        verdicts.to_csv(stage("table5_verdicts.csv"), index=False)
        stage("table5_claims.csv").write_text(claims_csv(table5_claims(verdicts, regime)))
        stage("table5.md").write_text(report)
        frame.to_csv(stage("figure5_embeddings.csv"), index=False)
        plot_figure5(frame, stage("figure5.png"))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    device = _validate(parser, args)
    retain_freed_memory()  # thousands of steps of MB-sized temporaries: see clop/util/alloc.py
    with ExitStack() as stack:
        out = open_output(parser, stack, args.out, OUTPUTS)  # last check; a run that writes nothing removes it
        try:
            with torch_threads(args.threads):
                report = run(args, device, out)
        except FloatingPointError as exc:
            print(f"synthetic_ffn.py: error: {exc} (--lr {args.lr:g}); nothing was written", file=sys.stderr)
            return 2
    print(report)
    print("wrote " + ", ".join(str(Path(args.out) / name) for name in OUTPUTS))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
