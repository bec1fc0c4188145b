"""Benchmark: the batched L_class engine against a plain loop over runs (not a test).

Workload: a sweep over all ``--ks`` x ``--trials`` starts x ``--etas`` learning rates, ``--steps`` Appendix D
steps each (no early exit, so every side does exactly the same runs and steps), reporting the first
complete-collapse step of every run. The implementations, timed in the same process:

* engine: :func:`simulations.lclass.search.sweep` with its default engine — on the CPU the native kernel
  (:mod:`simulations.lclass.native`: one run at a time through all its steps, its state in cache, the runs
  split over ``--kernel-threads`` threads, default every core), on CUDA batched torch operations; timed
  ``--repeat`` times (min, median, max printed);
* the native kernel on one thread (CPU, where the kernel runs on more): the same bits, and the speed-up of
  the threads;
* torch engine (CPU only, where the default is the native kernel): the same sweep with
  ``engine="torch"``, all runs in stacked tensors, one batched program per step and cache-sized chunk;
* loop (m-dim): one run at a time, the plain per-run torch code a user would write on X: (k, m)
  (``mu = X.mean(0); X = (1 + eta/(k-1)) X - eta k/(k-1) mu; X = X / ||rows||``), mean norms kept in a
  preallocated tensor and read once at the end (no per-step host sync);
* loop (k-dim): the same loop on the exact k-dimensional coordinates of the rows (isolates the gain of
  batching from the gain of the reduction).

* another kernel source (``--kernel-source FILE``, e.g. an earlier version: ``git show
  REV:simulations/lclass/kernel.c > old.c``): compiled like the packaged kernel and timed beside it, both on
  one thread, interleaved, on the same runs; both must give the same collapse steps and final states, bit for bit.

All must give the same collapse steps (checked; a mismatch is printed and the exit status is 1). Prints
the times and the speed-ups against the m-dim loop (the headline ratio: ``speed-up`` on its line).
Run: ``python benchmarks/bench_lclass.py [--device cpu] [--steps 200] [--threads 1] [--repeat 3]
[--kernel-source old.c]``.
"""

from __future__ import annotations

if __name__ == "__main__" and __package__ in (None, ""):  # run as a file: make the repo root importable
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import argparse
import contextlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from clop.util.cli import check_int, check_positive_float, parse_device
from clop.util.device import torch_threads
from clop.util.progress import progress_bar
from simulations import native_build
from simulations.cli import check_memory
from simulations.lclass import engine as lclass_engine
from simulations.lclass import native
from simulations.lclass.engine import engine_name
from simulations.lclass.memory import sweep_bytes
from simulations.lclass.model import COLLAPSE_TOL, initial_embeddings, reduce_coordinates
from simulations.lclass.search import sweep, sweep_runs


def plain_run(x0: torch.Tensor, eta: float, steps: int, tol: float = COLLAPSE_TOL) -> int:
    """One run, one vector operation per line: x0: (k, d) unit rows -> first collapse step or -1."""
    k = x0.shape[0]
    a, b = 1.0 + eta / (k - 1), eta * k / (k - 1)
    x = x0.clone()
    norms = torch.empty(steps + 1, dtype=x.dtype, device=x.device)
    for t in range(steps + 1):
        mu = x.mean(dim=0)
        norms[t] = torch.linalg.vector_norm(mu)
        if t == steps:
            break
        x = a * x - b * mu
        x = x / torch.linalg.vector_norm(x, dim=1, keepdim=True)
    hit = torch.nonzero(norms >= 1.0 - tol)
    return int(hit[0, 0]) if hit.numel() else -1


def plain_sweep(ks, m, etas, trials, steps, seed, device, reduced: bool, progress: bool) -> np.ndarray:
    out = np.full((len(ks), trials, len(etas)), -1, dtype=np.int64)
    bar = progress_bar(total=out.size, desc=f"loop ({'k' if reduced else 'm'}-dim)", leave=False, enabled=progress)
    for i, k in enumerate(ks):
        x0 = initial_embeddings(k, m, trials, seed=seed)
        if reduced:
            x0, _ = reduce_coordinates(x0)
        x0 = x0.to(device)
        for t in range(trials):
            for j, eta in enumerate(etas):
                out[i, t, j] = plain_run(x0[t], float(eta), steps)
                bar.update(1)
    bar.close()
    return out


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _memory(args: argparse.Namespace, dev: torch.device) -> tuple[int, int, str]:
    """Estimated (host, device) bytes of the batched sweep (the loops hold one run at a time)."""
    host, device = sweep_bytes(args.ks, args.m, len(args.etas), args.trials, dev)
    settings = (f"--ks {min(args.ks)}..{max(args.ks)} ({len(args.ks)} values), --m {args.m}, "
                f"--etas ({len(args.etas)} values), --trials {args.trials}")
    return host, device, settings


def build_parser() -> argparse.ArgumentParser:
    """The command line (every flag has a default: the Figure 3 workload)."""
    parser = argparse.ArgumentParser(description="Batched L_class engine vs a plain per-run loop.")
    parser.add_argument("--ks", type=int, nargs="+", default=list(range(3, 101)), help="k values (default 3..100, Figure 3)")
    parser.add_argument("--m", type=int, default=100, help="embedding dimension (default 100)")
    parser.add_argument("--etas", type=float, nargs="+", default=[1.0, 2.0, 2.1, 2.5],
                        help="learning rates (default 1.0 2.0 2.1 2.5)")
    parser.add_argument("--trials", type=int, default=5, help="starts per k (default 5)")
    parser.add_argument("--steps", type=int, default=200, help="steps per run (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if present, else cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for all variants (default 1)")
    parser.add_argument("--skip-reduced-loop", action="store_true", help="do not time the k-dim loop")
    parser.add_argument("--skip-torch-engine", action="store_true",
                        help="do not time the torch engine on the CPU (timed by default beside the native kernel)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="timings of the engine(s), min / median / max printed (default 1; the loops run once)")
    parser.add_argument("--kernel-threads", type=int, default=None,
                        help="threads of the native kernel (default: every usable core, or $CLOP_NATIVE_THREADS); "
                        "it is also timed on one thread")
    parser.add_argument("--kernel-source", type=Path, default=None,
                        help="also time the kernel compiled from this C file (an earlier kernel.c) against the "
                        "packaged one, both on one thread; they must give the same bits")
    return parser


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, torch.device]:
    """The flags, each checked (exit status 2 and a message naming the flag), and the device."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_int(parser, "--m", args.m, 3)
    if any(k < 3 or k > args.m for k in args.ks):
        parser.error(f"--ks must all lie in [3, m={args.m}]; got {args.ks}")
    for eta in args.etas:
        check_positive_float(parser, "--etas", eta)
    check_int(parser, "--trials", args.trials, 1)
    check_int(parser, "--steps", args.steps, 1)
    check_int(parser, "--seed", args.seed, 0)
    check_int(parser, "--threads", args.threads, 1)
    check_int(parser, "--repeat", args.repeat, 1)
    if args.kernel_threads is not None:
        check_int(parser, "--kernel-threads", args.kernel_threads, 1)
    dev = parse_device(parser, args.device)
    if args.kernel_source is not None:
        if not args.kernel_source.is_file():
            parser.error(f"--kernel-source must name a C source file; got {str(args.kernel_source)!r}")
        if dev.type != "cpu" or not native.available():
            parser.error(f"--kernel-source needs the native kernel on the CPU; the engine is {engine_name(dev)}")
    check_memory(parser, args, dev, _memory)
    return args, dev


@contextlib.contextmanager
def kernel_threads(n: int | None):
    """The native kernels' thread count set to ``n`` (None: unchanged) for the duration of the block."""
    before = os.environ.get(native_build.ENV_THREADS)
    if n is not None:
        os.environ[native_build.ENV_THREADS] = str(n)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(native_build.ENV_THREADS, None)
        else:
            os.environ[native_build.ENV_THREADS] = before


def _time_engines(args: argparse.Namespace, dev: torch.device, variants) -> tuple[dict, dict]:
    """The sweep with each variant (key, label, engine, kernel threads), ``--repeat`` times, interleaved:
    (results, times) by key."""
    results, times = {}, {}
    for _, _, engine, threads in variants:
        with kernel_threads(threads):
            sweep(args.ks[:2], args.m, args.etas[:1], trials=1, steps=5, device=dev, engine=engine)  # warm-up
    for _ in range(args.repeat):
        for key, _, engine, threads in variants:  # interleaved, so that a busy spell does not favour one engine
            with kernel_threads(threads):
                _sync(dev)
                t0 = time.perf_counter()
                results[key] = sweep(args.ks, args.m, args.etas, trials=args.trials, steps=args.steps,
                                     seed=args.seed, device=dev, engine=engine)
                _sync(dev)
                times.setdefault(key, []).append(time.perf_counter() - t0)
    return results, times


def _time_loops(args: argparse.Namespace, dev: torch.device) -> dict[str, tuple[float, np.ndarray]]:
    """The plain loops (m-dim, and k-dim unless skipped), timed once each: label -> (seconds, collapse steps)."""
    loops = {}
    for reduced, label in ((False, "plain loop (m-dim)"), (True, "plain loop (k-dim)")):
        if reduced and args.skip_reduced_loop:
            continue
        t0 = time.perf_counter()
        out = plain_sweep(args.ks, args.m, args.etas, args.trials, args.steps, args.seed, dev, reduced, True)
        _sync(dev)
        loops[label] = (time.perf_counter() - t0, out)
    return loops


def _compare_kernel_source(args: argparse.Namespace) -> bool:
    """The sweep's runs (no early exit) on the packaged kernel and on one compiled from ``--kernel-source``, one
    thread each, ``--repeat`` times interleaved; prints both times and their ratio. Returns whether both give the
    same collapse steps and final states, bit for bit."""
    cc = native_build.find_compiler()
    with tempfile.TemporaryDirectory() as tmp:
        path, msg = native_build.compile_cached("lclass_kernel_other", args.kernel_source.read_text(encoding="utf-8"),
                                                cc, Path(tmp), native.BASE_FLAGS, native.ARCH_FLAGS)
        if path is None:
            print(f"--kernel-source: {msg}")
            return False
        libs = {"packaged kernel.c": None, str(args.kernel_source): native.open_kernel(path)}
        inits, ks, etas = sweep_runs(args.ks, args.m, args.etas, trials=args.trials, seed=args.seed)
        kw = {"steps": args.steps, "tol": COLLAPSE_TOL, "early_exit": False, "check_every": lclass_engine.CHECK_EVERY,
              "renorm_every": lclass_engine.RENORM_EVERY, "stable_mean": lclass_engine.STABLE_MEAN,
              "stable_reach": lclass_engine.STABLE_REACH, "threads": 1, "final_states": True,
              "group_bytes": lclass_engine.resolve_chunk_bytes(torch.device("cpu"), None)}
        times, outs = {}, {}
        for _ in range(args.repeat):
            for label, lib in libs.items():
                t0 = time.perf_counter()
                outs[label] = native.decide(inits, ks, etas, lib=lib, **kw)
                times.setdefault(label, []).append(time.perf_counter() - t0)
    (a_label, a), (b_label, b) = outs.items()
    same = (np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
            and all(x.tobytes() == y.tobytes() for x, y in zip(a[3], b[3])))
    t_a, t_b = min(times[a_label]), min(times[b_label])
    print(f"{a_label:<30}: {t_a:8.2f} s on 1 thread (min of {args.repeat})")
    print(f"{b_label:<30}: {t_b:8.2f} s on 1 thread; the packaged kernel is {t_b / t_a:.2f}x faster; the same "
          f"collapse steps and final states, bit for bit: {same}")
    return same


def _report(variants, results: dict, times: dict, loops: dict, n_runs: int) -> bool:
    """Print the times, the speed-ups and whether every implementation agrees; returns that agreement."""
    t_best = min(times["auto"])
    for key, label, _, _ in variants:
        ts = sorted(times[key])
        spread = f"  (min of {len(ts)}; median {np.median(ts):.2f}, max {ts[-1]:.2f})" if len(ts) > 1 else ""
        line = f"{label:<30}: {ts[0]:8.2f} s"
        if key != "auto":
            line += f"   the default engine is {ts[0] / t_best:5.1f}x faster"
        print(line + spread)
    for label, (t, _) in loops.items():
        print(f"{label:<30}: {t:8.2f} s   speed-up {t / t_best:6.1f}x")
    batched = results["auto"]
    same = all(np.array_equal(batched, r) for r in results.values()) and all(
        np.array_equal(batched, r) for _, r in loops.values())
    n_col = int((batched >= 0).sum())
    print(f"collapsed runs: {n_col}/{n_runs}; all implementations agree on every collapse step: {same}")
    if not same:
        others = [(label, results[key]) for key, label, _, _ in variants[1:]]
        others += [(label, r) for label, (_, r) in loops.items()]
        for label, other in others:
            diff = np.argwhere(batched != other)
            if len(diff):
                print(f"MISMATCH with {label} in {len(diff)} runs, first (k index, trial, eta index): "
                      f"{diff[:5].tolist()}")
    return same


def main(argv: list[str] | None = None) -> int:
    args, dev = _parse(argv)
    with torch_threads(args.threads):
        n_runs = len(args.ks) * args.trials * len(args.etas)
        engine = engine_name(dev)
        print(f"workload: {len(args.ks)} k values ({min(args.ks)}..{max(args.ks)}) x {args.trials} trials x "
              f"{len(args.etas)} etas = {n_runs} runs x {args.steps} steps, m={args.m}, device {dev}, "
              f"{args.threads} CPU thread(s)")
        print(f"engine: {engine}")
        threads = args.kernel_threads or native_build.default_threads()
        native_engine = engine.startswith("native")
        label = f"engine (native kernel, {threads} thr.)" if native_engine else "engine (torch ops)"
        variants = [("auto", label, "auto", threads if native_engine else None)]
        if native_engine and threads > 1:
            variants.append(("one", "native kernel, 1 thread", "auto", 1))
        if dev.type == "cpu" and native_engine and not args.skip_torch_engine:
            variants.append(("torch", "torch engine", "torch", None))
        results, times = _time_engines(args, dev, variants)
        if "one" in times:
            print(f"native kernel on {threads} threads against 1 (min of {args.repeat}): "
                  f"{min(times['one']) / min(times['auto']):.2f}x, the same collapse steps: "
                  f"{np.array_equal(results['one'], results['auto'])}")
        same_source = _compare_kernel_source(args) if args.kernel_source is not None else True
        loops = _time_loops(args, dev)
        return 0 if _report(variants, results, times, loops, n_runs) and same_source else 1


if __name__ == "__main__":
    raise SystemExit(main())
