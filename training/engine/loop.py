"""The pre-training loop of the CLOP paper's Section 5 (arXiv 2403.18699): SimCLR-style training with or without
the CLOP term, into one run folder (:mod:`training.engine.rundir`; docs/training.md lists its files).

:func:`pretrain` runs these named steps, in this order:

1. the settings resolved (:meth:`training.config.PretrainConfig.resolved`); the processes joined
   (:func:`training.engine.distributed.init`); an existing ``--out`` checked and locked (the temporaries of a
   killed run removed), and what it holds read (:func:`training.engine.resume.run_state`): a new run, one to
   resume, or a finished one (nothing to do);
2. :func:`load_data`: the training split (its class count and size checked), the memory the run needs
   (:func:`training.engine.memory.check_run_memory`, before anything large is made), the labeled subset, the
   two-view dataset and its loader, the fixed evaluation batch and the held-out images of the class geometry;
   a missing ``--out`` is created and locked only now, when settings, data and memory are checked;
3. :func:`build`: the network, objective, optimiser and schedule (:mod:`training.engine.build`), restored
   from the checkpoint when resuming, and the geometry log (:class:`training.eval.evaluate.GeometryLog`);
4. the first writes into ``--out`` (an old run's files deleted, or the rows a resumed run redoes dropped;
   config.json and the labeled indices): only now, when everything is built and checked. A run that stops
   before this point removes the folders it created;
5. per epoch, :func:`train_one_epoch` (the optimiser steps, mid-epoch checkpoints and geometry logs) then
   :func:`end_epoch` (the metrics row, the log lines, the epoch's checkpoint).

The step is a parameter: ``pretrain(cfg, step=fn)`` runs ``fn(model, objective, v1, v2, labels, ctx)`` instead
of :func:`training.engine.steps.forward_loss` (it must return the same dict of loss parts). A loss that becomes
NaN or infinite stops the run with :class:`NonFiniteLossError` after saving the state just before that step in
``last_good.pt``. On the CPU the numbers are bit-exact functions of the settings, whatever the interruptions.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from clop.losses.clop_objective import CLOPObjective
from clop.util.io import atomic_path, atomic_write_text, check_output_dir
from clop.util.lock import FolderLock
from clop.util.progress import progress_bar
from training.config import PretrainConfig
from training.data.augment import pretrain_transform
from training.data.catalog import DATASET_INFO, check_classes
from training.data.datasets import load_dataset
from training.data.loader import DeviceLoader
from training.data.views import TwoViewDataset, labeled_subset, masked_labels
from training.engine import distributed
from training.engine.build import build_model, build_objective, build_optimizer
from training.engine.distributed import Context, collective
from training.engine.memory import check_run_memory
from training.engine.resume import resumed_loader, run_state
from training.engine.rundir import (
    CHECKPOINT,
    CONFIG,
    GEOMETRY,
    LABELED,
    LAST_GOOD,
    LOG,
    METRICS,
    PREV_CHECKPOINT,
    CheckpointError,
    Checkpoints,
    CsvLog,
    RunLogHandler,
    load_state,
    missing_folders,
    remove_empty_folders,
    remove_run_files,
    remove_stale_files,
    save_state,
)
from training.engine.steps import BatchOrder, forward_loss
from training.eval.evaluate import (
    COLLAPSE_MEAN_NORM,
    GeometryLog,
    HeldOut,
    collapse_row,
    embed,
    embedding_eps,
    eval_batch_images,
    load_heldout,
    load_test_split,
)
from training.optim import make_scheduler

__all__ = ["NonFiniteLossError", "Step", "RunData", "Training", "pretrain", "seed_everything", "load_data", "build",
           "train_one_epoch", "end_epoch", "save_checkpoint"]

log = logging.getLogger("training")

Step = Callable[[torch.nn.Module, CLOPObjective, torch.Tensor, torch.Tensor, torch.Tensor, Context],
                dict[str, torch.Tensor]]
"""A training step's loss: (model, objective, view 1, view 2, labels, ctx) -> {"loss", "contrastive", "clop"}."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the state before that step was saved first."""


@dataclasses.dataclass
class RunData:
    """What :func:`load_data` prepares: the training split (``train``: (PIL image, label) items), the labeled
    indices, the two-view dataset, this process's batch order and loader, the optimiser steps per epoch, the
    fixed evaluation batch and the held-out images (main process; None where not computed)."""

    train: Any
    labeled: np.ndarray
    views: TwoViewDataset
    order: BatchOrder
    loader: Any
    steps: int
    eval_x: torch.Tensor | None
    heldout: HeldOut | None


@dataclasses.dataclass
class Training:
    """The state of a run between its steps: what :func:`build` made and where the loop stands.

    ``model`` is what the steps call (DistributedDataParallel under torchrun), ``core`` the network itself;
    ``sums`` the loss parts summed over the epoch so far; ``first_epoch`` and ``start_step`` where training
    (re)starts; ``geo`` the geometry log (main process, when ``--geometry-images`` > 0).
    """

    cfg: PretrainConfig
    run: Path
    ctx: Context
    data: RunData
    model: torch.nn.Module
    core: torch.nn.Module
    objective: CLOPObjective
    optimizer: torch.optim.Optimizer
    scheduler: Any
    geo: GeometryLog | None = None
    checkpoints: Checkpoints | None = None
    metrics: CsvLog | None = None
    sums: dict[str, float] = dataclasses.field(default_factory=lambda: {"loss": 0.0, "contrastive": 0.0, "clop": 0.0})
    first_epoch: int = 1
    start_step: int = 0

    @property
    def resumed_step(self) -> int:
        """The global optimiser steps done before this process started training."""
        return (self.first_epoch - 1) * self.data.steps + self.start_step


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _worker_init(worker_id: int) -> None:  # numpy/random in workers follow torch's per-worker seed
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


# ----------------------------------------------------------------------------------------------------
# Logging
# ----------------------------------------------------------------------------------------------------


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
    """Also log to RUN/train.log (appended to, never through a symbolic link), on the main process."""
    h = RunLogHandler(run / LOG)
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(h)
    handlers.append(h)


# ----------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------


def pretrain(cfg: PretrainConfig, *, progress: bool = True, step: Step = forward_loss) -> Path:
    """Run (or resume) a pre-training; returns the run directory. See the module docstring for its steps.

    ``step``: the loss of one training step (default :func:`training.engine.steps.forward_loss`).
    """
    loader_given = cfg.loader is not None
    cfg = cfg.resolved()
    if cfg.resume and not loader_given:
        cfg = resumed_loader(cfg)
    ctx = distributed.init(cfg.device)
    handlers = _setup_logging(ctx.main)
    run = Path(cfg.out)
    created = missing_folders(run) if ctx.main else []
    lock, state = None, None
    try:
        if cfg.batch_size % ctx.world:
            raise ValueError(f"batch_size={cfg.batch_size} is not divisible by the {ctx.world} processes")
        if run.exists():  # read what it holds first: a finished run needs no data
            lock, state = _open(cfg, run, ctx)
            if state[0] == "finished":
                return _finished(cfg, run, ctx, handlers)
        if ctx.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
        seed_everything(cfg.seed)
        data = load_data(cfg, ctx)  # the data and the memory checked before --out is made
        if state is None:
            lock, state = _open(cfg, run, ctx)
            if state[0] == "finished":  # another run finished it meanwhile
                return _finished(cfg, run, ctx, handlers)
        _train(cfg, run, ctx, data, state[1], state[2], handlers, progress, step)
        return run
    finally:
        if lock is not None:
            lock.release()
        for h in handlers:
            log.removeHandler(h)
            h.close()
        distributed.shutdown(ctx)
        remove_empty_folders(created)  # a run that stopped before its first write leaves no folder behind


def _open(cfg: PretrainConfig, run: Path, ctx: Context
          ) -> tuple[FolderLock | None, tuple[str, dict | None, str | None]]:
    """Lock --out (rank 0; created if missing) and read it on every process: (the lock,
    :func:`training.engine.resume.run_state`); once it is known to hold a run of ours (or none), the temporaries
    that a killed run left there are removed. The lock is released again if the reading fails."""
    lock = collective(ctx, lambda: _own(run), main_only=True)  # rank 0 alone owns --out
    try:
        state = collective(ctx, lambda: run_state(cfg))
        collective(ctx, lambda: remove_stale_files(run), main_only=True)
        return lock, state
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _own(run: Path) -> FolderLock:
    """Check that --out is a writable folder (created if missing) and lock it for this process."""
    check_output_dir(run, "--out")
    return FolderLock.acquire(run, "training.pretrain", "--out")


def _finished(cfg: PretrainConfig, run: Path, ctx: Context, handlers: list[logging.Handler]) -> Path:
    if ctx.main:
        _log_to_file(run, handlers)
    log.info("%s: already finished (%d epochs); nothing to do", run, cfg.epochs)
    return run


def _train(cfg: PretrainConfig, run: Path, ctx: Context, data: RunData, ckpt: dict | None, note: str | None,
           handlers: list[logging.Handler], progress: bool, step: Step) -> None:
    t = build(cfg, run, ctx, data, ckpt, source=run / (PREV_CHECKPOINT if note else CHECKPOINT))

    # everything is built and checked: from here on the run writes into --out
    distributed.barrier(ctx)  # every process has read the directory before the main one changes it
    collective(ctx, lambda: _commit(t, ckpt, note, handlers), main_only=True)
    t.checkpoints = Checkpoints(run, current_good=note is None)  # a bad checkpoint.pt is not kept as prev
    t.metrics = CsvLog(run / METRICS, "epoch")
    if ctx.distributed:
        t.model = torch.nn.parallel.DistributedDataParallel(
            t.core, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    log.info(
        "pretrain: %s on %s (%d images, %d labeled), %s, %d epochs x %d steps of batch %d (%d process%s), %s lr %.4g, "
        "device %s, loader %s -> %s%s",
        cfg.loss + (f" + CLOP(lambda={cfg.clop_lambda:g})" if cfg.clop_lambda > 0 else ""), cfg.dataset,
        len(data.views), len(data.labeled), cfg.arch, cfg.epochs, data.steps, cfg.batch_size, ctx.world,
        "" if ctx.world == 1 else "es", cfg.optimizer.upper(), cfg.lr, ctx.device, cfg.loader,
        run, "" if ckpt is None else f" (resumed at epoch {t.first_epoch}, step {t.start_step})",
    )
    for epoch in range(t.first_epoch, cfg.epochs + 1):
        seconds, lr_used = train_one_epoch(t, epoch, step, progress)
        end_epoch(t, epoch, seconds, lr_used)


def load_data(cfg: PretrainConfig, ctx: Context) -> RunData:
    """The data of a run: the main process downloads (or generates) the training split first, the others then
    read it; its class count and size checked, and the memory the run needs
    (:func:`training.engine.memory.check_run_memory`) before anything else is made; the labeled subset, the
    two views and the loader (``--loader``); the fixed evaluation batch and the held-out images on the main
    process."""
    train = collective(ctx, lambda: load_dataset(cfg.dataset, cfg.data_root, "train", download=cfg.download),
                       main_only=True)
    train = collective(ctx, lambda: train if ctx.main else load_dataset(cfg.dataset, cfg.data_root, "train"))
    info = DATASET_INFO[cfg.dataset]
    check_classes(cfg.dataset, train, cfg.data_root)
    if len(train) < cfg.batch_size:
        raise ValueError(
            f"batch_size={cfg.batch_size} exceeds the {len(train)} training images of {cfg.dataset}; "
            "pass a smaller --batch-size"
        )
    # the held-out images of the class geometry: on the main process only (it alone computes and writes it)
    test = collective(ctx, lambda: load_test_split(cfg), main_only=True) if cfg.geometry_images else None
    n_heldout = min(cfg.geometry_images, len(test)) if test is not None else 0
    collective(ctx, lambda: check_run_memory(cfg, ctx.world, len(train), n_heldout, ctx.device, ctx.main))
    labeled = labeled_subset(train.targets, cfg.label_fraction, cfg.seed)
    views = TwoViewDataset(
        train, pretrain_transform(cfg.augmentation, cfg.image_size, info.mean, info.std),
        masked_labels(train.targets, labeled), seed=cfg.seed,
    )
    full = len(views) // cfg.batch_size
    steps = full if cfg.steps_per_epoch is None else min(cfg.steps_per_epoch, full)
    order = BatchOrder(len(views), cfg.batch_size, steps, cfg.seed, ctx)
    if cfg.loader == "device":  # the same batches and views, augmented batched on the device
        loader = DeviceLoader(views, order, cfg.batch_size // ctx.world, ctx.device)
    else:
        loader = DataLoader(
            views, batch_size=cfg.batch_size // ctx.world, sampler=order, num_workers=cfg.workers,
            pin_memory=ctx.device.type == "cuda", worker_init_fn=_worker_init,
        )
    eval_x = eval_batch_images(cfg, train) if ctx.main else None
    heldout = collective(ctx, lambda: load_heldout(cfg, test), main_only=True) if cfg.geometry_images else None
    return RunData(train, labeled, views, order, loader, steps, eval_x, heldout)


def build(cfg: PretrainConfig, run: Path, ctx: Context, data: RunData, ckpt: dict | None,
          source: Path | None = None) -> Training:
    """The network (the same initial weights on every process), objective, optimiser and schedule, restored
    from ``ckpt`` (read from ``source``, named when its state does not fit) when resuming, and the geometry log:
    its last snapshot from the checkpoint, else one of the network now."""
    device, cuda = ctx.device, ctx.device.type == "cuda"
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
    total = cfg.epochs * data.steps
    scheduler = make_scheduler(optimizer, total, min(total, round(cfg.warmup_epochs * data.steps)))
    t = Training(cfg, run, ctx, data, model, model, objective, optimizer, scheduler)
    if ckpt is not None:
        source = source or run / CHECKPOINT
        load_state(model, ckpt["model"], source, "network")
        load_state(objective, ckpt["objective"], source, "objective (the CLOP prototypes)")
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            t.first_epoch, t.start_step, t.sums = ckpt["epoch"] + 1, ckpt["step_in_epoch"], dict(ckpt["sums"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"checkpoint {source} holds an optimiser or schedule state that does not fit the "
                                  f"run's settings ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    if data.heldout is not None:
        clop = objective.clop
        t.geo = GeometryLog(run / GEOMETRY, data.heldout, None if clop is None else clop.prototypes,
                            embedding_eps(model, device), cfg.geometry_images)
        if ckpt is not None and ckpt.get("geometry") is not None:  # run_state checked: of the same images
            t.geo.load_state_dict(ckpt["geometry"])
        else:  # a fresh run; or one checkpointed before the geometry was logged: its geometry.csv starts here
            t.geo.start(model, device, t.first_epoch - 1, t.resumed_step)
    return t


def _commit(t: Training, ckpt: dict | None, note: str | None, handlers: list[logging.Handler]) -> None:
    """The first writes of a run (main process), once everything is built: a new run deletes the files of
    the one it replaces, a resumed run drops the metrics and geometry rows it redoes (those after its
    checkpoint); then config and labeled split."""
    run = t.run
    if ckpt is None:  # the old config.json goes only when the new one replaces it: the folder stays recognisable
        remove_run_files(run, keep=(CONFIG,))
    else:
        CsvLog(run / METRICS, "epoch").keep_until(ckpt["epoch"])
        CsvLog(run / GEOMETRY, "step").keep_until(t.resumed_step)
    atomic_write_text(run / CONFIG, json.dumps(dataclasses.asdict(t.cfg), indent=2) + "\n")
    _log_to_file(run, handlers)
    if note:
        log.warning("%s", note)
    with atomic_path(run / LABELED) as tmp, open(tmp, "wb") as f:
        np.save(f, t.data.labeled)


# ----------------------------------------------------------------------------------------------------
# Epochs
# ----------------------------------------------------------------------------------------------------


def save_checkpoint(t: Training, path: Path, epoch_done: int, step_in_epoch: int, **extra: object) -> None:
    """The state of the run (main process) after ``epoch_done`` epochs and ``step_in_epoch`` more steps:
    RUN/checkpoint.pt (keeping the one it replaces, :class:`training.engine.rundir.Checkpoints`) or ``path``;
    geometry.csv is written first, so that it reaches at least as far as the checkpoint."""
    if not t.ctx.main:
        return
    cfg = t.cfg
    state = {
        "model": t.core.state_dict(), "objective": t.objective.state_dict(), "optimizer": t.optimizer.state_dict(),
        "scheduler": t.scheduler.state_dict(), "epoch": epoch_done, "step_in_epoch": step_in_epoch,
        "sums": dict(t.sums), "config": dataclasses.asdict(cfg),
        "geometry": {"images": cfg.geometry_images} if t.geo is None else t.geo.state_dict(), **extra,
    }
    if t.geo is not None:
        t.geo.flush()
    if path.name == CHECKPOINT:
        t.checkpoints.save(state)
    else:
        save_state(state, path)


def train_one_epoch(t: Training, epoch: int, step: Step, progress: bool) -> tuple[float, float]:
    """The optimiser steps of ``epoch`` from ``t.start_step`` on; returns (seconds, the learning rate of the last
    step's update). Logs the class geometry every ``--geometry-every`` steps and checkpoints every
    ``--checkpoint-every`` steps (not at the epoch's end: :func:`end_epoch` does)."""
    cfg, steps = t.cfg, t.data.steps
    t.model.train()
    t.data.views.set_epoch(epoch)
    t.data.order.set_epoch(epoch, t.start_step)
    start = time.perf_counter()
    bar = progress_bar(total=steps, initial=t.start_step, desc=f"epoch {epoch}/{cfg.epochs}",
                       enabled=progress and t.ctx.main, leave=False, unit="step")
    lr_used = math.nan
    for i, (v1, v2, y, _) in enumerate(t.data.loader, start=t.start_step):
        out = step(t.model, t.objective, v1, v2, y, t.ctx)
        values = {k: float(v.detach()) for k, v in out.items()}  # one host sync per step
        if not math.isfinite(values["loss"]):
            save_checkpoint(t, t.run / LAST_GOOD, epoch - 1, i, nonfinite_at={"epoch": epoch, "step": i + 1})
            raise NonFiniteLossError(
                f"the loss became {values['loss']} at epoch {epoch}, step {i + 1} (contrastive "
                f"{values['contrastive']}, clop {values['clop']}, lr {t.scheduler.get_last_lr()[0]:.4g}); "
                f"the state just before this step is saved in {t.run / LAST_GOOD} (the last checkpoint stays "
                f"in {CHECKPOINT}). A smaller --base-lr may help."
            )
        t.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        lr_used = t.optimizer.param_groups[0]["lr"]
        t.optimizer.step()
        t.scheduler.step()
        for k in t.sums:
            t.sums[k] += values[k]
        done = i + 1
        global_step = (epoch - 1) * steps + done
        if t.geo is not None and cfg.geometry_every and global_step % cfg.geometry_every == 0:
            t.geo.log(t.core, t.ctx.device, epoch, global_step, lr_used)
        if cfg.checkpoint_every and done < steps and global_step % cfg.checkpoint_every == 0:
            save_checkpoint(t, t.run / CHECKPOINT, epoch - 1, done)  # mid-epoch; the epoch end saves in end_epoch
        bar.set_postfix(
            loss=f"{values['loss']:.4f}",
            img_s=f"{(done - t.start_step) * cfg.batch_size / (time.perf_counter() - start):.1f}", refresh=False,
        )
        bar.update()
    bar.close()
    return time.perf_counter() - start, lr_used


def end_epoch(t: Training, epoch: int, seconds: float, lr_used: float) -> None:
    """The end of ``epoch``: its metrics row (main process: the epoch's mean loss parts, throughput, the collapse
    metrics of the evaluation batch and the class geometry of the held-out images), its checkpoint, its log."""
    cfg, steps = t.cfg, t.data.steps
    row = geom = None
    if t.ctx.main:
        _, z_eval = embed(t.core, t.data.eval_x, t.ctx.device)
        geom = {}
        if t.geo is not None:
            if cfg.geometry_every is None:
                t.geo.log(t.core, t.ctx.device, epoch, epoch * steps, lr_used)
            geom = t.geo.columns(t.core, t.ctx.device, epoch * steps)  # the same embeddings as a log at this step
        row = {
            "epoch": epoch, "step": epoch * steps, "lr": lr_used,
            **{k: v / steps for k, v in t.sums.items()},
            "images_per_s": (steps - t.start_step) * cfg.batch_size / seconds, "epoch_seconds": seconds,
            **collapse_row(z_eval), **geom,
        }
        t.metrics.append([row])
    t.sums = {k: 0.0 for k in t.sums}
    t.start_step = 0
    save_checkpoint(t, t.run / CHECKPOINT, epoch, 0)
    if t.ctx.main:
        _log_epoch(t, epoch, row, geom)
    distributed.barrier(t.ctx)


def _log_epoch(t: Training, epoch: int, row: dict, geom: dict) -> None:
    log.info(
        "epoch %d/%d: loss %.4f (contrastive %.4f, clop %.4f), stable rank %.2f, entropy rank %.2f, %.1f img/s",
        epoch, t.cfg.epochs, row["loss"], row["contrastive"], row["clop"], row["stable_rank"],
        row["entropy_rank"], row["images_per_s"],
    )
    if geom:
        log.info("epoch %d: held-out class means: rank %.0f, stable rank %.2f, mean cosine %.3f (ETF %.3f), "
                 "norm of the mean unit embedding %.3f", epoch, geom["geom_class_rank"],
                 geom["geom_class_stable_rank"], geom["geom_class_cos_mean"], -1.0 / (t.data.heldout.k - 1),
                 geom["geom_mu_norm"])
    if row["collapsed"]:
        log.warning(
            "epoch %d: COMPLETE COLLAPSE - the evaluation embeddings all point one way "
            "(norm of the mean of the unit embeddings %.4f >= %g)", epoch, row["unit_mean_norm"],
            COLLAPSE_MEAN_NORM,
        )
