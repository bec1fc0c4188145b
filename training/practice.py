"""Section 5 of the CLOP paper in miniature, on real images and a CPU: the practice study of issue 13 (item 6).

    python -m training.practice [--jobs 2] [--seeds 0 1 2] [--epochs 25] [--only lr batch lambda]
    python -m training.practice --report-only      # redraw the report from the finished runs (or its CSVs)

Paper: "Preventing collapse in contrastive learning with orthonormal prototypes" (CLOP), arXiv 2403.18699,
Sec. 5 (Figs. 6, 7, Table 1), Sec. 3.2 (Fig. 4) and Theorem 1 / Appendix D.

A preset over the existing pipeline, not a second one: every point is a :class:`training.sweep.Point`, run by
:func:`training.sweep.run_point` (finished points skipped, partial runs resumed with ``--resume``, a run made
with other settings refused), i.e. ``training.pretrain ... --resume`` then ``training.linear_eval``. The only
difference from ``python -m training.sweep`` is where the two commands run: here they run in-process, in
``--jobs`` worker processes of one torch thread each, because importing torch and the pipeline costs about
4 s of CPU per process (measured), a third of a whole point. Their output goes to ``<run>.log`` as with
the sweep.

**The grid** (every point on ``--dataset digits --arch small``, ``--seeds`` seeds each, default 3):

* learning rate (:data:`LRS`: 0.01, 0.1, 0.3, 1, 3, 10, 30) x optimiser (LARS, SGD) x the six variants of
  Sec. 5 (:data:`training.sweep.COMPARISON`: InfoNCE with 10 % labels and SupCon with all labels, each
  without CLOP, with CLOP (lambda 1, orthonormal prototypes) and with CLOP on simplex-ETF prototypes), at
  batch 256 (:data:`LR_BATCH`);
* batch size (:data:`BATCHES`: 16 ... 512) at lr = 0.3 x batch / 256 (the paper's rule), the six variants,
  LARS;
* lambda (:data:`LAMBDAS`: 0.1, 0.5, 1, 1.5) for InfoNCE + CLOP and SupCon + CLOP (Table 1's ablation pair,
  :data:`training.sweep.ABLATION`), LARS, batch 256, lr 0.3;
* the untrained-encoder reference: InfoNCE 10 % and SupCon 100 % at lr 1e-6 (:data:`REFERENCE_LR`), LARS,
  batch 256: the weights stay at their initialisation (each layer moves by ~1e-9 of its norm per step)
  while BatchNorm's running statistics are estimated from the data, so its probe is what the random
  encoder gives. It answers whether a setting learns at all (with the lr and batch axes).

Points shared by two axes (batch 256 at lr 0.3 with LARS; lambda 1) are one run. 366 runs with 3 seeds.

**Learning rate** means the rate the optimiser uses, lr = base_lr x batch / 256 (training.pretrain's rule,
Sec. 5): the peak of the warm-up + cosine schedule. At batch 256 it equals ``--base-lr``; the batch axis
uses lr = 0.3 x B / 256 (0.01875 at B = 16 ... 0.6 at B = 512), and its figure prints that lr under
each batch size. SGD multiplies the gradient by it; LARS multiplies each layer's gradient by it times the
trust ratio 1e-3 ||w|| / ||g|| (SimCLR), so a LARS layer moves by ~lr x 1e-3 of its norm per step.

**Settings chosen to fit 60 minutes on a 2-core CPU** (measured on this machine with one torch thread
while two other jobs shared it; CPU seconds, which is what two saturated cores divide):

* one epoch costs ~0.43 s at batch 256 (1,438 images x 2 views; 0.97 s at batch 16, 0.57 s at 32, 0.45 s at
  64, 0.42 s at 512), the per-epoch evaluation and geometry log included, with the batched digits augmentation
  (``--loader device``, the digits default: training/loader.py; the per-image path cost ~1.5 s an epoch, two
  thirds of it augmenting); the probe adds 0.3-0.9 s; ``--workers`` is irrelevant to the device loader;
* the SimCLR head (hidden 2048) is kept: a 512-wide head saved ~3 % of an epoch (15.4 -> 15.0 s for 10
  epochs, measured with the per-image loader; its checkpoints are 2.7x larger: ~10 MB per run, ~3.5 GB for
  the study);
* ``--epochs 25`` (:data:`EPOCHS`; 150 steps at batch 256, 2,250 at batch 16, 75 at batch 512; the paper:
  200 epochs) and 7 learning rates (0.03 cut): 366 runs ~ 4,600 CPU-seconds ~ 40 min on two free cores
  (:func:`estimate_seconds`, printed at the start); the committed study took 59.5 min on two cores that
  other jobs shared. The first version, with the per-image loader, could
  afford only 8 epochs.

Outputs: the runs under ``--runs`` (default runs/practice, ``RUNS/e<epochs>/<run>``, the probe rows also
in ``RUNS/e<epochs>/results.csv``); the report under ``--out`` (default paper_figures/practice):
figures, their CSVs and practice.md (:mod:`training.practice_report`, verdicts from
:mod:`training.practice_claims`). A point whose loss became non-finite (training.pretrain exit 3,
``last_good.pt`` kept) is an outcome, not a failure: it is recorded as diverged and not retried.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import multiprocessing
import os
import shlex
import sys
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from clop.util.io import check_output_dir

from training import sweep
from training.data import default_policy
from clop.util.cli import HelpFormatter, check_device
from training.pretrain import NONFINITE_EXIT
from training.rundir import LAST_GOOD

DATASET = "digits"
ARCH = "small"
LRS = (0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
"""Learning rates actually used (= base_lr at batch 256). 0.03 was cut to fit the hour; 30 goes past the
paper's 10 because SGD and LARS with BatchNorm may not collapse at 10."""
OPTIMIZERS = ("lars", "sgd")
LR_BATCH = 256
BATCHES = (16, 32, 64, 128, 256, 512)
BATCH_BASE_LR = 0.3
"""Sec. 5: lr = 0.3 x batch size / 256."""
LAMBDAS = (0.1, 0.5, 1.0, 1.5)
"""Table 1."""
REFERENCE_LR = 1e-6
REFERENCE_VARIANTS = ("infonce10", "supcon100")
EPOCHS = 25
SEEDS = (0, 1, 2)
WORKERS = 0
AXES = ("lr", "batch", "lambda")

# Measured CPU seconds (one torch thread, this 2-core machine; see the module docstring).
EPOCH_CPU_S = {16: 0.97, 32: 0.57, 64: 0.45, 128: 0.43, 256: 0.43, 512: 0.42}
PROBE_CPU_S = 0.7
WORKER_START_S = 5.0


def _lr_tag(lr: float) -> str:
    return format(lr, ".6g")


def study_points(only: Sequence[str] | None = None, seeds: Sequence[int] = SEEDS, epochs: int = EPOCHS,
                 runs: str | Path = "runs/practice") -> list[sweep.Point]:
    """The points of the study (one per run directory, shared points once), seed by seed.

    ``only``: some of :data:`AXES` (default all; the untrained reference comes with lr and batch). Runs go to
    ``runs/e<epochs>/<variant>[-lam<lambda>]_<optimizer>_b<batch>_lr<lr used>_s<seed>``.
    """
    only = list(AXES) if only is None else list(only)
    bad = [a for a in only if a not in AXES]
    if bad or not only:
        raise ValueError(f"only={only!r}: expected some of {list(AXES)}")
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds) or len(set(seeds)) < len(seeds):
        raise ValueError(f"seeds must be distinct integers >= 0, at least one; got {seeds!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1; got {epochs!r}")
    specs: list[tuple[str, str, str, int, float, float | None, object]] = []  # axis, variant, opt, batch, base_lr, lam, value
    if "lr" in only:
        specs += [("lr", v, o, LR_BATCH, lr * 256 / LR_BATCH, None, lr) for lr in LRS for o in OPTIMIZERS
                  for v in sweep.COMPARISON]
    if "batch" in only:
        specs += [("batch", v, "lars", b, BATCH_BASE_LR, None, b) for b in BATCHES for v in sweep.COMPARISON]
    if "lambda" in only:
        specs += [("lambda", v, "lars", LR_BATCH, BATCH_BASE_LR, lam, lam) for lam in LAMBDAS for v in sweep.ABLATION]
    if "lr" in only or "batch" in only:
        specs += [("reference", v, "lars", LR_BATCH, REFERENCE_LR, None, 0.0) for v in REFERENCE_VARIANTS]
    root = Path(runs) / f"e{epochs}"
    out: dict[Path, sweep.Point] = {}
    for seed in seeds:
        for axis, vname, opt, batch, base_lr, lam, value in specs:
            v = sweep.VARIANTS[vname]
            lam = v.clop_lambda if lam is None else lam
            lr = base_lr * batch / 256
            tag = "" if lam == v.clop_lambda else f"-lam{lam:g}"
            run = root / f"{vname}{tag}_{opt}_b{batch}_lr{_lr_tag(lr)}_s{seed}"
            if run in out:
                continue
            settings = {
                "dataset": DATASET, "loss": v.loss, "label_fraction": v.label_fraction, "clop_lambda": lam,
                "prototypes": v.prototypes, "similarity": "cosine", "augmentation": default_policy(DATASET),
                "batch_size": batch, "base_lr": base_lr, "optimizer": opt, "seed": seed,
            }
            out[run] = sweep.Point(root.name, DATASET, vname, value, seed, settings, run, axis != "reference")
    return list(out.values())


def make_launch(runs: str | Path, epochs: int, device: str | None = None, data_root: str | None = None) -> sweep.Launch:
    """The sweep launch of the study: flags common to every pretrain command, results in RUNS/e<epochs>/."""
    extra = ["--arch", ARCH, "--epochs", str(epochs), "--workers", str(WORKERS)] + (["--device", device] if device else [])
    return sweep.Launch("local", Path(runs), sweep.check_extra(extra), data_root, probe_workers=WORKERS)


def estimate_seconds(points: Sequence[sweep.Point], epochs: int, jobs: int) -> float:
    """Wall seconds for ``points`` on ``jobs`` free cores, from the measured costs (module docstring)."""
    cpu = sum(EPOCH_CPU_S.get(int(p.settings["batch_size"]), 1.5) * epochs + PROBE_CPU_S for p in points)
    return cpu / max(1, jobs) + WORKER_START_S


# ----------------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------------


def diverged(run: str | Path) -> bool:
    """A run that stopped on a non-finite loss: ``last_good.pt`` is there and the run never finished."""
    run = Path(run)
    return (run / LAST_GOOD).is_file() and sweep.status(run) == "partial"


def run_in_process(cmd: list[str], log: Path) -> int:
    """:func:`training.sweep.run_command`'s stand-in: run ``python -m MODULE ARGS`` (training.pretrain or
    training.linear_eval) as ``MODULE.main(ARGS)`` in this process, output appended to ``log``; exit status."""
    i = cmd.index("-m")
    module, argv = cmd[i + 1], cmd[i + 2 :]
    if module not in ("training.pretrain", "training.linear_eval"):
        raise ValueError(f"cmd runs {module!r}; expected training.pretrain or training.linear_eval")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"\n$ {shlex.join(cmd)}   # run in-process by training.practice\n")
        f.flush()
        with contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            try:
                rc = importlib.import_module(module).main(argv)
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception:  # noqa: BLE001 - reported in the log, the point fails, the study goes on
                traceback.print_exc(file=f)
                rc = 1
    return int(rc or 0)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def run_one(point: sweep.Point, launch: sweep.Launch) -> tuple[str, sweep.Failure | None]:
    """One point (:func:`training.sweep.run_point` in-process); a divergence is an outcome, not a failure."""
    if diverged(point.run_dir):
        return f"{point.name}: diverged earlier (non-finite loss), kept as an outcome", None
    msg, failed = sweep.run_point(point, launch, runner=run_in_process)
    if (failed is not None and failed.step == "pretrain" and failed.returncode == NONFINITE_EXIT
            and diverged(point.run_dir)):
        return f"{point.name}: new -> DIVERGED (the loss became non-finite; {point.run_dir / LAST_GOOD} kept)", None
    return msg, failed


def run_study(points: Sequence[sweep.Point], launch: sweep.Launch, jobs: int, *, progress: bool = True
              ) -> list[sweep.Failure]:
    """Run every unfinished point, ``jobs`` at a time; one line per finished point. Returns the failures."""
    from tqdm.auto import tqdm

    from clop.util.progress import progress_bar

    done = {p.run_dir for p in points if sweep.status(p.run_dir) == "done"}
    gone = {p.run_dir for p in points if diverged(p.run_dir)}
    todo = [p for p in points if p.run_dir not in done | gone]
    est = estimate_seconds(todo, int(launch.extra[launch.extra.index("--epochs") + 1]), jobs) if todo else 0.0
    print(f"practice: {len(points)} points, {len(done)} finished, {len(gone)} diverged (kept as outcomes), {len(todo)} "
          f"to run with {jobs} job(s); estimate ~{est / 60:.0f} min on free cores", file=sys.stderr, flush=True)
    failures: list[sweep.Failure] = []
    if not todo:
        return failures
    bar = progress_bar(total=len(todo), unit="point", desc="practice", enabled=progress)
    start = time.perf_counter()

    def report(n: int, msg: str) -> None:
        spent = time.perf_counter() - start
        left = spent / n * (len(todo) - n)
        tqdm.write(f"[{n}/{len(todo)}] {msg} ({spent / 60:.1f} min elapsed, ~{left / 60:.0f} min left)", file=sys.stderr)
        bar.update()

    if jobs == 1:
        from clop.util.device import torch_threads

        with torch_threads(1):
            for n, p in enumerate(todo, 1):
                msg, failed = run_one(p, launch)
                failures += [failed] if failed else []
                report(n, msg)
    else:
        ex = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker)
        try:
            futures = [ex.submit(run_one, p, launch) for p in todo]
            for n, fut in enumerate(as_completed(futures), 1):
                msg, failed = fut.result()
                failures += [failed] if failed else []
                report(n, msg)
        finally:
            ex.shutdown(wait=True, cancel_futures=True)
    bar.close()
    return failures


# ----------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.practice",
        description="CLOP paper Sec. 5 in miniature on 8x8 digits (arch small, CPU): learning rate x {LARS, SGD}, "
        "batch size and lambda, each with the six variants, several seeds; then figures and practice.md with "
        "a computed verdict per claim. Finished points are skipped, partial ones resumed.",
        formatter_class=HelpFormatter,
        epilog=f"Grid: lr {list(LRS)} x {list(OPTIMIZERS)} at batch {LR_BATCH}; batch {list(BATCHES)} at lr = "
        f"{BATCH_BASE_LR} x batch/256 (LARS); lambda {list(LAMBDAS)} (LARS, batch {LR_BATCH}, lr {BATCH_BASE_LR}); "
        f"untrained reference at lr {REFERENCE_LR:g}. 'learning rate' = the rate used, base_lr x batch/256.",
    )
    p.add_argument("--out", default="paper_figures/practice", help="folder of the report (figures, CSVs, practice.md)")
    p.add_argument("--runs", default="runs/practice", help="folder of the run directories (RUNS/e<epochs>/<run>)")
    p.add_argument("--data-root", default=None, help="passed to training.pretrain; not used by digits (scikit-learn "
                   "ships them) (default: training.pretrain's)")
    p.add_argument("--jobs", type=int, default=None, help="points run at once, each a process with one torch thread "
                   f"(default: the CPU count, {os.cpu_count() or 1} here)")
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), metavar="S", help="seeds of every point")
    p.add_argument("--epochs", type=int, default=EPOCHS, help="pre-training epochs of every point (paper: 200)")
    p.add_argument("--only", nargs="+", choices=AXES, default=None, metavar="AXIS",
                   help=f"run only these axes, some of {list(AXES)} (default: all; the report covers what exists)")
    p.add_argument("--report-only", action="store_true", help="run nothing: redraw the report from the finished runs "
                   "(or, when --runs holds none, from the CSVs of a previous report in --out)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N for every run (default: CUDA when present, else CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one line per finished point is always printed)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from training import practice_report

    parser = build_parser()
    args = parser.parse_args(argv)
    args.jobs = os.cpu_count() or 1 if args.jobs is None else args.jobs
    if args.jobs < 1:
        parser.error(f"--jobs must be an integer >= 1; got {args.jobs}")
    if args.epochs < 1:
        parser.error(f"--epochs must be an integer >= 1; got {args.epochs}")
    if any(s < 0 for s in args.seeds) or len(set(args.seeds)) < len(args.seeds):
        parser.error(f"--seeds must be distinct integers >= 0; got {args.seeds}")
    try:
        check_device(args.device, "--device")
        points = study_points(args.only, args.seeds, args.epochs, args.runs)
        launch = make_launch(args.runs, args.epochs, args.device, args.data_root)
        for point in points:  # training.pretrain's own checks (device included), before anything runs
            sweep.pretrain_config(point, launch)
        check_output_dir(args.out, "--out")
        if not args.report_only:
            check_output_dir(args.runs, "--runs")
    except ValueError as exc:
        parser.error(str(exc))
    failures = [] if args.report_only else run_study(points, launch, args.jobs, progress=not args.no_progress)
    status = 0
    try:
        written = practice_report.report(points, args.out, from_csv_if_empty=args.report_only)
        print(f"practice: report in {args.out} ({', '.join(sorted(p.name for p in written))})", file=sys.stderr)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        status = 2
    if failures:
        print(f"{len(failures)} of {len(points)} points failed (the report uses the others):", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
