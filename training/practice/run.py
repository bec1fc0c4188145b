"""Running the practice study: every unfinished point in-process, ``jobs`` at a time.

Every point runs as :func:`training.sweeps.launch.run_point` does for ``python -m training.sweep`` (finished
points skipped, partial runs resumed with ``--resume``, a run made with other settings refused), i.e.
``training.pretrain ... --resume`` then ``training.linear_eval``, with one difference: the two commands run
in-process (:func:`run_in_process`), in ``jobs`` worker processes of one torch thread each, because importing
torch and the pipeline costs a third of a whole point (docs/training.md). Their output goes to ``<run>.log``.
A point whose loss became non-finite (training.pretrain exit 3, ``last_good.pt`` kept) is an outcome, not a
failure: it is recorded as diverged and not retried (:func:`diverged`).
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import shlex
import sys
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm.auto import tqdm

from clop.util.device import torch_threads
from clop.util.progress import progress_bar
from training.engine.rundir import LAST_GOOD
from training.practice.grid import estimate_seconds
from training.pretrain import NONFINITE_EXIT
from training.sweeps.grid import Point
from training.sweeps.launch import Failure, Launch, run_point
from training.sweeps.state import status

__all__ = ["diverged", "run_in_process", "run_one", "run_study"]


def diverged(run: str | Path) -> bool:
    """A run that stopped on a non-finite loss: ``last_good.pt`` is there and the run never finished."""
    run = Path(run)
    return (run / LAST_GOOD).is_file() and status(run) == "partial"


def run_in_process(cmd: list[str], log: Path) -> int:
    """:func:`training.sweeps.launch.run_command`'s stand-in: run ``python -m MODULE ARGS`` (training.pretrain or
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


def run_one(point: Point, launch: Launch) -> tuple[str, Failure | None]:
    """One point (:func:`training.sweeps.launch.run_point` in-process); a divergence is an outcome, not a failure."""
    if diverged(point.run_dir):
        return f"{point.name}: diverged earlier (non-finite loss), kept as an outcome", None
    msg, failed = run_point(point, launch, runner=run_in_process)
    if (failed is not None and failed.step == "pretrain" and failed.returncode == NONFINITE_EXIT
            and diverged(point.run_dir)):
        return f"{point.name}: new -> DIVERGED (the loss became non-finite; {point.run_dir / LAST_GOOD} kept)", None
    return msg, failed


def run_study(points: Sequence[Point], launch: Launch, jobs: int, *, progress: bool = True, threads: int | None = 1
              ) -> list[Failure]:
    """Run every unfinished point, ``jobs`` at a time; one line per finished point. Returns the failures.

    ``threads``: torch threads per run (None: torch's default, for runs on a GPU; the time estimate, measured on
    the digits CNN, is printed only with one thread)."""
    done = {p.run_dir for p in points if status(p.run_dir) == "done"}
    gone = {p.run_dir for p in points if diverged(p.run_dir)}
    todo = [p for p in points if p.run_dir not in done | gone]
    est = estimate_seconds(todo, int(launch.extra[launch.extra.index("--epochs") + 1]), jobs) if todo else 0.0
    guess = f"; estimate ~{est / 60:.0f} min on free cores" if threads == 1 else ""
    print(f"practice: {len(points)} points, {len(done)} finished, {len(gone)} diverged (kept as outcomes), {len(todo)} "
          f"to run with {jobs} job(s){guess}", file=sys.stderr, flush=True)
    failures: list[Failure] = []
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
        with torch_threads(threads) if threads is not None else contextlib.nullcontext():
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
