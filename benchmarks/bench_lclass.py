"""Benchmark: the batched L_class engine against a plain loop over runs (not a test).

Workload: a sweep over all ``--ks`` x ``--trials`` starts x ``--etas`` learning rates, ``--steps`` Appendix D
steps each (no early exit, so both sides do exactly the same runs and steps), reporting the first
complete-collapse step of every run. Three implementations, timed in the same process:

* batched: :func:`simulations.lclass.sweep` — all runs in stacked tensors, one batched program per step;
* loop (m-dim): one run at a time, the plain per-run torch code a user would write on X: (k, m)
  (``mu = X.mean(0); X = (1 + eta/(k-1)) X - eta k/(k-1) mu; X = X / ||rows||``), mean norms kept in a
  preallocated tensor and read once at the end (no per-step host sync);
* loop (k-dim): the same loop on the exact k-dimensional coordinates of the rows (isolates the gain of
  batching from the gain of the reduction).

All three must give the same collapse steps (checked; a mismatch is printed). Prints the times and the
speed-ups. Run: ``python benchmarks/bench_lclass.py [--device cpu] [--steps 200] [--threads 1]``.
"""

from __future__ import annotations

if __name__ == "__main__" and __package__ in (None, ""):  # run as a file: make the repo root importable
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import argparse
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from clop._device import default_device, torch_threads
from simulations.lclass import COLLAPSE_TOL, initial_embeddings, reduce_coordinates, sweep


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
    bar = tqdm(total=out.size, desc=f"loop ({'k' if reduced else 'm'}-dim)", leave=False, disable=not progress)
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


def main(argv: list[str] | None = None) -> int:
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
    args = parser.parse_args(argv)
    if any(k < 3 for k in args.ks):
        parser.error(f"--ks must all be >= 3; got {args.ks}")
    dev = default_device(args.device)
    with torch_threads(args.threads):
        n_runs = len(args.ks) * args.trials * len(args.etas)
        print(f"workload: {len(args.ks)} k values ({min(args.ks)}..{max(args.ks)}) x {args.trials} trials x "
              f"{len(args.etas)} etas = {n_runs} runs x {args.steps} steps, m={args.m}, device {dev}, "
              f"{args.threads} CPU thread(s)")
        sweep(args.ks[:2], args.m, args.etas[:1], trials=1, steps=5, device=dev)  # warm-up
        _sync(dev)
        t0 = time.perf_counter()
        batched = sweep(args.ks, args.m, args.etas, trials=args.trials, steps=args.steps, seed=args.seed, device=dev)
        _sync(dev)
        t_batched = time.perf_counter() - t0
        t0 = time.perf_counter()
        loop_m = plain_sweep(args.ks, args.m, args.etas, args.trials, args.steps, args.seed, dev, False, True)
        _sync(dev)
        t_loop_m = time.perf_counter() - t0
        print(f"batched engine      : {t_batched:8.2f} s")
        print(f"plain loop (m-dim)  : {t_loop_m:8.2f} s   speed-up {t_loop_m / t_batched:6.1f}x")
        same = np.array_equal(batched, loop_m)
        if not args.skip_reduced_loop:
            t0 = time.perf_counter()
            loop_k = plain_sweep(args.ks, args.m, args.etas, args.trials, args.steps, args.seed, dev, True, True)
            _sync(dev)
            t_loop_k = time.perf_counter() - t0
            print(f"plain loop (k-dim)  : {t_loop_k:8.2f} s   speed-up {t_loop_k / t_batched:6.1f}x")
            same = same and np.array_equal(batched, loop_k)
        n_col = int((batched >= 0).sum())
        print(f"collapsed runs: {n_col}/{n_runs}; all implementations agree on every collapse step: {same}")
        if not same:
            diff = np.argwhere(batched != loop_m)
            print(f"MISMATCH in {len(diff)} runs, first (k index, trial, eta index): {diff[:5].tolist()}")
        return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
