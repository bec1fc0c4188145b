"""Pre-training of the CLOP paper's Section 5: ResNet-50 in the SimCLR framework, with or without CLOP.

    python -m training.pretrain --dataset cifar100 --data-root DATA --loss infonce --label-fraction 0.1
    python -m training.pretrain --smoke            # a few steps on generated data, on the CPU
    torchrun --nproc-per-node 8 -m training.pretrain ...   # several GPUs (see training.distributed)
    python -m training.pretrain ... --resume       # continue a killed run exactly where it stopped

One run = one directory (``--out``) holding

* ``config.json``         every setting, resolved (dataset-dependent defaults filled in);
* ``labeled_indices.npy`` the class-stratified labeled subset (indices into the training split);
* ``metrics.csv``         one row per epoch: loss and its parts, learning rate, throughput and the
                          collapse metrics of a fixed evaluation batch (``clop.metrics``);
* ``checkpoint.pt``       model, loss module (the CLOP prototypes are its buffer), optimiser and
                          schedule state, the position in the epoch; written atomically at every epoch
                          end and every ``--checkpoint-every`` steps. Resuming from it is exact: the
                          views of image i in epoch e depend only on (seed, e, i) and the batch order
                          of epoch e only on (seed, e) (see :class:`BatchOrder`);
* ``train.log``           what the console printed;
* ``last_good.pt``        only if the loss became NaN or infinite: the state just before that step.

Defaults and their sources (the paper states only some of them):

* batch 1024 and lr = 0.3 x batch / 256: CLOP paper Sec. 5 (the lr and lambda sweeps and the ablations
  use batch 1024; the printed rule is lr = 0.3 x batch size / 256);
* 200 epochs on CIFAR-100 and ImageNet, 100 on Tiny-ImageNet; lambda = 1; 10 % labels
  (semi-supervised) or all labels (SupCon): CLOP paper Sec. 5;
* LARS, momentum 0.9, weight decay 1e-6, trust coefficient 1e-3, 10 warm-up epochs then cosine
  decay, projection head 2048-2048-128: SimCLR (Chen et al. 2020a, Sec. B.6 / B.9), the framework the
  paper says it uses;
* temperatures: the loss modules' defaults in ``clop.losses`` (InfoNCE 0.5, SimCLR's CIFAR setting;
  SupCon 0.1, Khosla et al. 2020; DCL 0.1, Yeh et al. 2022);
* projection dim: 128 (SimCLR), raised to the number of classes rounded up to a power of two when
  that is larger, because k orthonormal prototypes need k <= dim (Tiny-ImageNet: 256, ImageNet: 1024;
  the paper does not say what it used);
* CLOP reduction "mean" over the labeled views: the scale-consistent reading of Eq. (4); "sum" (as
  printed) makes the CLOP term grow with the batch size, which would confound the batch-size sweep
  (see ``clop.losses.CLOPObjective``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from clop import metrics as clop_metrics
from clop._checks import check_choice, check_nonnegative, check_positive, check_size
from clop._device import default_device
from clop.losses import LOSSES, REDUCTIONS, SIMILARITIES, CLOPLoss, CLOPObjective, make_loss

from training import data as tdata
from training import distributed
from training.model import ARCHS, ContrastiveModel
from training.optim import LARS, make_scheduler, param_groups

log = logging.getLogger("training")

AUGMENTATIONS = ("simclr", "randaugment", "autoaugment")
PROTOTYPES = ("orthonormal", "etf")
LOSSES_WITH_TEMPERATURE = ("infonce", "dcl", "supcon")
EPOCHS = {"cifar100": 200, "imagenet": 200, "tiny-imagenet": 100, "synthetic": 20}
"""CLOP paper Sec. 5 (synthetic: ours)."""
COLLAPSE_MEAN_NORM = 0.999
"""Complete collapse: the unit-normalised embeddings of the evaluation batch have a mean of norm
>= this, i.e. they all point the same way to within a few degrees (the simulations' criterion, with
1e-6 loosened to 1e-3 for a network). A freshly initialised ResNet-50 with its projection head already
sits near 0.98 (its outputs share a large common component), so a looser threshold would flag every
run in its first epochs."""
CHECKPOINT = "checkpoint.pt"
LAST_GOOD = "last_good.pt"
METRICS = "metrics.csv"
CONFIG = "config.json"
LABELED = "labeled_indices.npy"
PROBE_RESULT = "linear_eval.json"
"""Written by training.linear_eval into the run directory."""
LOG = "train.log"
RUN_FILES = (CONFIG, LABELED, METRICS, CHECKPOINT, LAST_GOOD, LOG, PROBE_RESULT)
RESUMABLE_CHANGES = ("out", "data_root", "download", "workers", "device", "overwrite", "resume", "checkpoint_every")
"""Settings that may differ between a run and its resumption: they do not change its numbers."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the state before that step was saved first."""


@dataclasses.dataclass
class PretrainConfig:
    """Every setting of a pre-training run. ``None`` fields are filled by :meth:`resolved`."""

    out: str | None = None
    dataset: str = "cifar100"
    data_root: str = "data"
    download: bool = False
    loss: str = "infonce"
    clop_lambda: float = 1.0
    prototypes: str = "orthonormal"
    similarity: str = "cosine"
    clop_reduction: str = "mean"
    label_fraction: float = 0.1
    augmentation: str = "simclr"
    arch: str = "resnet50"
    image_size: int | None = None
    batch_size: int = 1024
    base_lr: float = 0.3
    epochs: int | None = None
    warmup_epochs: float = 10.0
    weight_decay: float = 1e-6
    momentum: float = 0.9
    trust_coefficient: float = 1e-3
    temperature: float | None = None
    projection_dim: int | None = None
    hidden_dim: int = 2048
    eval_batch: int = 512
    steps_per_epoch: int | None = None
    workers: int | None = None
    seed: int = 0
    device: str | None = None
    overwrite: bool = False
    resume: bool = False
    checkpoint_every: int | None = None
    sync_bn: bool = True

    def resolved(self) -> PretrainConfig:
        """A validated copy with the dataset-dependent defaults filled in; bad values raise ValueError."""
        c = dataclasses.replace(self)
        c.dataset = check_choice("dataset", c.dataset, tdata.DATASETS)
        c.loss = check_choice("loss", c.loss, tuple(LOSSES))
        c.prototypes = check_choice("prototypes", c.prototypes, PROTOTYPES)
        c.similarity = check_choice("similarity", c.similarity, SIMILARITIES)
        c.clop_reduction = check_choice("clop_reduction", c.clop_reduction, REDUCTIONS)
        c.augmentation = check_choice("augmentation", c.augmentation, AUGMENTATIONS)
        c.arch = check_choice("arch", c.arch, ARCHS)
        check_nonnegative("clop_lambda", c.clop_lambda)
        if not 0.0 < c.label_fraction <= 1.0:
            raise ValueError(f"label_fraction must be in (0, 1]; got {c.label_fraction!r}")
        info = tdata.DATASET_INFO[c.dataset]
        c.data_root = str(Path(c.data_root).expanduser().resolve())  # a probe run from elsewhere finds the data
        c.image_size = check_size("image_size", c.image_size if c.image_size is not None else info.image_size, 8)
        c.epochs = check_size("epochs", c.epochs if c.epochs is not None else EPOCHS[c.dataset])
        c.batch_size = check_size("batch_size", c.batch_size, 2)
        for name in ("base_lr", "trust_coefficient"):
            check_positive(name, getattr(c, name))
        for name in ("weight_decay", "momentum", "warmup_epochs"):
            check_nonnegative(name, getattr(c, name))
        if c.warmup_epochs > c.epochs:
            raise ValueError(f"warmup_epochs={c.warmup_epochs} exceeds epochs={c.epochs}; pass a smaller --warmup-epochs")
        if c.temperature is not None:
            if c.loss not in LOSSES_WITH_TEMPERATURE:
                raise ValueError(f"temperature: loss={c.loss!r} has no temperature; it applies to {LOSSES_WITH_TEMPERATURE}")
            check_positive("temperature", c.temperature)
        k = info.num_classes
        if c.projection_dim is None:
            c.projection_dim = max(128, 1 << (k - 1).bit_length())
        c.projection_dim = check_size("projection_dim", c.projection_dim)
        if c.clop_lambda > 0 and c.prototypes == "orthonormal" and c.projection_dim < k:
            raise ValueError(
                f"projection_dim={c.projection_dim} is smaller than the {k} classes of {c.dataset}: "
                f"{k} orthonormal prototypes need projection_dim >= {k}"
            )
        c.hidden_dim = check_size("hidden_dim", c.hidden_dim)
        c.eval_batch = check_size("eval_batch", c.eval_batch, 2)
        if c.steps_per_epoch is not None:
            c.steps_per_epoch = check_size("steps_per_epoch", c.steps_per_epoch)
        if c.checkpoint_every is not None:
            c.checkpoint_every = check_size("checkpoint_every", c.checkpoint_every)
        if c.resume and c.overwrite:
            raise ValueError("resume and overwrite exclude each other; pass one of --resume, --overwrite")
        if c.workers is None:
            c.workers = default_workers()
        c.workers = check_size("workers", c.workers, 0)
        default_device(c.device)  # fails now if CUDA is asked for and absent
        if c.out is None:
            tag = f"clop{c.clop_lambda:g}" if c.clop_lambda > 0 else "noclop"
            settings = {k: v for k, v in dataclasses.asdict(c).items() if k not in RESUMABLE_CHANGES}
            digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:6]
            c.out = str(Path("runs") / f"{c.dataset}-{c.loss}-{tag}-l{c.label_fraction:g}-b{c.batch_size}"
                        f"-lr{c.base_lr:g}-s{c.seed}-{digest}")
        return c

    @property
    def lr(self) -> float:
        """The learning rate the optimiser uses: base_lr x batch_size / 256 (CLOP paper Sec. 5)."""
        return self.base_lr * self.batch_size / 256


def default_workers() -> int:
    """Data-loading processes per training process: min(8, CPUs / processes on this machine), at least 1."""
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # set by torchrun
    return max(1, min(8, (os.cpu_count() or 1) // per_node))


def changed_settings(saved: dict, now: dict) -> list[str]:
    """The settings of ``now`` that differ from ``saved`` and change a run's numbers, as "name: saved -> now"."""
    return [f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in now.items()
            if k not in RESUMABLE_CHANGES and saved.get(k) != v]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _worker_init(worker_id: int) -> None:  # numpy/random in workers follow torch's per-worker seed
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def _replace_durably(tmp: Path, path: Path) -> None:
    """Rename a fully written temporary file over ``path``; the data is on disk before the rename."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable (not possible on every platform)
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: object, path: Path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename: a killed run (or a crashed
    machine) leaves the previous file or the new one, never half a file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    _replace_durably(tmp, path)


def build_model(cfg: PretrainConfig) -> ContrastiveModel:
    """The network of a resolved config (small-image stem for inputs of 64 px or less)."""
    return ContrastiveModel(
        cfg.arch, small_images=cfg.image_size <= 64, projection_dim=cfg.projection_dim, hidden_dim=cfg.hidden_dim
    )


def build_objective(cfg: PretrainConfig, device: torch.device) -> CLOPObjective:
    """The contrastive loss of the config plus, when clop_lambda > 0, the CLOP term of Eq. (4)."""
    kwargs = {} if cfg.temperature is None else {"temperature": cfg.temperature}
    base = make_loss(cfg.loss, **kwargs)
    clop = None
    if cfg.clop_lambda > 0:
        clop = CLOPLoss(
            tdata.DATASET_INFO[cfg.dataset].num_classes, cfg.projection_dim, lam=cfg.clop_lambda,
            similarity=cfg.similarity, prototypes=cfg.prototypes, reduction=cfg.clop_reduction, seed=cfg.seed,
            device=device,
        )
    return CLOPObjective(base, clop)


def _run_state(cfg: PretrainConfig) -> tuple[str, dict | None]:
    """What --out holds: ("new", None), ("resume", checkpoint) or ("finished", checkpoint); read-only.

    Raises FileExistsError for an existing run without --resume / --overwrite, and ValueError when a run
    would be resumed with settings that change its numbers.
    """
    run = Path(cfg.out)
    found = [f for f in RUN_FILES if (run / f).exists()]
    if not found or cfg.overwrite or not any(f in found for f in (METRICS, CHECKPOINT, LAST_GOOD)):
        return "new", None  # nothing trained yet (e.g. a start that failed on missing data): start afresh
    if not cfg.resume:
        raise FileExistsError(
            f"out={str(run)!r} already holds a run ({', '.join(found)}); pass --resume to continue it, "
            "--overwrite to start it again from scratch, or choose another --out"
        )
    if not (run / CHECKPOINT).exists():
        return "new", None  # killed before its first checkpoint: nothing to keep
    ckpt = torch.load(run / CHECKPOINT, map_location="cpu", weights_only=False)
    changed = sorted(changed_settings(ckpt["config"], dataclasses.asdict(cfg)))
    if changed:
        detail = ", ".join(changed)
        raise ValueError(f"resume: the run in {str(run)!r} was made with other settings ({detail}); "
                         "resume it with its own settings, or pass --overwrite")
    finished = ckpt["epoch"] == cfg.epochs and ckpt["step_in_epoch"] == 0
    return ("finished" if finished else "resume"), ckpt


def _clear_run_dir(run: Path) -> None:
    for f in RUN_FILES:
        (run / f).unlink(missing_ok=True)
    run.mkdir(parents=True, exist_ok=True)


def _setup_logging(run: Path, main: bool) -> list[logging.Handler]:
    """Log to RUN/train.log and stderr on the main process; other processes log nothing. Returns the handlers."""
    log.propagate = False
    if not main:
        log.setLevel(logging.CRITICAL)
        handlers: list[logging.Handler] = [logging.NullHandler()]
    else:
        log.setLevel(logging.INFO)
        handlers = [logging.FileHandler(run / LOG), logging.StreamHandler(sys.stderr)]
        handlers[0].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handlers[1].setFormatter(logging.Formatter("%(message)s"))
    for h in handlers:
        log.addHandler(h)
    return handlers


def eval_batch_images(cfg: PretrainConfig, train: torch.utils.data.Dataset) -> torch.Tensor:
    """The fixed evaluation batch: (eval_batch, 3, S, S), un-augmented training images chosen with the seed.

    ``train``: the training split as (PIL image, label) items (``load_dataset`` without a transform).
    """
    info = tdata.DATASET_INFO[cfg.dataset]
    transform = tdata.eval_transform(cfg.image_size, info.mean, info.std)
    n = min(cfg.eval_batch, len(train))
    idx = np.random.default_rng(cfg.seed).permutation(len(train))[:n]
    return torch.stack([transform(train[int(i)][0]) for i in idx])


def collapse_row(z: torch.Tensor) -> dict[str, float]:
    """Collapse metrics of the evaluation embeddings z: (N, P), plus the complete-collapse flag."""
    z = z.detach().float()
    row = clop_metrics.collapse_metrics(z, top=5)
    row["unit_mean_norm"] = clop_metrics.mean_norm(z, normalize=True)
    row["collapsed"] = bool(row["unit_mean_norm"] >= COLLAPSE_MEAN_NORM)
    return row


@torch.no_grad()
def embed(model: ContrastiveModel, x: torch.Tensor, device: torch.device, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, z) of the images x: (N, 3, S, S) in eval mode, in chunks; float32 on the CPU."""
    was_training = model.training
    model.eval()
    hs, zs = [], []
    for chunk in x.split(batch):
        chunk = chunk.to(device, non_blocking=True)
        if device.type == "cuda":
            chunk = chunk.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            h, z = model(chunk)
        hs.append(h.float().cpu())
        zs.append(z.float().cpu())
    model.train(was_training)
    return torch.cat(hs), torch.cat(zs)


def append_row(path: Path, row: dict) -> None:
    """Add one row to a CSV, keeping the columns of both; written through a temporary file and a rename."""
    frame = pd.DataFrame([row])
    if path.exists():
        frame = pd.concat([pd.read_csv(path), frame], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    frame.to_csv(tmp, index=False)
    _replace_durably(tmp, path)


class BatchOrder(torch.utils.data.Sampler):
    """The indices this process loads in one epoch, from a given step on.

    Epoch e shuffles all N images with a generator seeded from (seed, e); global batch b is positions
    [b G, (b + 1) G) of that order (G the global batch, the tail dropped), and process r of W takes the
    r-th slice of B = G / W of it. So the global batches do not depend on W, and a resumed run continues
    at ``start_step`` with exactly the batches an uninterrupted run would have drawn.
    """

    def __init__(self, n: int, global_batch: int, steps: int, seed: int, ctx: distributed.Context) -> None:
        self.n, self.global_batch, self.steps, self.seed = n, global_batch, steps, seed
        self.local = global_batch // ctx.world
        self.offset = ctx.rank * self.local
        self.epoch, self.start_step = 1, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = epoch, start_step

    def __iter__(self):
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch))
        for b in range(self.start_step, self.steps):
            first = b * self.global_batch + self.offset
            yield from order[first : first + self.local].tolist()

    def __len__(self) -> int:
        return (self.steps - self.start_step) * self.local


def forward_loss(
    model: torch.nn.Module, objective: CLOPObjective, v1: torch.Tensor, v2: torch.Tensor, labels: torch.Tensor,
    ctx: distributed.Context, *, fast: bool | None = None,
) -> dict[str, torch.Tensor]:
    """The loss parts of one step on the global batch: this process's views v1, v2: (B, 3, S, S), labels: (B,).

    Both views go through the network in one batch (BatchNorm sees both); the embeddings and labels of all
    processes are gathered (gradients flow back, :func:`training.distributed.gather`) and the objective is
    evaluated in float32 on the global batch, identically on every process. ``fast`` (default: on CUDA)
    runs the network under bf16 autocast on channels-last input (the model should be channels-last too).
    """
    fast = ctx.device.type == "cuda" if fast is None else fast
    x = torch.cat([v1.to(ctx.device, non_blocking=True), v2.to(ctx.device, non_blocking=True)])
    if fast:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=fast):
        _, z = model(x)
    z1, z2 = z.float().chunk(2)
    labels = labels.to(ctx.device, non_blocking=True)
    return objective(distributed.gather(z1, ctx), distributed.gather(z2, ctx), distributed.gather(labels, ctx))


def pretrain(cfg: PretrainConfig, *, progress: bool = True) -> Path:
    """Run (or resume) a pre-training; returns the run directory. See the module docstring for what it writes."""
    cfg = cfg.resolved()
    ctx = distributed.init(cfg.device)
    try:
        if cfg.batch_size % ctx.world:
            raise ValueError(f"batch_size={cfg.batch_size} is not divisible by the {ctx.world} processes")
        run = Path(cfg.out)
        kind, ckpt = _run_state(cfg)
        distributed.barrier(ctx)  # every process has read the directory before the main one changes it
        if ctx.main and kind == "new":
            _clear_run_dir(run)
        distributed.barrier(ctx)
        handlers = _setup_logging(run, ctx.main)
        try:
            if kind == "finished":
                log.info("%s: already finished (%d epochs); nothing to do", run, cfg.epochs)
                return run
            return _pretrain(cfg, run, ctx, ckpt, progress)
        finally:
            for h in handlers:
                log.removeHandler(h)
                h.close()
    finally:
        distributed.shutdown(ctx)


def _pretrain(cfg: PretrainConfig, run: Path, ctx: distributed.Context, ckpt: dict | None, progress: bool) -> Path:
    from tqdm.auto import tqdm

    device, cuda = ctx.device, ctx.device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
    info = tdata.DATASET_INFO[cfg.dataset]
    if ctx.main:
        (run / CONFIG).write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
    seed_everything(cfg.seed)

    if ctx.main:  # the main process downloads (or generates) the data first; the others then read it
        train_base = tdata.load_dataset(cfg.dataset, cfg.data_root, "train", download=cfg.download)
    distributed.barrier(ctx)
    if not ctx.main:
        train_base = tdata.load_dataset(cfg.dataset, cfg.data_root, "train")
    labeled = tdata.labeled_subset(train_base.targets, cfg.label_fraction, cfg.seed)
    if ctx.main:
        np.save(run / LABELED, labeled)
    views = tdata.TwoViewDataset(
        train_base, tdata.pretrain_transform(cfg.augmentation, cfg.image_size, info.mean, info.std),
        tdata.masked_labels(train_base.targets, labeled), seed=cfg.seed,
    )
    if len(views) < cfg.batch_size:
        raise ValueError(
            f"batch_size={cfg.batch_size} exceeds the {len(views)} training images of {cfg.dataset}; "
            "pass a smaller --batch-size"
        )
    full = len(views) // cfg.batch_size
    steps = full if cfg.steps_per_epoch is None else min(cfg.steps_per_epoch, full)
    order = BatchOrder(len(views), cfg.batch_size, steps, cfg.seed, ctx)
    loader = DataLoader(
        views, batch_size=cfg.batch_size // ctx.world, sampler=order, num_workers=cfg.workers, pin_memory=cuda,
        worker_init_fn=_worker_init,
    )
    eval_x = eval_batch_images(cfg, train_base) if ctx.main else None

    torch.manual_seed(cfg.seed)  # the same initial weights on every process, whatever the data code consumed
    model = build_model(cfg).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    if ctx.distributed and cuda and cfg.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # BatchNorm over the global batch, as SimCLR
    objective = build_objective(cfg, device)
    if objective.clop is not None:
        distributed.check_identical(objective.clop.prototypes, "the CLOP prototypes", ctx)
    optimizer = LARS(
        param_groups(model, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
        trust_coefficient=cfg.trust_coefficient,
    )
    total = cfg.epochs * steps
    scheduler = make_scheduler(optimizer, total, min(total, round(cfg.warmup_epochs * steps)))
    first_epoch, start_step, sums = 1, 0, {"loss": 0.0, "contrastive": 0.0, "clop": 0.0}
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        objective.load_state_dict(ckpt["objective"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        first_epoch, start_step, sums = ckpt["epoch"] + 1, ckpt["step_in_epoch"], dict(ckpt["sums"])
        if ctx.main and (run / METRICS).exists():  # rows written after the checkpoint are redone
            m = pd.read_csv(run / METRICS)
            m[m["epoch"] <= ckpt["epoch"]].to_csv(run / METRICS, index=False)
    core = model
    if ctx.distributed:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    log.info(
        "pretrain: %s on %s (%d images, %d labeled), %d epochs x %d steps of batch %d (%d process%s), lr %.4g, "
        "device %s -> %s%s",
        cfg.loss + (f" + CLOP(lambda={cfg.clop_lambda:g})" if cfg.clop_lambda > 0 else ""), cfg.dataset, len(views),
        len(labeled), cfg.epochs, steps, cfg.batch_size, ctx.world, "" if ctx.world == 1 else "es", cfg.lr, device,
        run, "" if ckpt is None else f" (resumed at epoch {first_epoch}, step {start_step})",
    )

    def save(path: Path, epoch_done: int, step_in_epoch: int, **extra: object) -> None:
        if ctx.main:
            atomic_save({
                "model": core.state_dict(), "objective": objective.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch_done, "step_in_epoch": step_in_epoch,
                "sums": dict(sums), "config": dataclasses.asdict(cfg), **extra,
            }, path)

    for epoch in range(first_epoch, cfg.epochs + 1):
        model.train()
        views.set_epoch(epoch)
        order.set_epoch(epoch, start_step)
        start = time.perf_counter()
        bar = tqdm(total=steps, initial=start_step, desc=f"epoch {epoch}/{cfg.epochs}", disable=not (progress and ctx.main),
                   leave=False, unit="step")
        for i, (v1, v2, y, _) in enumerate(loader, start=start_step):
            out = forward_loss(model, objective, v1, v2, y, ctx)
            values = {k: float(v.detach()) for k, v in out.items()}  # one host sync per step
            if not math.isfinite(values["loss"]):
                save(run / LAST_GOOD, epoch - 1, i, nonfinite_at={"epoch": epoch, "step": i + 1})
                raise NonFiniteLossError(
                    f"the loss became {values['loss']} at epoch {epoch}, step {i + 1} (contrastive "
                    f"{values['contrastive']}, clop {values['clop']}, lr {scheduler.get_last_lr()[0]:.4g}); "
                    f"the state just before this step is saved in {run / LAST_GOOD} (the last checkpoint stays "
                    f"in {CHECKPOINT}). A smaller --base-lr may help."
                )
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            lr_used = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            for k in sums:
                sums[k] += values[k]
            done = i + 1
            if cfg.checkpoint_every and done < steps and ((epoch - 1) * steps + done) % cfg.checkpoint_every == 0:
                save(run / CHECKPOINT, epoch - 1, done)  # mid-epoch; the epoch end saves below
            bar.set_postfix(
                loss=f"{values['loss']:.4f}",
                img_s=f"{(done - start_step) * cfg.batch_size / (time.perf_counter() - start):.1f}", refresh=False,
            )
            bar.update()
        bar.close()
        seconds = time.perf_counter() - start
        if ctx.main:
            _, z_eval = embed(core, eval_x, device)
            row = {
                "epoch": epoch, "step": epoch * steps, "lr": lr_used,
                **{k: v / steps for k, v in sums.items()},
                "images_per_s": (steps - start_step) * cfg.batch_size / seconds, "epoch_seconds": seconds,
                **collapse_row(z_eval),
            }
            append_row(run / METRICS, row)
        sums = {k: 0.0 for k in sums}
        start_step = 0
        save(run / CHECKPOINT, epoch, 0)
        if ctx.main:
            log.info(
                "epoch %d/%d: loss %.4f (contrastive %.4f, clop %.4f), stable rank %.2f, entropy rank %.2f, %.1f img/s",
                epoch, cfg.epochs, row["loss"], row["contrastive"], row["clop"], row["stable_rank"],
                row["entropy_rank"], row["images_per_s"],
            )
            if row["collapsed"]:
                log.warning(
                    "epoch %d: COMPLETE COLLAPSE - the evaluation embeddings all point one way "
                    "(norm of the mean of the unit embeddings %.4f >= %g)", epoch, row["unit_mean_norm"],
                    COLLAPSE_MEAN_NORM,
                )
        distributed.barrier(ctx)
    return run


SMOKE = {
    "dataset": "synthetic", "image_size": 16, "batch_size": 16, "epochs": 2, "steps_per_epoch": 3,
    "warmup_epochs": 1.0, "eval_batch": 64, "workers": 0,
}
"""--smoke: a few ResNet-50 steps on 16 px generated images (seconds on a CPU), every stage of a real run."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" except where the default is None (those flags say in words what they default to)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False:
            return action.help or ""
        return super()._get_help_string(action)


def build_parser(*, suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """The command line; with ``suppress_defaults`` only the flags actually given end up in the namespace."""
    d = PretrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m training.pretrain",
        description="Pre-train ResNet-50 with a contrastive loss, with or without the CLOP term (CLOP paper Sec. 5).",
        formatter_class=HelpFormatter,
    )

    def a(*names: str, **kw: object) -> None:
        if suppress_defaults:
            kw["default"] = argparse.SUPPRESS
        p.add_argument(*names, **kw)

    a("--out", default=None, help="run directory (default: runs/<dataset>-<loss>-<clop>-l<labels>-b<batch>-lr<base-lr>-s<seed>)")
    a("--dataset", default=None, choices=tdata.DATASETS, help="dataset (default: cifar100; synthetic with --smoke)")
    a("--data-root", default=d.data_root, help="folder holding the dataset (CIFAR-100: <root>/cifar-100-python; "
      "Tiny-ImageNet: <root>/tiny-imagenet-200 or the folder itself; ImageNet: <root>/train, <root>/val)")
    a("--download", action="store_true", help="download CIFAR-100 or Tiny-ImageNet into --data-root if missing")
    a("--loss", default=d.loss, choices=sorted(LOSSES), help="contrastive loss L_CL (paper: infonce with 10%% labels, supcon with all)")
    a("--clop-lambda", type=float, default=d.clop_lambda, help="lambda of Eq. (4); 0 turns CLOP off (paper Sec. 5: 1.0)")
    a("--prototypes", default=d.prototypes, choices=PROTOTYPES, help="CLOP prototypes (paper: orthonormal; etf for its comparison)")
    a("--similarity", default=d.similarity, choices=SIMILARITIES, help="s(z, c) of Eq. (4) (paper: cosine; Table 2 ablation)")
    a("--clop-reduction", default=d.clop_reduction, choices=REDUCTIONS,
      help="CLOP sum over labeled views as printed in Eq. (4) ('sum'), or its mean ('mean', scale-consistent), "
      "or sum / batch views ('batch')")
    a("--label-fraction", type=float, default=d.label_fraction,
      help="class-stratified labeled fraction (paper: 0.1 semi-supervised, 1.0 fully supervised)")
    a("--augmentation", default=d.augmentation, choices=AUGMENTATIONS, help="view policy (paper Table 3 ablation)")
    a("--arch", default=d.arch, choices=ARCHS, help="encoder (paper: resnet50)")
    a("--image-size", type=int, default=None, help="training crop in pixels (default: the dataset's, 32 / 64 / 224)")
    a("--batch-size", type=int, default=d.batch_size, help="images per step (paper Sec. 5: 1024; sweep 32-2048)")
    a("--base-lr", type=float, default=d.base_lr, help="learning rate = base-lr x batch / 256 (paper Sec. 5: 0.3)")
    a("--epochs", type=int, default=None, help="epochs (paper: 200 CIFAR-100 / ImageNet, 100 Tiny-ImageNet)")
    a("--warmup-epochs", type=float, default=d.warmup_epochs, help="linear warm-up before cosine decay (SimCLR: 10)")
    a("--weight-decay", type=float, default=d.weight_decay, help="LARS weight decay (SimCLR: 1e-6)")
    a("--momentum", type=float, default=d.momentum, help="LARS momentum (SimCLR: 0.9)")
    a("--trust-coefficient", type=float, default=d.trust_coefficient, help="LARS trust coefficient (SimCLR: 1e-3)")
    a("--temperature", type=float, default=None, help="temperature (default: the loss's, infonce 0.5, supcon 0.1, dcl 0.1)")
    a("--projection-dim", type=int, default=None, help="output of the projection head (SimCLR: 128; at least the class count)")
    a("--hidden-dim", type=int, default=d.hidden_dim, help="hidden width of the projection head (SimCLR: 2048)")
    a("--eval-batch", type=int, default=d.eval_batch, help="images in the fixed batch whose embeddings give the collapse metrics")
    a("--steps-per-epoch", type=int, default=None, help="cap on steps per epoch (default: a full pass)")
    a("--workers", type=int, default=None, help="data-loading processes (default: min(8, CPUs))")
    a("--seed", type=int, default=d.seed, help="seed of weights, prototypes, labeled split, data order and views")
    a("--device", default=None, help="cuda, cuda:N or cpu (default: CUDA when present)")
    a("--overwrite", action="store_true", help="replace a finished or partial run in --out")
    a("--resume", action="store_true", help="continue the run in --out from its last checkpoint (start it if there is "
      "none; a finished run is left as it is)")
    a("--checkpoint-every", type=int, default=None, help="also checkpoint every N steps (default: at epoch ends only)")
    a("--no-sync-bn", dest="sync_bn", action="store_false", help="with several GPUs, keep BatchNorm statistics per "
      "process instead of over the global batch (SimCLR's global BN is the default; the CPU has no SyncBatchNorm)")
    a("--smoke", action="store_true", help="tiny run on generated data: " + ", ".join(f"{k}={v}" for k, v in SMOKE.items()))
    a("--no-progress", action="store_true", help="no progress bars")
    return p


def config_from_args(argv: Sequence[str] | None) -> tuple[PretrainConfig, argparse.Namespace]:
    """The config of a command line; --smoke fills in the settings of ``SMOKE`` that the user did not give."""
    args = build_parser().parse_args(argv)
    given = vars(build_parser(suppress_defaults=True).parse_args(argv))
    fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    if args.smoke:
        values.update({k: v for k, v in SMOKE.items() if k not in given})
    return PretrainConfig(**values), args


def main(argv: Sequence[str] | None = None) -> int:
    cfg, args = config_from_args(argv)
    try:
        run = pretrain(cfg, progress=not args.no_progress)
    except (ValueError, FileExistsError, tdata.DatasetNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLossError as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return 3
    print(run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
