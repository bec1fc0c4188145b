"""Training of the synthetic 3D experiment of the CLOP paper (arXiv 2403.18699, Section 4, Appendix B).

A 3-layer feed-forward network (FFN) is trained SimCLR-style with InfoNCE, DCL, Barlow Twins or VICReg,
with or without the CLOP term of Eq. (4),

    L_CLOP = L_CL + lambda * sum_{i in S} (1 - s(z_i, c_{y_i})),

on the data of :mod:`simulations.ffn.data`; the views add Gaussian noise (mean 0, variance 0.05) and invert
the sign with probability 0.5 (Section 4). Choices the paper leaves open (printed into every table5.md):

* FFN R^3 -> 32 -> 32 -> R^3: Linear, ReLU, Linear, ReLU, Linear (three linear layers), PyTorch's
  default nn.Linear initialisation (weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)));
* views: v = s * (x + e) with e ~ N(0, 0.05 * I_3) and s = +-1 with probability 1/2, drawn independently
  for the two views, for every point, every epoch;
* mini-batches of 100 points (a fresh random order per epoch, 5 optimiser steps per epoch), 200 epochs
  (1000 steps), Adam(lr = 1e-2, betas (0.9, 0.999)), float32, chosen from the training-loss curves so that
  every loss has flattened by the last epoch (docs/simulations.md);
* loss inputs: the raw network outputs z1, z2 = f(v1), f(v2) go to every base loss. InfoNCE (temperature
  0.5) and DCL (temperature 0.1) L2-normalise internally; Barlow Twins (lambda_offdiag = 5e-3) sees the
  raw outputs and standardises them along the batch itself; VICReg (clop.losses defaults) sees the raw
  outputs. The CLOP term (clop.losses.clop_term, cosine similarity, lambda = 1, reduction "sum" as in
  Eq. (4), summed over the labeled points of each mini-batch) is applied to both views, as
  clop.losses.CLOPObjective does, with labels -1 for the unlabeled points and prototypes
  clop.prototypes.orthonormal(3, 3, seed=<run seed>);
* for one seed, the data, labeled set, initial weights and augmentation noise are the same for all 8
  configurations (paired comparison); runs of different seeds are independent.

Evaluation (:func:`evaluate`): the network is applied to the clean inputs x (no augmentation). The
embedding is what the base loss compares: the L2-normalised output for InfoNCE and DCL (their loss only
sees directions), the raw output for Barlow Twins and VICReg. KNN accuracy (scikit-learn
KNeighborsClassifier(n_neighbors=5), Euclidean) is fitted on the 50 labeled embeddings and scored on the
other 450; clop.metrics.stable_rank and clop.metrics.entropy_rank are computed on all 500 embeddings.

Engines (:data:`ENGINES`, chosen by ``engine``; every one makes the same updates in exact arithmetic):

* ``native`` (the default on a CPU where a C compiler works): the fused training of
  :mod:`simulations.ffn.fused` computed by the C kernel of :mod:`simulations.ffn.native`, one run at a time
  with its state in the cache, the same bits on every machine and for any number of workers or chunk size;
* ``fused`` (the default elsewhere, e.g. CUDA): the same closed-form forward, loss gradients
  (:mod:`simulations.ffn.grads`), backward and Adam as torch operations on the stacked weights of a chunk,
  W: (S, in, out), applied with torch.baddbmm;
* ``autograd``: the plain baseline, the numbers the tables had before the fused engines. The stacked weights
  are trained by autograd and one torch.optim.Adam over the summed per-seed losses (Adam is elementwise, so
  this makes exactly the updates of S separate optimisers; a test checks batched == separate); the base losses
  are mapped over seeds with torch.func.vmap (``loss_mode="auto"`` falls back to a Python loop over seeds if a
  loss does not vmap) and the CLOP term of all seeds is one call of clop_term on the stacked embeddings with a
  stacked prototype table (:func:`clop_term_all_seeds`).

The engines sum in different orders, so their float32 runs differ by round-off that training amplifies
(docs/performance.md gives how much, and that Table 5's verdicts stay the same). The runs of one
configuration train in chunks (:func:`default_chunk`) that go through all their epochs; the chunks run on
``workers`` threads (default every usable core, :func:`simulations.native_build.default_threads`).
"""

from __future__ import annotations

import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from clop import metrics as clop_metrics
from clop import prototypes as clop_prototypes
from clop.util.checks import check_choice, check_positive, check_size
from clop.util.device import default_device
from simulations import native_build
from simulations.ffn import autograd, fused
from simulations.ffn import native as ffn_native
from simulations.ffn.data import (
    DIM,
    N_POINTS,
    NOISE_VAR,
    SyntheticData,
    child_seeds,
    generator,
    knn_accuracy,
    make_data,
    stack_data,
)

__all__ = [
    "LOSSES", "DISPLAY", "COSINE_LOSSES", "HIDDEN", "EPOCHS", "BATCH_SIZE", "LR", "CHUNK", "NATIVE_CHUNK",
    "ENGINES", "estimate_bytes", "init_params", "resolve_engine", "engine_status", "default_chunk", "train_runs",
    "chunk_setup", "embedding", "evaluate", "run_experiment",
]

# Loss names (clop.losses.make_loss names) in the column order of Table 5, and their display names.
LOSSES: tuple[str, ...] = ("infonce", "dcl", "vicreg", "barlowtwins")
DISPLAY = {"infonce": "InfoNCE", "dcl": "DCL", "vicreg": "VICReg", "barlowtwins": "BarlowTwins"}
# Losses whose similarity is the cosine: their embedding for KNN / ranks / figure is the L2-normalised output.
COSINE_LOSSES = ("infonce", "dcl")

HIDDEN = 32
EPOCHS = 200
BATCH_SIZE = 100
LR = 1e-2
CHUNK = 64  # runs trained together on a CPU by the torch engines (on CUDA all of them); benchmarks/bench_ffn.py
NATIVE_CHUNK = 16  # runs per call of the native kernel (one run at a time inside; several chunks balance the threads)
ENGINES = ("auto", "native", "fused", "autograd")
"""Values of ``engine`` (:func:`train_runs`): ``native`` (the fused training in the C kernel of
:mod:`simulations.ffn.native`, CPU only), ``fused`` (the same formulas as torch operations on stacked runs,
:mod:`simulations.ffn.fused`, any device), ``autograd`` (autograd, vmap and torch.optim.Adam: the plain
baseline, whose numbers the tables had before the fused training), ``auto`` (native on the CPU where the
kernel compiles, else fused)."""


def init_params(seeds: tuple[int, ...], *, hidden: int = HIDDEN, dim: int = DIM) -> list[torch.Tensor]:
    """Stacked weights of S FFNs dim -> hidden -> hidden -> dim, nn.Linear's default initialisation.

    Returns [W1 (S, dim, h), b1 (S, 1, h), W2 (S, h, h), b2 (S, 1, h), W3 (S, h, dim), b3 (S, 1, dim)],
    float32 on the CPU; network s draws from the second child seed of seeds[s] only.
    """
    shapes = [(dim, hidden), (hidden, hidden), (hidden, dim)]
    per_seed = []
    for seed in seeds:
        g = generator(child_seeds(seed)[1])
        ps = []
        for fan_in, fan_out in shapes:
            bound = 1.0 / math.sqrt(fan_in)
            ps.append((torch.rand(fan_in, fan_out, generator=g) * 2 - 1) * bound)
            ps.append((torch.rand(1, fan_out, generator=g) * 2 - 1) * bound)
        per_seed.append(ps)
    return [torch.stack([ps[j] for ps in per_seed]) for j in range(len(shapes) * 2)]


def _augment(x: torch.Tensor, gens: list[torch.Generator], noise_var: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views per point: s * (x + e), e ~ N(0, noise_var I), s = +-1 w.p. 1/2. x: (S, N, d)."""
    s_, n, d = x.shape
    noise = torch.empty(s_, 2, n, d)
    flips = torch.empty(s_, 2, n, 1)
    for i, g in enumerate(gens):
        noise[i] = torch.randn(2, n, d, generator=g)
        flips[i] = torch.randint(0, 2, (2, n, 1), generator=g, dtype=torch.float32)
    noise = noise.to(device=x.device, dtype=x.dtype)
    sign = (1.0 - 2.0 * flips).to(device=x.device, dtype=x.dtype)
    std = math.sqrt(noise_var)
    return sign[:, 0] * (x + std * noise[:, 0]), sign[:, 1] * (x + std * noise[:, 1])


def estimate_bytes(n_seeds: int, n_configs: int, *, chunk: int = CHUNK, hidden: int = HIDDEN,
                   batch_size: int = BATCH_SIZE, n_points: int = N_POINTS, workers: int | None = 1) -> int:
    """Host bytes of :func:`run_experiment`, estimated before anything is allocated (right order, not exact).

    Kept for the whole run: the stacked data of every seed (x, clean, t as float32; y int64; labeled bool)
    and the evaluated embeddings of every configuration (float32). Alive while a chunk trains, for each of
    ``workers`` chunks at once (None: every usable core): per run, the weights with their gradients and two
    Adam moments (4 copies of h^2 + 8h + 3 floats), about eight (2B, h) activation tensors, about eight
    (2B, 2B) logit-sized tensors (InfoNCE / DCL), and the two views of every point, all float32 (an upper
    bound for the native kernel, which holds one run's activations at a time).
    """
    f32 = 4
    per_seed = n_points * (f32 * (3 + 3 + 1) + 8 + 1) + n_configs * n_points * DIM * f32
    params = hidden * hidden + 8 * hidden + 3
    rows = 2 * min(batch_size, n_points)
    per_run = f32 * (4 * params + 8 * rows * hidden + 8 * rows * rows + 2 * n_points * DIM)
    parallel = native_build.default_threads() if workers is None else max(1, workers)
    return n_seeds * per_seed + min(parallel * chunk, n_seeds) * per_run


def resolve_engine(engine: str, device: str | torch.device | None = None) -> str:
    """``engine`` (:data:`ENGINES`) checked for ``device``, with ``auto`` resolved: ``native`` on the CPU where
    the kernel is available, else ``fused``. ValueError naming the value; RuntimeError when ``native`` is asked
    for and cannot be had."""
    engine = check_choice("engine", engine, ENGINES)
    dev = default_device(device)
    if engine == "auto":
        return "native" if dev.type == "cpu" and ffn_native.available() else "fused"
    if engine == "native":
        if dev.type != "cpu":
            raise ValueError(f"engine='native' runs on the CPU only; got device {dev}")
        ffn_native.loaded()
    return engine


def engine_status(engine: str, device: str | torch.device | None = None) -> str:
    """One line: what runs the training with ``engine`` (resolved) on ``device``."""
    engine = resolve_engine(engine, device)
    if engine == "native":
        return ffn_native.status()
    if engine == "fused":
        return f"fused torch operations on {default_device(device)}"
    return f"autograd, vmap and torch.optim.Adam on {default_device(device)}"


def default_chunk(engine: str, n_runs: int, device: torch.device) -> int:
    """Runs trained together: all of them on CUDA, :data:`NATIVE_CHUNK` per call of the native kernel,
    :data:`CHUNK` for the torch engines on a CPU."""
    if device.type == "cuda":
        return n_runs
    return NATIVE_CHUNK if engine == "native" else CHUNK


def _check_training(loss: str, epochs, batch_size, lr, hidden, chunk) -> tuple[int, int, float, int, int]:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {list(LOSSES)}; got {loss!r}")
    epochs = check_size("epochs", epochs, 0)
    batch_size = check_size("batch_size", batch_size, 2)
    hidden = check_size("hidden", hidden, 1)
    chunk = check_size("chunk", chunk, 1)
    return epochs, batch_size, check_positive("lr", lr), hidden, chunk


def train_runs(
    loss: str,
    use_clop: bool,
    data: SyntheticData,
    *,
    epochs: int = EPOCHS,
    batch_size: int = BATCH_SIZE,
    lr: float = LR,
    hidden: int = HIDDEN,
    noise_var: float = NOISE_VAR,
    device: str | torch.device | None = None,
    loss_mode: str = "auto",
    chunk: int | None = None,
    dtype: torch.dtype = torch.float32,
    progress=None,
    history: list | None = None,
    engine: str = "auto",
    workers: int | None = None,
) -> torch.Tensor:
    """Train one FFN per seed of ``data`` (stacked, (S, N, 3)) with one configuration.

    ``engine`` (:data:`ENGINES`, default ``auto``): the code that trains. The runs train ``chunk`` at a time
    (None: :func:`default_chunk`), each chunk through all its epochs (module docstring), the chunks on
    ``workers`` threads (None: every usable core; on CUDA one). A run's numbers do not depend on the number of
    workers; with the native engine they do not depend on the chunk either, with the torch engines only up to
    float32 rounding of the batched products.
    Returns the raw outputs f(x) on the clean inputs: (S, N, 3), in ``dtype`` on the CPU. ``dtype``: float32 (the
    experiment); float64 lets tests compare computations that are equal in exact arithmetic (the random draws
    are the same: they are made in float32 and then cast; the native engine then runs its float64 build).
    ``progress``: optional tqdm-like object; ``progress.update(r)`` is called once per epoch of a chunk of r runs
    (from the worker threads).
    ``history``: optional list; gets one (S,) tensor per epoch, the per-seed training loss averaged over the
    epoch's batches. Raises FloatingPointError naming the seeds when a run's outputs are not finite.
    """
    if data.x.dim() != 3:
        raise ValueError(f"data must be stacked (x of shape (S, N, D)); got x of shape {tuple(data.x.shape)}")
    dev = default_device(device)
    engine = resolve_engine(engine, dev)
    if chunk is None:
        chunk = default_chunk(engine, len(data.seeds), dev)
    epochs, batch_size, lr, hidden, chunk = _check_training(loss, epochs, batch_size, lr, hidden, chunk)
    workers = native_build.default_threads() if workers is None else check_size("workers", workers, 1)
    train = _chunk_trainer(loss, use_clop, engine, loss_mode, dtype, dev, hidden=hidden, noise_var=noise_var,
                           epochs=epochs, batch_size=batch_size, lr=lr, progress=progress)
    want_history = history is not None
    starts = list(range(0, len(data.seeds), chunk))
    parts = [data.select(slice(start, start + chunk)) for start in starts]
    if workers > 1 and len(parts) > 1 and dev.type == "cpu":
        with ThreadPoolExecutor(max_workers=min(workers, len(parts))) as pool:
            results = list(pool.map(lambda part: train(part, want_history), parts))
    else:
        results = [train(part, want_history) for part in parts]
    out = torch.cat([z for z, _ in results])
    if history is not None:
        history.extend(torch.cat([h[e] for _, h in results]) for e in range(epochs))
    _check_finite(out, data.seeds, f"{DISPLAY[loss]}{' + CLOP' if use_clop else ''}", lr)
    return out


def _chunk_trainer(loss, use_clop, engine, loss_mode, dtype, dev, **settings):
    """(chunk data, want history) -> (f(x) on the CPU, the chunk's history or None), for a resolved engine."""
    base_losses = autograd.batched_base(loss, autograd.resolve_loss_mode(loss, loss_mode)) if engine == "autograd" else None
    lib = ffn_native.loaded(dtype) if engine == "native" else None
    epochs, batch_size, lr, progress = (settings[k] for k in ("epochs", "batch_size", "lr", "progress"))

    def train(part: SyntheticData, want_history: bool):
        hist: list | None = [] if want_history else None
        x, labels, protos, params, draw = chunk_setup(part, settings["hidden"], settings["noise_var"], dev, dtype)
        if engine == "autograd":
            z = autograd.train_chunk(base_losses, use_clop, x, labels, protos, params, draw, epochs, batch_size, lr,
                                     progress, hist)
        else:
            z = fused.train_chunk(loss, use_clop, x, labels, protos, params, draw, epochs=epochs,
                                  batch_size=batch_size, lr=lr, progress=progress, history=hist, kernel=lib)
        return z.cpu(), hist

    return train


def _check_finite(out: torch.Tensor, seeds: tuple[int, ...], label: str, lr: float) -> None:
    """FloatingPointError naming the seeds whose outputs (S, N, D) are not all finite."""
    bad = ~torch.isfinite(out).all(dim=2).all(dim=1)
    if bool(bad.any()):
        failed = [s for s, b in zip(seeds, bad.tolist()) if b]
        raise FloatingPointError(
            f"{label} diverged (non-finite outputs) at lr={lr:g} for {len(failed)} of {len(seeds)} runs "
            f"(seeds {failed[:5]}{' ...' if len(failed) > 5 else ''}); use a smaller learning rate"
        )


def _views_draw(x: torch.Tensor, gens: list[torch.Generator], noise_var: float):
    """The epoch draw of a chunk: () -> (v1, v2, order), the views of every point and the point order.

    Per seed and epoch: fresh views of all points (:func:`_augment`), then a random order that the training
    cuts into consecutive batches (the last one may be smaller). Every point is augmented once per epoch,
    independently per view. Both engines draw the same numbers in the same order.
    """
    n = x.shape[1]

    def draw():
        v1, v2 = _augment(x, gens, noise_var)
        order = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(x.device)
        return v1, v2, order

    return draw


def chunk_setup(data: SyntheticData, hidden: int, noise_var: float, dev: torch.device, dtype: torch.dtype):
    """The tensors a chunk trains from: (x, labels, prototypes, initial params, epoch draw)."""
    seeds = data.seeds
    x = data.x.to(device=dev, dtype=dtype)
    labels = data.train_labels.to(dev)
    dim = x.shape[-1]
    k = int(data.directions.shape[-2])
    protos = torch.stack(
        [clop_prototypes.orthonormal(k, dim, seed=s, dtype=torch.float32, device="cpu") for s in seeds]
    ).to(device=dev, dtype=dtype)
    params = [p.to(device=dev, dtype=dtype) for p in init_params(seeds, hidden=hidden, dim=dim)]
    draw = _views_draw(x, [generator(child_seeds(s)[2]) for s in seeds], noise_var)
    return x, labels, protos, params, draw


def embedding(loss: str, z: torch.Tensor) -> torch.Tensor:
    """The embedding that is evaluated and drawn: L2-normalised output for InfoNCE/DCL, raw otherwise."""
    if loss in COSINE_LOSSES:
        return torch.nn.functional.normalize(z, dim=-1)
    return z


def evaluate(loss: str, z: torch.Tensor, data: SyntheticData) -> list[dict]:
    """Per-seed KNN accuracy, stable rank and entropy rank. z: (S, N, D) raw outputs; data stacked."""
    emb = embedding(loss, z)
    rows = []
    for i, seed in enumerate(data.seeds):
        e = emb[i].double()
        rows.append(
            {
                "seed": seed,
                "knn_accuracy": knn_accuracy(e.numpy(), data.y[i].numpy(), data.labeled[i].numpy()),
                "stable_rank": float(clop_metrics.stable_rank(e)),
                "entropy_rank": float(clop_metrics.entropy_rank(e)),
            }
        )
    return rows


def run_experiment(
    seeds: list[int],
    *,
    losses: tuple[str, ...] = LOSSES,
    clop_settings: tuple[bool, ...] = (False, True),
    epochs: int = EPOCHS,
    batch_size: int = BATCH_SIZE,
    lr: float = LR,
    hidden: int = HIDDEN,
    data_options: dict | None = None,
    device: str | torch.device | None = None,
    loss_mode: str = "auto",
    chunk: int | None = None,
    show_progress: bool = True,
    engine: str = "auto",
    workers: int | None = None,
):
    """Train every (loss, clop) configuration on every seed.

    data_options: keyword arguments of :func:`make_data` (directions, min_angle_deg, magnitudes, ...).
    engine, workers, chunk, loss_mode: as in :func:`train_runs`.
    show_progress: a progress bar on a terminal; one line per configuration on stderr otherwise (a log file).
    Returns (results, embeddings, data): results is a pandas DataFrame with one row per run and columns
    loss, clop, seed, knn_accuracy, stable_rank, entropy_rank; embeddings maps (loss, clop) to the
    evaluated embeddings (S, N, 3); data is the stacked SyntheticData.
    """
    import pandas as pd

    from clop.util.progress import interactive, progress_bar

    if not seeds:
        raise ValueError("seeds must be a non-empty list of non-negative integers; got an empty list")
    for name in losses:
        if name not in LOSSES:
            raise ValueError(f"losses must be a subset of {list(LOSSES)}; got {name!r}")
    data = stack_data([make_data(s, **(data_options or {})) for s in seeds])
    training = dict(epochs=epochs, batch_size=batch_size, lr=lr, hidden=hidden, device=device, loss_mode=loss_mode,
                    chunk=chunk, engine=engine, workers=workers)
    rows, embs = [], {}
    configs = [(name, c) for name in losses for c in clop_settings]
    on_terminal = show_progress and interactive()
    bar = progress_bar(total=len(configs) * len(seeds) * epochs, desc="synthetic FFN", unit=" run-epochs",
                       enabled=on_terminal, unit_scale=True)
    try:
        for i, (name, c) in enumerate(configs):
            label = f"{DISPLAY[name]}{' + CLOP' if c else ''}"
            bar.set_postfix_str(label)
            start = time.perf_counter()
            z = train_runs(name, c, data, progress=bar, **training)
            embs[(name, c)] = embedding(name, z)
            rows += [{"loss": name, "clop": c, **r} for r in evaluate(name, z, data)]
            if show_progress and not on_terminal:
                print(f"synthetic FFN [{i + 1}/{len(configs)}] {label}: {len(seeds)} runs x {epochs} epochs in "
                      f"{time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    finally:
        bar.close()
    cols = ["loss", "clop", "seed", "knn_accuracy", "stable_rank", "entropy_rank"]
    return pd.DataFrame(rows, columns=cols), embs, data
