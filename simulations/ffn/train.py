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

Batching: the runs (seeds) of one configuration train together, in chunks of ``chunk`` runs that go
through all their epochs before the next chunk starts (so a chunk's tensors stay in the CPU cache). The
weights of a chunk's networks are stacked, W: (S, in, out), and applied with torch.baddbmm; Adam is
elementwise, so one Adam over the stacked weights of the summed per-seed losses makes exactly the updates of
S separate optimisers (a test checks batched == separate). The base losses are mapped over seeds with
torch.func.vmap (``loss_mode="auto"`` falls back to a Python loop over seeds if a loss does not vmap); the
CLOP term of all seeds is one call of clop_term on the stacked embeddings with a stacked prototype table
(:func:`clop_term_all_seeds`). The default chunk on a CPU is :data:`CHUNK` (``benchmarks/bench_ffn.py``
measures chunk sizes against training every run alone); on CUDA all runs train at once.
"""

from __future__ import annotations

import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from clop import losses as clop_losses
from clop import metrics as clop_metrics
from clop import prototypes as clop_prototypes
from clop.util.checks import check_choice, check_positive, check_size
from clop.util.device import default_device
from simulations import native_build
from simulations.ffn import fused
from simulations.ffn import native as ffn_native
from simulations.ffn.grads import CLOP_LAMBDA, LOSS_PARAMS
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
    "ENGINES", "estimate_bytes", "init_params", "ffn", "base_loss_fn", "clop_term_all_seeds",
    "resolve_loss_mode", "resolve_engine", "engine_status", "default_chunk", "train_runs", "embedding", "evaluate",
    "run_experiment",
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


def ffn(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Apply S stacked FFNs: x: (S, N, dim) -> (S, N, dim). Linear, ReLU, Linear, ReLU, Linear."""
    w1, b1, w2, b2, w3, b3 = params
    h = torch.relu(torch.baddbmm(b1, x, w1))
    h = torch.relu(torch.baddbmm(b2, h, w2))
    return torch.baddbmm(b3, h, w3)


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


def base_loss_fn(name: str):
    """The functional base loss of clop.losses for a make_loss name, with the settings of
    :data:`simulations.ffn.grads.LOSS_PARAMS` (InfoNCE tau = 0.5, DCL tau = 0.1, Barlow Twins lambda = 5e-3,
    VICReg at clop.losses' defaults)."""
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {list(LOSSES)}; got {name!r}")
    fn = {"infonce": clop_losses.info_nce, "dcl": clop_losses.dcl, "barlowtwins": clop_losses.barlow_twins,
          "vicreg": clop_losses.vicreg}[name]
    params = LOSS_PARAMS[name]
    return lambda z1, z2: fn(z1, z2, **params)


def clop_term_all_seeds(z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """Sum over seeds of the CLOP term of Eq. (4) on both views, in ONE call of clop.losses.clop_term.

    z1, z2: (S, B, D) views of S independent runs; labels: (S, B) with -1 = unlabeled; protos: (S, k, D).
    Seed s has its own prototypes, so its labels are shifted to rows s*k .. s*k+k-1 of the stacked
    prototype table (S*k, D); the term is a sum over labeled points, so this equals
    sum_s [clop_term(z1[s], labels[s], protos[s]) + clop_term(z2[s], labels[s], protos[s])] exactly
    (CLOPObjective's "both views" convention), and the gradient of seed s reaches only its own weights.
    """
    s_, b, d = z1.shape
    k = protos.shape[1]
    offset = (torch.arange(s_, device=labels.device) * k)[:, None]
    shifted = torch.where(labels >= 0, labels + offset, torch.full_like(labels, -1)).reshape(-1)
    z = torch.cat([z1.reshape(s_ * b, d), z2.reshape(s_ * b, d)])
    return clop_losses.clop_term(
        z, torch.cat([shifted, shifted]), protos.reshape(s_ * k, d), similarity="cosine", lam=CLOP_LAMBDA, reduction="sum"
    )


def _batched_base(name: str, mode: str):
    """F(z1, z2) -> (S,) per-seed base losses for z1, z2: (S, B, D).

    mode "vmap" maps the clop.losses function with torch.func.vmap; "loop" calls it once per seed.
    """
    f = base_loss_fn(name)
    if mode == "vmap":
        return torch.func.vmap(f)
    if mode == "loop":
        return lambda z1, z2: torch.stack([f(z1[i], z2[i]) for i in range(z1.shape[0])])
    raise ValueError(f"loss_mode must be 'vmap', 'loop' or 'auto'; got {mode!r}")


def resolve_loss_mode(name: str, mode: str = "auto") -> str:
    """'auto' -> 'vmap' when the base loss runs and back-propagates under vmap with the loop's values, else 'loop'."""
    if mode != "auto":
        return mode
    z1 = torch.randn(2, 8, DIM, generator=generator(0), requires_grad=True)
    z2 = torch.randn(2, 8, DIM, generator=generator(1))
    try:
        out = _batched_base(name, "vmap")(z1, z2)
        ref = _batched_base(name, "loop")(z1, z2)
        out.sum().backward()
        if out.shape != (2,) or not torch.allclose(out, ref, rtol=1e-5, atol=1e-6):
            return "loop"
    except Exception:  # any vmap incompatibility (data-dependent shapes, .item(), ...) -> loop
        return "loop"
    return "vmap"


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
    base_losses = _batched_base(loss, resolve_loss_mode(loss, loss_mode)) if engine == "autograd" else None
    lib = ffn_native.loaded(dtype) if engine == "native" else None

    def one(start: int):
        part = data.select(slice(start, start + chunk))
        hist: list | None = [] if history is not None else None
        x, labels, protos, params, draw = _chunk_setup(part, hidden, noise_var, dev, dtype)
        if engine == "autograd":
            z = _train_chunk_autograd(base_losses, use_clop, x, labels, protos, params, draw, epochs, batch_size, lr,
                                      progress, hist)
        else:
            z = fused.train_chunk(loss, use_clop, x, labels, protos, params, draw, epochs=epochs,
                                  batch_size=batch_size, lr=lr, progress=progress, history=hist, kernel=lib)
        return z.cpu(), hist

    starts = list(range(0, len(data.seeds), chunk))
    workers = native_build.default_threads() if workers is None else check_size("workers", workers, 1)
    if workers > 1 and len(starts) > 1 and dev.type == "cpu":
        with ThreadPoolExecutor(max_workers=min(workers, len(starts))) as pool:
            results = list(pool.map(one, starts))
    else:
        results = [one(s) for s in starts]
    outputs = [r[0] for r in results]
    histories = [r[1] for r in results]
    out = torch.cat(outputs)
    if history is not None:
        history.extend(torch.cat([h[e] for h in histories]) for e in range(epochs))
    bad = ~torch.isfinite(out).all(dim=2).all(dim=1)
    if bool(bad.any()):
        seeds = [s for s, b in zip(data.seeds, bad.tolist()) if b]
        raise FloatingPointError(
            f"{DISPLAY[loss]}{' + CLOP' if use_clop else ''} diverged (non-finite outputs) at lr={lr:g} for "
            f"{len(seeds)} of {len(data.seeds)} runs (seeds {seeds[:5]}{' ...' if len(seeds) > 5 else ''}); "
            "use a smaller learning rate"
        )
    return out


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


def _chunk_setup(data, hidden, noise_var, dev, dtype):
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


def _train_chunk_autograd(base_losses, use_clop, x, labels, protos, params, draw, epochs, batch_size, lr,
                          progress, history):
    """Train the S stacked runs together through all epochs with autograd; returns f(x) (S, N, D)."""
    params = [p.requires_grad_(True) for p in params]
    opt = torch.optim.Adam(params, lr=lr)
    n = x.shape[1]
    rows = torch.arange(x.shape[0], device=x.device)[:, None]
    for _ in range(epochs):
        epoch_loss = torch.zeros(x.shape[0])
        n_batches = 0
        v1_all, v2_all, order = draw()
        for start in range(0, n, batch_size):
            idx = order[:, start : start + batch_size]
            v1, v2 = v1_all[rows, idx], v2_all[rows, idx]
            z1, z2 = ffn(params, torch.cat([v1, v2], dim=1)).split(idx.shape[1], dim=1)  # both views, one pass
            # Seeds share no weights, so the gradient of the sum is each run's own gradient.
            per_seed = base_losses(z1, z2)
            total = per_seed.sum()
            if use_clop:
                total = total + clop_term_all_seeds(z1, z2, labels[rows, idx], protos)
            if history is not None:
                epoch_loss += per_seed.detach().cpu()
                n_batches += 1
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
        if history is not None:
            history.append(epoch_loss / max(n_batches, 1))
        if progress is not None:
            progress.update(x.shape[0])
    with torch.no_grad():
        return ffn(params, x)


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
