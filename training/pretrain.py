"""Pre-training of the CLOP paper's Section 5: ResNet-50 in the SimCLR framework, with or without CLOP.

    python -m training.pretrain --dataset cifar100 --data-root DATA --loss infonce --label-fraction 0.1
    python -m training.pretrain --smoke            # a few steps on generated data, on the CPU
    python -m training.pretrain --dataset digits --arch small --device cpu   # real 8x8 digits, on a CPU
    torchrun --nproc-per-node 8 -m training.pretrain ...   # several GPUs (see training.distributed)
    python -m training.pretrain ... --resume       # continue a killed run exactly where it stopped

One run = one directory (``--out``) holding

* ``config.json``         every setting, resolved (dataset-dependent defaults filled in);
* ``labeled_indices.npy`` the class-stratified labeled subset (indices into the training split);
* ``metrics.csv``         one row per epoch: loss and its parts, learning rate, throughput, the
                          collapse metrics of a fixed evaluation batch of training images (``clop.metrics``)
                          and ``geom_<key>`` for every ``training.geometry.GEOMETRY_KEYS`` key: the class
                          geometry of the embeddings z of held-out labeled (test-split) images
                          (:mod:`training.evaluate`; ``geom_class_proto_cos`` is empty without CLOP);
* ``geometry.csv``        one row per ``--geometry-every`` optimiser steps (default: per epoch): the fit of
                          the change of the held-out unit class means to the Appendix D step (eta_eff, R^2,
                          ... :data:`training.evaluate.GEOMETRY_COLUMNS`);
* ``checkpoint.pt``       model, loss module (the CLOP prototypes are its buffer), optimiser and
                          schedule state, the position in the epoch, the last class-mean snapshot of
                          geometry.csv; written atomically at every epoch end and every
                          ``--checkpoint-every`` steps. Resuming from it is exact: the
                          views of image i in epoch e depend only on (seed, e, i) and the batch order
                          of epoch e only on (seed, e) (see :class:`BatchOrder`);
* ``checkpoint.prev.pt``  the checkpoint before the last one: ``--resume`` falls back to it, saying so,
                          when ``checkpoint.pt`` does not load (truncated, empty), and still ends with
                          the numbers of an uninterrupted run;
* ``train.log``           what the console printed;
* ``last_good.pt``        only if the loss became NaN or infinite: the state just before that step;
* ``run.lock``            while a run owns the directory: its process id and host. A second run on the
                          same ``--out`` is refused while the owner lives; a lock left by a killed run is
                          taken over (:mod:`training.rundir`).

Every file is written to a temporary file in the directory and renamed into place (``train.log`` is
appended to). Settings and data are checked before anything in ``--out`` changes: ``--overwrite`` deletes
the old run's files only when the new run is built and writes its first file.

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
  (see ``clop.losses.CLOPObjective``);
* ``--optimizer lars`` (SimCLR); ``sgd`` is the same momentum SGD without the trust ratio
  (:mod:`training.build`). Runs whose config.json predates the setting were LARS runs and resume as such.

``--dataset digits`` (ours: scikit-learn's 8x8 digits, ``training.data``; the paper has no such run):
8 px (no upsampling), the ``digits`` augmentation policy (no flips), batch 256 (1,438 training images:
5 steps per epoch), 50 epochs (about 0.45 s each with ``--arch small`` on one CPU thread; 1.3 s with
``--loader workers``) with a warm-up of a tenth of them (5), and the fixed class-stratified 1,438 / 359
train / test split; ``--data-root`` and ``--download`` are not used. Its views are augmented in whole
batches on the training device (``--loader device``, :mod:`training.loader`); both loaders give the same
views, so the same numbers on the CPU.

``--loader`` (:mod:`training.loader`): ``device`` keeps the training images on the training device and
augments whole batches there (digits; CIFAR-100 and synthetic with the simclr policy below 64 px,
:mod:`training.augment_batched`); ``workers`` is a DataLoader augmenting one PIL image at a time in
``--workers`` processes (every dataset). The default is ``device`` where it exists and the uint8 images take
at most a quarter of the device's memory (:func:`training.loader.images_fit`), else ``workers``. For simclr
the two loaders draw from the same distributions but give different views (float instead of PIL's uint8
arithmetic): such a run's default name includes ``--loader device``, and ``--resume`` without ``--loader``
keeps the loader the run was made with (with another one it is refused).
The other defaults (10 % labels, projection dim 128 >= 10 classes, temperatures, lr rule, resnet50) are
as above.
``--arch small`` is the three-layer CNN of :class:`training.model.SmallConvNet` (any dataset).

The per-epoch evaluation (collapse metrics, class geometry, geometry.csv) lives in :mod:`training.evaluate`,
one step (``BatchOrder``, ``forward_loss``) in :mod:`training.steps`; both are re-exported here, and the loop
calls ``forward_loss`` through this module's namespace (a test may replace ``training.pretrain.forward_loss``).
The class geometry costs one forward pass of at most ``--geometry-images`` (1024) held-out images per log,
on the main process only, in eval mode and without gradient; it draws no random numbers and leaves the
training numbers as they are (``--geometry-images 0`` turns it off).
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
import torch
from torch.utils.data import DataLoader

from clop.util.checks import check_choice, check_nonnegative, check_positive, check_size
from clop.util.cli import HelpFormatter, check_device
from clop.util.io import atomic_path, atomic_write_text, check_output_dir
from clop.losses import LOSSES, REDUCTIONS, SIMILARITIES

from training import data as tdata
from training import distributed, rundir
from training import evaluate as tevaluate
from training import loader as tloader
from training.build import OPTIMIZERS, build_model, build_objective, build_optimizer  # noqa: F401 (re-exported)
from training.evaluate import (  # noqa: F401 (re-exported: tests and linear_eval used them from here)
    COLLAPSE_MEAN_NORM, GeometryLog, append_row, collapse_row, embed, eval_batch_images,
)
from training.model import ARCHS
from training.optim import make_scheduler
from training.rundir import (  # the run directory's files, also imported from here by linear_eval and sweep
    CHECKPOINT, CONFIG, GEOMETRY, LABELED, LAST_GOOD, LOG, METRICS, PREV_CHECKPOINT, PROBE_RESULT, RUN_FILES,
    CheckpointError, PeerFailedError, RunLockedError,
)
from training.steps import BatchOrder, forward_loss  # noqa: F401 (re-exported; the loop looks forward_loss up here)

log = logging.getLogger("training")

AUGMENTATIONS = tdata.POLICIES
PROTOTYPES = ("orthonormal", "etf")
LOSSES_WITH_TEMPERATURE = ("infonce", "dcl", "supcon")
EPOCHS = {"cifar100": 200, "imagenet": 200, "tiny-imagenet": 100, "synthetic": 20, "digits": 50}
"""CLOP paper Sec. 5 (synthetic, digits: ours)."""
BATCH_SIZE = {"digits": 256}
"""Datasets whose default batch is not the paper's 1024 (digits: 1,438 training images, 5 steps per epoch)."""
NONFINITE_EXIT = 3
"""The exit status of ``main`` when the loss became NaN or infinite (the state before that step is in
last_good.pt)."""
ADDED_SETTINGS = {"optimizer": "lars"}
"""Settings added after runs were made: the value that a config.json without the key ran with."""
RESUMABLE_CHANGES = ("out", "data_root", "download", "workers", "loader", "device", "overwrite", "resume",
                     "checkpoint_every", "geometry_images", "geometry_every")
"""Settings that may differ between a run and its resumption: they do not change its training numbers (nor
the run's default name); the loader only for the policies of ``training.loader.SAME_VIEWS`` (digits):
:func:`_run_state` refuses another loader for the others. geometry_images is checked against the checkpoint's
class-mean snapshot instead (:func:`_run_state`); a changed geometry_every only changes the length of the later
geometry.csv intervals."""


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
    augmentation: str | None = None
    arch: str = "resnet50"
    image_size: int | None = None
    batch_size: int | None = None
    base_lr: float = 0.3
    epochs: int | None = None
    warmup_epochs: float | None = None
    weight_decay: float = 1e-6
    momentum: float = 0.9
    trust_coefficient: float = 1e-3
    optimizer: str = "lars"
    temperature: float | None = None
    projection_dim: int | None = None
    hidden_dim: int = 2048
    eval_batch: int = 512
    steps_per_epoch: int | None = None
    workers: int | None = None
    loader: str | None = None
    seed: int = 0
    device: str | None = None
    overwrite: bool = False
    resume: bool = False
    checkpoint_every: int | None = None
    sync_bn: bool = True
    geometry_images: int = 1024
    geometry_every: int | None = None

    def resolved(self) -> PretrainConfig:
        """A validated copy with the dataset-dependent defaults filled in; bad values raise ValueError."""
        c = dataclasses.replace(self)
        c.dataset = check_choice("dataset", c.dataset, tdata.DATASETS)
        c.loss = check_choice("loss", c.loss, tuple(LOSSES))
        c.prototypes = check_choice("prototypes", c.prototypes, PROTOTYPES)
        c.similarity = check_choice("similarity", c.similarity, SIMILARITIES)
        c.clop_reduction = check_choice("clop_reduction", c.clop_reduction, REDUCTIONS)
        if c.augmentation is None:
            c.augmentation = tdata.default_policy(c.dataset)
        c.augmentation = check_choice("augmentation", c.augmentation, AUGMENTATIONS)
        if c.dataset == "digits" and c.augmentation in tdata.FLIPPING_POLICIES:
            raise ValueError(f"augmentation={c.augmentation!r} flips images, and a mirrored digit is another symbol; "
                             "with --dataset digits pass --augmentation digits (the default)")
        c.arch = check_choice("arch", c.arch, ARCHS)
        c.optimizer = check_choice("optimizer", c.optimizer, OPTIMIZERS)
        check_nonnegative("clop_lambda", c.clop_lambda)
        if not 0.0 < c.label_fraction <= 1.0:
            raise ValueError(f"label_fraction must be in (0, 1]; got {c.label_fraction!r}")
        info = tdata.DATASET_INFO[c.dataset]
        c.data_root = str(Path(c.data_root).expanduser().resolve())  # a probe run from elsewhere finds the data
        c.image_size = check_size("image_size", c.image_size if c.image_size is not None else info.image_size, 8)
        c.epochs = check_size("epochs", c.epochs if c.epochs is not None else EPOCHS[c.dataset])
        c.batch_size = check_size("batch_size", BATCH_SIZE.get(c.dataset, 1024) if c.batch_size is None else c.batch_size, 2)
        if c.warmup_epochs is None:  # SimCLR: 10 epochs; digits: a tenth of the run
            c.warmup_epochs = c.epochs / 10 if c.dataset == "digits" else 10.0
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
        c.geometry_images = check_size("geometry_images", c.geometry_images, 0)
        if 0 < c.geometry_images < k:
            raise ValueError(f"geometry_images={c.geometry_images} is fewer than the {k} classes of {c.dataset}: the "
                             f"class geometry needs every class; pass --geometry-images >= {k}, or 0 to turn it off")
        if c.geometry_every is not None:
            c.geometry_every = check_size("geometry_every", c.geometry_every)
            if c.geometry_images == 0:
                raise ValueError(f"geometry_every={c.geometry_every} logs the class geometry, which geometry_images=0 "
                                 "turns off; drop --geometry-every or pass --geometry-images > 0")
        if c.resume and c.overwrite:
            raise ValueError("resume and overwrite exclude each other; pass one of --resume, --overwrite")
        if c.workers is None:
            c.workers = default_workers()
        c.workers = check_size("workers", c.workers, 0)
        device = check_device(c.device)  # fails now if CUDA is asked for and absent
        c.loader = tloader.check_loader(c.loader, c.dataset, c.augmentation, c.image_size, device)
        if c.out is None:
            tag = f"clop{c.clop_lambda:g}" if c.clop_lambda > 0 else "noclop"
            settings = {k: v for k, v in dataclasses.asdict(c).items()  # added settings at their old value: old names
                        if k not in RESUMABLE_CHANGES and (k, v) not in ADDED_SETTINGS.items()}
            if c.loader != "workers" and c.augmentation not in tloader.SAME_VIEWS:
                settings["loader"] = c.loader  # other views than the PIL path's (workers runs keep their names)
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
    """The settings of ``now`` that differ from ``saved`` and change a run's numbers, as "name: saved -> now";
    a setting of :data:`ADDED_SETTINGS` missing from ``saved`` counts at its old value."""
    saved = {**ADDED_SETTINGS, **saved}
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


def _run_state(cfg: PretrainConfig) -> tuple[str, dict | None, str | None]:
    """What --out holds: ("new", None), ("resume", checkpoint) or ("finished", checkpoint), plus a note when
    the checkpoint is the previous one because the last does not load; reads, changes nothing.

    Raises FileExistsError for an existing run without --resume / --overwrite, ValueError when a run would be
    resumed with settings that change its numbers, and CheckpointError when no checkpoint of it loads.
    """
    run = Path(cfg.out)
    found = [f for f in RUN_FILES if (run / f).exists()]
    if not found or cfg.overwrite or not any(f in found for f in (METRICS, CHECKPOINT, PREV_CHECKPOINT, LAST_GOOD)):
        return "new", None, None  # nothing trained yet (e.g. a start that failed on missing data): start afresh
    if not cfg.resume:
        raise FileExistsError(
            f"out={str(run)!r} already holds a run ({', '.join(found)}); pass --resume to continue it, "
            "--overwrite to start it again from scratch, or choose another --out"
        )
    ckpt, note = rundir.load_for_resume(run)
    if ckpt is None:
        return "new", None, None  # killed before its first checkpoint: nothing to keep
    changed = sorted(changed_settings(ckpt["config"], dataclasses.asdict(cfg)))
    if changed:
        detail = ", ".join(changed)
        raise ValueError(f"resume: the run in {str(run)!r} was made with other settings ({detail}); "
                         "resume it with its own settings, or pass --overwrite")
    saved_loader = ckpt["config"].get("loader") or "workers"  # configs from before --loader: the DataLoader
    if saved_loader != cfg.loader and cfg.augmentation not in tloader.SAME_VIEWS:
        raise ValueError(f"resume: the run in {str(run)!r} was made with --loader {saved_loader}, whose views for "
                         f"--augmentation {cfg.augmentation} differ from --loader {cfg.loader}'s (same distributions, "
                         f"other arithmetic); resume it with --loader {saved_loader}, or pass --overwrite")
    finished = ckpt["epoch"] == cfg.epochs and ckpt["step_in_epoch"] == 0
    logged = ckpt.get("geometry")  # absent in checkpoints made before the class geometry was logged
    if not finished and logged is not None and logged["images"] != cfg.geometry_images:
        raise ValueError(f"resume: the run in {str(run)!r} logged its class geometry with geometry_images="
                         f"{logged['images']}, not {cfg.geometry_images} (geometry.csv's next interval starts from "
                         f"a snapshot of those images); resume it with --geometry-images {logged['images']}, or "
                         "pass --overwrite")
    return ("finished" if finished else "resume"), ckpt, note


def _setup_logging(main: bool) -> list[logging.Handler]:
    """Log to stderr on the main process; other processes log nothing. Returns the handlers
    (:func:`_log_to_file` adds RUN/train.log once the run may write into its directory)."""
    log.propagate = False
    if not main:
        log.setLevel(logging.CRITICAL)
        handlers: list[logging.Handler] = [logging.NullHandler()]
    else:
        log.setLevel(logging.INFO)
        handlers = [logging.StreamHandler(sys.stderr)]
        handlers[0].setFormatter(logging.Formatter("%(message)s"))
    for h in handlers:
        log.addHandler(h)
    return handlers


def _log_to_file(run: Path, handlers: list[logging.Handler]) -> None:
    """Also log to RUN/train.log (appended to), on the main process."""
    h = logging.FileHandler(run / LOG)
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(h)
    handlers.append(h)


def pretrain(cfg: PretrainConfig, *, progress: bool = True) -> Path:
    """Run (or resume) a pre-training; returns the run directory. See the module docstring for what it writes.

    Order: settings, then (rank 0) --out is checked and locked, the run's state read, the data loaded and
    everything built; only then does the run write into --out (deleting an old run's files first).
    """
    loader_given = cfg.loader is not None
    cfg = cfg.resolved()
    if cfg.resume and not loader_given:
        cfg = _resumed_loader(cfg)
    ctx = distributed.init(cfg.device)
    handlers = _setup_logging(ctx.main)
    lock = None
    try:
        if cfg.batch_size % ctx.world:
            raise ValueError(f"batch_size={cfg.batch_size} is not divisible by the {ctx.world} processes")
        run = Path(cfg.out)
        lock = rundir.collective(ctx, lambda: _own(run), main_only=True)  # rank 0 alone owns --out
        kind, ckpt, note = rundir.collective(ctx, lambda: _run_state(cfg))
        if kind == "finished":
            if ctx.main:
                _log_to_file(run, handlers)
            log.info("%s: already finished (%d epochs); nothing to do", run, cfg.epochs)
            return run
        return _pretrain(cfg, run, ctx, ckpt, note, handlers, progress)
    finally:
        if lock is not None:
            lock.release()
        for h in handlers:
            log.removeHandler(h)
            h.close()
        distributed.shutdown(ctx)


def _resumed_loader(cfg: PretrainConfig) -> PretrainConfig:
    """``--resume`` without ``--loader``: ``cfg`` with the loader of the run in ``--out`` (its config.json; runs
    from before ``--loader`` used the DataLoader) where the two loaders give other views; else ``cfg``."""
    if cfg.augmentation in tloader.SAME_VIEWS:
        return cfg
    try:
        saved = json.loads((Path(cfg.out) / CONFIG).read_text())
    except (OSError, ValueError):
        return cfg
    loader = (saved.get("loader") or "workers") if isinstance(saved, dict) else cfg.loader
    if loader == cfg.loader or loader not in tloader.LOADERS:
        return cfg
    return dataclasses.replace(cfg, loader=tloader.check_loader(loader, cfg.dataset, cfg.augmentation, cfg.image_size))


def _own(run: Path) -> rundir.RunLock:
    """Check that --out is a writable folder (created if missing) and lock it for this process."""
    check_output_dir(run, "--out")
    return rundir.RunLock.acquire(run, "training.pretrain", "--out")


def _commit(cfg: PretrainConfig, run: Path, ckpt: dict | None, note: str | None, labeled: np.ndarray,
            handlers: list[logging.Handler], resumed_step: int) -> None:
    """The first writes of a run (main process), once everything is built: a new run deletes the files of
    the one it replaces, a resumed run drops the metrics and geometry rows it redoes (those after its
    checkpoint, at global step ``resumed_step``); then config and labeled split."""
    if ckpt is None:
        rundir.remove_run_files(run)
    else:
        rundir.keep_metrics_until(run, ckpt["epoch"])
        tevaluate.keep_geometry_until(run, resumed_step)
    _log_to_file(run, handlers)
    if note:
        log.warning("%s", note)
    atomic_write_text(run / CONFIG, json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
    with atomic_path(run / LABELED) as tmp, open(tmp, "wb") as f:
        np.save(f, labeled)


def _pretrain(cfg: PretrainConfig, run: Path, ctx: distributed.Context, ckpt: dict | None, note: str | None,
              handlers: list[logging.Handler], progress: bool) -> Path:
    from clop.util.progress import progress_bar

    device, cuda = ctx.device, ctx.device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
    info = tdata.DATASET_INFO[cfg.dataset]
    seed_everything(cfg.seed)

    # the main process downloads (or generates) the data first; the others then read it
    train_base = rundir.collective(
        ctx, lambda: tdata.load_dataset(cfg.dataset, cfg.data_root, "train", download=cfg.download), main_only=True)
    train_base = rundir.collective(
        ctx, lambda: train_base if ctx.main else tdata.load_dataset(cfg.dataset, cfg.data_root, "train"))
    labeled = tdata.labeled_subset(train_base.targets, cfg.label_fraction, cfg.seed)
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
    if cfg.loader == "device":  # the same batches and views, augmented batched on the device (training.loader)
        loader = tloader.DeviceLoader(views, order, cfg.batch_size // ctx.world, device)
    else:
        loader = DataLoader(
            views, batch_size=cfg.batch_size // ctx.world, sampler=order, num_workers=cfg.workers, pin_memory=cuda,
            worker_init_fn=_worker_init,
        )
    eval_x = eval_batch_images(cfg, train_base) if ctx.main else None
    # the class geometry: held-out images on the main process only (it alone computes and writes it)
    heldout = rundir.collective(ctx, lambda: tevaluate.load_heldout(cfg), main_only=True) if cfg.geometry_images else None

    torch.manual_seed(cfg.seed)  # the same initial weights on every process, whatever the data code consumed
    model = build_model(cfg).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    if ctx.distributed and cuda and cfg.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # BatchNorm over the global batch, as SimCLR
    objective = build_objective(cfg, device)
    if objective.clop is not None:
        distributed.check_identical(objective.clop.prototypes, "the CLOP prototypes", ctx)
    optimizer = build_optimizer(cfg, model)
    total = cfg.epochs * steps
    scheduler = make_scheduler(optimizer, total, min(total, round(cfg.warmup_epochs * steps)))
    first_epoch, start_step, sums = 1, 0, {"loss": 0.0, "contrastive": 0.0, "clop": 0.0}
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        objective.load_state_dict(ckpt["objective"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        first_epoch, start_step, sums = ckpt["epoch"] + 1, ckpt["step_in_epoch"], dict(ckpt["sums"])
    resumed_step = (first_epoch - 1) * steps + start_step  # global optimiser steps done
    geo = None
    if heldout is not None:  # the main process: the last snapshot from the checkpoint, else one of the network now
        clop = objective.clop
        geo = GeometryLog(run / GEOMETRY, heldout, None if clop is None else clop.prototypes,
                          tevaluate.embedding_eps(model, device), cfg.geometry_images)
        if ckpt is not None and ckpt.get("geometry") is not None:  # _run_state checked: of the same images
            geo.load_state_dict(ckpt["geometry"])
        else:  # a fresh run; or one checkpointed before the geometry was logged: its geometry.csv starts here
            geo.start(model, device, first_epoch - 1, resumed_step)

    # everything is built and checked: from here on the run writes into --out
    distributed.barrier(ctx)  # every process has read the directory before the main one changes it
    rundir.collective(ctx, lambda: _commit(cfg, run, ckpt, note, labeled, handlers, resumed_step), main_only=True)
    checkpoints = rundir.Checkpoints(run, current_good=note is None)  # a bad checkpoint.pt is not kept as prev
    core = model
    if ctx.distributed:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    log.info(
        "pretrain: %s on %s (%d images, %d labeled), %s, %d epochs x %d steps of batch %d (%d process%s), %s lr %.4g, "
        "device %s, loader %s -> %s%s",
        cfg.loss + (f" + CLOP(lambda={cfg.clop_lambda:g})" if cfg.clop_lambda > 0 else ""), cfg.dataset, len(views),
        len(labeled), cfg.arch, cfg.epochs, steps, cfg.batch_size, ctx.world, "" if ctx.world == 1 else "es",
        cfg.optimizer.upper(), cfg.lr, device, cfg.loader,
        run, "" if ckpt is None else f" (resumed at epoch {first_epoch}, step {start_step})",
    )

    def save(path: Path, epoch_done: int, step_in_epoch: int, **extra: object) -> None:
        if not ctx.main:
            return
        state = {
            "model": core.state_dict(), "objective": objective.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "epoch": epoch_done, "step_in_epoch": step_in_epoch,
            "sums": dict(sums), "config": dataclasses.asdict(cfg),
            "geometry": {"images": cfg.geometry_images} if geo is None else geo.state_dict(), **extra,
        }
        if geo is not None:
            geo.flush()  # geometry.csv reaches at least as far as the checkpoint
        if path.name == CHECKPOINT:
            checkpoints.save(state)  # keeps the one it replaces as checkpoint.prev.pt
        else:
            rundir.save_state(state, path)

    for epoch in range(first_epoch, cfg.epochs + 1):
        model.train()
        views.set_epoch(epoch)
        order.set_epoch(epoch, start_step)
        start = time.perf_counter()
        bar = progress_bar(total=steps, initial=start_step, desc=f"epoch {epoch}/{cfg.epochs}",
                           enabled=progress and ctx.main, leave=False, unit="step")
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
            if geo is not None and cfg.geometry_every and ((epoch - 1) * steps + done) % cfg.geometry_every == 0:
                geo.log(core, device, epoch, (epoch - 1) * steps + done, lr_used)
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
            geom = {}
            if geo is not None:
                if cfg.geometry_every is None:
                    geo.log(core, device, epoch, epoch * steps, lr_used)
                geom = geo.columns(core, device, epoch * steps)  # the same embeddings as a log at this step
            row = {
                "epoch": epoch, "step": epoch * steps, "lr": lr_used,
                **{k: v / steps for k, v in sums.items()},
                "images_per_s": (steps - start_step) * cfg.batch_size / seconds, "epoch_seconds": seconds,
                **collapse_row(z_eval), **geom,
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
            if geom:
                log.info("epoch %d: held-out class means: rank %.0f, stable rank %.2f, mean cosine %.3f (ETF %.3f), "
                         "norm of the mean unit embedding %.3f", epoch, geom["geom_class_rank"],
                         geom["geom_class_stable_rank"], geom["geom_class_cos_mean"], -1.0 / (heldout.k - 1),
                         geom["geom_mu_norm"])
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
    "warmup_epochs": 1.0, "eval_batch": 64, "geometry_images": 64, "workers": 0,
}
"""--smoke: a few ResNet-50 steps on 16 px generated images (seconds on a CPU), every stage of a real run
(the class geometry on 64 of the 200 test images: each of its forward passes costs about one step)."""



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
    a("--dataset", default=None, choices=tdata.DATASETS, help="dataset (default: cifar100; synthetic with --smoke). "
      "digits: scikit-learn's 1,797 8x8 digits, a fixed class-stratified split (seed 0, a fifth of each class to "
      "test: 1,438 train / 359 test), pixels 0..16 scaled to [0, 1], grey replicated to 3 channels")
    a("--data-root", default=d.data_root, help="folder holding the dataset (CIFAR-100: <root>/cifar-100-python; "
      "Tiny-ImageNet: <root>/tiny-imagenet-200 or the folder itself; ImageNet: <root>/train, <root>/val; "
      "digits: not used, scikit-learn ships them)")
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
    a("--augmentation", default=None, choices=AUGMENTATIONS, help="view policy (paper Table 3 ablation; default: "
      "simclr, and digits for --dataset digits: translation <= 1 px, zoom 0.9-1.1, brightness/contrast, noise, no flips)")
    a("--arch", default=d.arch, choices=ARCHS, help="encoder (paper: resnet50; small: 3 conv layers, 93,472 "
      "parameters, 128-d features, any image size)")
    a("--optimizer", default=d.optimizer, choices=OPTIMIZERS, help="lars (SimCLR) or sgd: the same momentum, weight "
      "decay, parameter groups and schedule without LARS's trust ratio")
    a("--image-size", type=int, default=None, help="training crop in pixels (default: the dataset's, 32 / 64 / 224; "
      "digits 8)")
    a("--batch-size", type=int, default=None, help="images per step (default: 1024, paper Sec. 5, sweep 32-2048; "
      "digits 256)")
    a("--base-lr", type=float, default=d.base_lr, help="learning rate = base-lr x batch / 256 (paper Sec. 5: 0.3)")
    a("--epochs", type=int, default=None, help="epochs (paper: 200 CIFAR-100 / ImageNet, 100 Tiny-ImageNet; "
      f"digits {EPOCHS['digits']}, synthetic {EPOCHS['synthetic']})")
    a("--warmup-epochs", type=float, default=None, help="linear warm-up before cosine decay (default: 10, SimCLR; "
      "digits: a tenth of --epochs)")
    a("--weight-decay", type=float, default=d.weight_decay, help="weight decay, not on biases and norm layers (SimCLR: 1e-6)")
    a("--momentum", type=float, default=d.momentum, help="momentum of LARS and SGD (SimCLR: 0.9)")
    a("--trust-coefficient", type=float, default=d.trust_coefficient, help="LARS trust coefficient (SimCLR: 1e-3; "
      "not used by sgd)")
    a("--temperature", type=float, default=None, help="temperature (default: the loss's, infonce 0.5, supcon 0.1, dcl 0.1)")
    a("--projection-dim", type=int, default=None, help="output of the projection head (SimCLR: 128; at least the class count)")
    a("--hidden-dim", type=int, default=d.hidden_dim, help="hidden width of the projection head (SimCLR: 2048)")
    a("--eval-batch", type=int, default=d.eval_batch, help="images in the fixed batch whose embeddings give the collapse metrics")
    a("--steps-per-epoch", type=int, default=None, help="cap on steps per epoch (default: a full pass)")
    a("--workers", type=int, default=None, help="data-loading processes of --loader workers (default: min(8, CPUs))")
    a("--loader", default=None, choices=tloader.LOADERS, help="device: keep the images on the training device and "
      "augment whole batches there (digits; cifar100 and synthetic with --augmentation simclr below 64 px); workers: "
      "a DataLoader augmenting one image at a time in --workers processes. Default: device where it exists and the "
      "images take at most a quarter of the device's memory, else workers; on --resume, the run's own. Digits get "
      "the same views either way; simclr views from the same distributions (not PIL's arithmetic)")
    a("--seed", type=int, default=d.seed, help="seed of weights, prototypes, labeled split, data order and views")
    a("--device", default=None, help="cuda, cuda:N or cpu (default: CUDA when present)")
    a("--overwrite", action="store_true", help="replace a finished or partial run in --out")
    a("--resume", action="store_true", help="continue the run in --out from its last checkpoint (start it if there is "
      "none; a finished run is left as it is)")
    a("--checkpoint-every", type=int, default=None, help="also checkpoint every N steps (default: at epoch ends only)")
    a("--geometry-images", type=int, default=d.geometry_images, help="held-out labeled images (the test split; "
      "a fixed class-stratified subset when it is larger) whose embeddings give the class geometry of metrics.csv's "
      "geom_ columns and geometry.csv; 0 turns both off")
    a("--geometry-every", type=int, default=None, help="fit the change of the held-out unit class means to the "
      "Appendix D step every N optimiser steps (geometry.csv; default: at each epoch end)")
    a("--no-sync-bn", dest="sync_bn", action="store_false", help="with several GPUs, keep BatchNorm statistics per "
      "process instead of over the global batch (SimCLR's global BN is the default; the CPU has no SyncBatchNorm)")
    a("--smoke", action="store_true", help="tiny run on generated data: " + ", ".join(f"{k}={v}" for k, v in SMOKE.items()))
    a("--no-progress", action="store_true", help="no progress bars")
    return p


def config_from_args(argv: Sequence[str] | None) -> tuple[PretrainConfig, argparse.Namespace]:
    """The config of a command line; --smoke fills in the settings of ``SMOKE`` that the user did not give
    (its geometry_images raised to the class count of a --dataset with more classes)."""
    args = build_parser().parse_args(argv)
    given = vars(build_parser(suppress_defaults=True).parse_args(argv))
    fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    if args.smoke:
        values.update({k: v for k, v in SMOKE.items() if k not in given})
        info = tdata.DATASET_INFO.get(values["dataset"])  # an unknown name is refused by resolved()
        if "geometry_images" not in given and info is not None:
            values["geometry_images"] = max(values["geometry_images"], info.num_classes)
    return PretrainConfig(**values), args


def main(argv: Sequence[str] | None = None) -> int:
    cfg, args = config_from_args(argv)
    try:
        run = pretrain(cfg, progress=not args.no_progress)
    except (ValueError, FileExistsError, tdata.DatasetNotFoundError, RunLockedError, PeerFailedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLossError as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return NONFINITE_EXIT
    print(run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
