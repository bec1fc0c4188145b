"""Every setting of a pre-training run (:class:`PretrainConfig`) and of a linear probe (:class:`ProbeConfig`),
each written once.

A field is declared with :func:`setting`, which carries its command-line help and its metadata:

* ``flag``: the command-line flag (default ``--`` + the name with dashes); booleans are switches;
* ``resumable``: the setting may differ between a run and its resumption: it changes neither the numbers nor
  the run's default name (the output folder, the data folder, the loader where both give the same views, the
  logging of the class geometry, ...);
* ``in_results``: the setting goes into a results row of training.linear_eval (not those of logging nor how
  the views were loaded);
* ``absent_means``: for a setting added after runs were made, the value a config.json without it ran with;
* ``cli_default``: the parser's default where it differs from the field's (``--dataset`` is None there, so
  that ``--smoke`` can pick its own).

Derived from the fields, never restated: the parsers (:func:`pretrain_parser`, :func:`probe_parser`),
:data:`RESUMABLE_CHANGES`, :data:`ADDED_SETTINGS`, :data:`RUN_SETTINGS` and the default run name
(:func:`run_name`). A command line is parsed once (:func:`config_from_args`).

Defaults and their sources (the CLOP paper, arXiv 2403.18699, Sec. 5, states only some of them; the rest are
SimCLR's, Chen et al. 2020a, the framework the paper says it uses; docs/training.md explains each):

* batch 1024 and lr = 0.3 x batch / 256; 200 epochs on CIFAR-100 and ImageNet, 100 on Tiny-ImageNet;
  lambda = 1; 10 % labels (semi-supervised) or all labels (SupCon): the paper;
* LARS, momentum 0.9, weight decay 1e-6, trust coefficient 1e-3, 10 warm-up epochs then cosine decay,
  projection head 2048-2048-128: SimCLR;
* temperatures: the loss modules' defaults in ``clop.losses`` (InfoNCE 0.5, SupCon 0.1, DCL 0.1);
* projection dim: 128, raised to the class count rounded up to a power of two when that is larger (k
  orthonormal prototypes need k <= dim); CLOP reduction "mean" over the labeled views (the scale-consistent
  reading of Eq. (4); "sum" as printed);
* ``--dataset digits`` (ours): 8 px, the ``digits`` policy, batch 256, 50 epochs, a warm-up of a tenth of
  them; ``synthetic`` (ours): 20 epochs;
* ``--loss ssem`` (Lee et al. 2025, arXiv 2503.08203): alpha 0.5, the "pairs" convention, temperature 0.1, the
  authors' CIFAR command (``clop.losses.ssem``); ``--loss cplearn`` (Sansone et al. 2025, arXiv 2410.04959):
  f = 2048, c = 16384, beta = 1, the authors' CIFAR configuration, tau from f, c and the batch
  (``clop.losses.cplearn_temperature``). These settings came after runs were made; a config.json without them
  reads as these defaults and the runs keep their names (``absent_means``). They do not go into a results row
  (``in_results=False``), so results CSVs written before stay appendable; a run's config.json holds them.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clop.losses.clop_objective import REDUCTIONS, SIMILARITIES
from clop.losses.ssem_loss import SSEM_CONVENTIONS
from clop.util.checks import check_choice, check_nonnegative, check_positive, check_size, is_finite_real
from clop.util.cli import HelpFormatter, check_device
from clop.util.io import check_path_text
from training.data.augment import FLIPPING_POLICIES, POLICIES, default_policy
from training.data.catalog import DATASET_INFO, DATASETS
from training.data.loader import LOADERS, SAME_VIEWS, check_loader
from training.engine.model import ARCHS, NO_BATCHNORM
from training.optim import OPTIMIZERS

__all__ = [
    "LOSSES", "PROTOTYPES", "LOSSES_WITH_TEMPERATURE", "EPOCHS", "BATCH_SIZE", "SMOKE", "setting", "PretrainConfig",
    "ProbeConfig", "RESUMABLE_CHANGES", "ADDED_SETTINGS", "RUN_SETTINGS", "run_name", "changed_settings",
    "default_workers", "pretrain_parser", "probe_parser", "parse_given", "parse_pretrain_args",
    "config_from_args",
]

LOSSES = ("infonce", "dcl", "supcon", "barlowtwins", "vicreg", "ssem", "cplearn")
"""The losses of ``--loss`` (each one of ``clop.losses.LOSSES``). All but ``cplearn`` act on the projection output
z of SimCLR's head; ``cplearn`` replaces that head by :class:`clop.losses.CPLearnProjector` and acts on its code
logits (:func:`training.engine.build.build_model`), so the CLOP term, which needs z, is refused with it."""
PROTOTYPES = ("orthonormal", "etf")
LOSSES_WITH_TEMPERATURE = ("infonce", "dcl", "supcon", "ssem")
EPOCHS = {"cifar100": 200, "imagenet": 200, "tiny-imagenet": 100, "synthetic": 20, "digits": 50}
"""CLOP paper Sec. 5 (synthetic, digits: ours)."""
BATCH_SIZE = {"digits": 256}
"""Datasets whose default batch is not the paper's 1024 (digits: 1,438 training images, 5 steps per epoch)."""
SMOKE = {
    "dataset": "synthetic", "image_size": 16, "batch_size": 16, "epochs": 2, "steps_per_epoch": 3,
    "warmup_epochs": 1.0, "eval_batch": 64, "geometry_images": 64, "workers": 0,
}
"""--smoke: a few ResNet-50 steps on 16 px generated images, every stage of a real run (the class geometry on
64 of the 200 test images); each setting the user gives on the command line wins."""

_UNSET = object()


def setting(help: str, default: Any = dataclasses.MISSING, *, flag: str | None = None, resumable: bool = False,
            in_results: bool = True, choices: Sequence[str] | None = None, absent_means: Any = _UNSET,
            cli_default: Any = _UNSET) -> Any:
    """A config field with its command-line help and metadata (module docstring)."""
    meta = {"help": help, "flag": flag, "resumable": resumable, "in_results": in_results, "choices": choices,
            "absent_means": absent_means, "cli_default": cli_default}
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass
class PretrainConfig:
    """Every setting of a pre-training run. ``None`` fields are filled by :meth:`resolved`."""

    out: str | None = setting(
        "run directory (default: runs/<dataset>-<loss>-<clop>-l<labels>-b<batch>-lr<base-lr>-s<seed>-<hash of "
        "the other settings>)", None, resumable=True, in_results=False)
    dataset: str = setting(
        "dataset (default: cifar100; synthetic with --smoke). digits: scikit-learn's 1,797 8x8 digits, a fixed "
        "class-stratified split (seed 0, a fifth of each class to test: 1,438 train / 359 test), pixels 0..16 "
        "scaled to [0, 1], grey replicated to 3 channels", "cifar100", choices=DATASETS, cli_default=None)
    data_root: str = setting(
        "folder holding the dataset (CIFAR-100: <root>/cifar-100-python; Tiny-ImageNet: <root>/tiny-imagenet-200 "
        "or the folder itself; ImageNet: <root>/train, <root>/val; digits: not used, scikit-learn ships them)",
        "data", resumable=True)
    download: bool = setting("download CIFAR-100 or Tiny-ImageNet into --data-root if missing", False,
                             resumable=True)
    loss: str = setting("contrastive loss L_CL (paper: infonce with 10%% labels, supcon with all)", "infonce",
                        choices=sorted(LOSSES))
    clop_lambda: float = setting("lambda of Eq. (4); 0 turns CLOP off (paper Sec. 5: 1.0)", 1.0)
    prototypes: str = setting("CLOP prototypes (paper: orthonormal; etf for its comparison)", "orthonormal",
                              choices=PROTOTYPES)
    similarity: str = setting("s(z, c) of Eq. (4) (paper: cosine; Table 2 ablation)", "cosine", choices=SIMILARITIES)
    clop_reduction: str = setting(
        "CLOP sum over labeled views as printed in Eq. (4) ('sum'), or its mean ('mean', scale-consistent), or "
        "sum / batch views ('batch')", "mean", choices=REDUCTIONS)
    label_fraction: float = setting(
        "class-stratified labeled fraction (paper: 0.1 semi-supervised, 1.0 fully supervised)", 0.1)
    augmentation: str | None = setting(
        "view policy (paper Table 3 ablation; default: simclr, and digits for --dataset digits: translation <= "
        "1 px, zoom 0.9-1.1, brightness/contrast, noise, no flips)", None, choices=POLICIES)
    arch: str = setting("encoder (paper: resnet50; small: 3 conv layers, 93,472 parameters, 128-d features, any "
                        "image size)", "resnet50", choices=ARCHS)
    image_size: int | None = setting(
        "training crop in pixels (default: the dataset's, 32 / 64 / 224; digits 8)", None)
    batch_size: int | None = setting(
        "images per step (default: 1024, paper Sec. 5, sweep 32-2048; digits 256)", None)
    base_lr: float = setting("learning rate = base-lr x batch / 256 (paper Sec. 5: 0.3)", 0.3)
    epochs: int | None = setting(
        "epochs (paper: 200 CIFAR-100 / ImageNet, 100 Tiny-ImageNet; "
        f"digits {EPOCHS['digits']}, synthetic {EPOCHS['synthetic']})", None)
    warmup_epochs: float | None = setting(
        "linear warm-up before cosine decay (default: 10, SimCLR; digits: a tenth of --epochs)", None)
    weight_decay: float = setting("weight decay, not on biases and norm layers (SimCLR: 1e-6)", 1e-6)
    momentum: float = setting("momentum of LARS and SGD (SimCLR: 0.9)", 0.9)
    trust_coefficient: float = setting("LARS trust coefficient (SimCLR: 1e-3; not used by sgd)", 1e-3)
    optimizer: str = setting(
        "lars (SimCLR) or sgd: the same momentum, weight decay, parameter groups and schedule without LARS's "
        "trust ratio", "lars", choices=OPTIMIZERS, absent_means="lars")
    hold_weight_norms: bool = setting(
        "after every optimiser step, put each scale-invariant weight (that of a convolution or linear layer "
        "without bias whose output goes only into a BatchNorm) back to its norm at initialisation, so that its "
        "effective step lr/||w||^2 cannot shrink as ||w|| grows (ours; the ladder's rung 3, docs/ladder.md). Not "
        "a results column: such runs are told apart by their name", False, in_results=False, absent_means=False)
    temperature: float | None = setting(
        "temperature (default: the loss's, infonce 0.5, supcon 0.1, dcl 0.1, ssem 0.1)", None)
    ssem_alpha: float = setting(
        "--loss ssem: weight alpha of the self-supervised part, L = (1 - alpha) L_sup + alpha L_self, in [0, 1] "
        "(SSEM, arXiv 2503.08203; the authors' CIFAR command: 0.5)", 0.5, in_results=False, absent_means=0.5)
    ssem_convention: str = setting(
        "--loss ssem: pairs (the authors' CIFAR code: global means over pairs, self term kept) or anchors (their "
        "ImageNet code, SupCon-style)", "pairs", choices=SSEM_CONVENTIONS, in_results=False, absent_means="pairs")
    cplearn_f: int = setting(
        "--loss cplearn: width f of the projector's tanh layer (CPLearn, arXiv 2410.04959; the authors' CIFAR "
        "config: 2048)", 2048, in_results=False, absent_means=2048)
    cplearn_c: int = setting(
        "--loss cplearn: number c of fixed random +-1 codes, >= 2 (the authors' CIFAR config: 16384)", 16384,
        in_results=False, absent_means=16384)
    cplearn_beta: float = setting(
        "--loss cplearn: weight beta of the cross-entropy terms, >= 0 (the authors' CIFAR config: 1)", 1.0,
        in_results=False, absent_means=1.0)
    projection_dim: int | None = setting(
        "output of the projection head (SimCLR: 128; at least the class count)", None)
    hidden_dim: int = setting("hidden width of the projection head (SimCLR: 2048)", 2048)
    eval_batch: int = setting("images in the fixed batch whose embeddings give the collapse metrics", 512)
    steps_per_epoch: int | None = setting("cap on steps per epoch (default: a full pass)", None)
    workers: int | None = setting(
        "data-loading processes of --loader workers (default: min(8, CPUs))", None, resumable=True,
        in_results=False)
    loader: str | None = setting(
        "device: keep the images on the training device and augment whole batches there (digits; cifar100 and "
        "synthetic with --augmentation simclr below 64 px); workers: a DataLoader augmenting one image at a time "
        "in --workers processes. Default: device where it exists and the images take at most a quarter of the "
        "device's memory, else workers; on --resume, the run's own. Digits get the same views either way; simclr "
        "views from the same distributions (not PIL's arithmetic)", None, choices=LOADERS, resumable=True,
        in_results=False, absent_means="workers")
    seed: int = setting("seed of weights, prototypes, labeled split, data order and views", 0)
    device: str | None = setting("cuda, cuda:N or cpu (default: CUDA when present)", None, resumable=True,
                                 in_results=False)
    overwrite: bool = setting("replace a finished or partial run in --out", False, resumable=True, in_results=False)
    resume: bool = setting(
        "continue the run in --out from its last checkpoint (start it if there is none; a finished run is left "
        "as it is)", False, resumable=True)
    checkpoint_every: int | None = setting(
        "also checkpoint every N steps (default: at epoch ends only)", None, resumable=True)
    sync_bn: bool = setting(
        "with several GPUs, keep BatchNorm statistics per process instead of over the global batch (default: over "
        "the global batch, as SimCLR; the CPU has no SyncBatchNorm)", True, flag="--no-sync-bn")
    geometry_images: int = setting(
        "held-out labeled images (the test split; a fixed class-stratified subset when it is larger) whose "
        "embeddings give the class geometry of metrics.csv's geom_ columns and geometry.csv; 0 turns both off",
        1024, resumable=True, in_results=False)
    geometry_every: int | None = setting(
        "fit the change of the held-out unit class means to the Appendix D step every N optimiser steps "
        "(geometry.csv; default: at each epoch end)", None, resumable=True, in_results=False)

    def resolved(self) -> PretrainConfig:
        """A validated copy with the dataset-dependent defaults filled in; bad values raise ValueError."""
        c = dataclasses.replace(self)
        _check_paths(c)
        _check_choices(c)
        _fill_dataset_defaults(c)
        _check_optimisation(c)
        _check_head_and_logging(c)
        if c.resume and c.overwrite:
            raise ValueError("resume and overwrite exclude each other; pass one of --resume, --overwrite")
        if c.workers is None:
            c.workers = default_workers()
        c.workers = check_size("workers", c.workers, 0)
        device = check_device(c.device)  # fails now if CUDA is asked for and absent
        c.loader = check_loader(c.loader, c.dataset, c.augmentation, c.image_size, device)
        if c.out is None:
            c.out = run_name(c)
        return c

    @property
    def lr(self) -> float:
        """The learning rate the optimiser uses: base_lr x batch_size / 256 (CLOP paper Sec. 5)."""
        return self.base_lr * self.batch_size / 256


def _check_paths(c: PretrainConfig) -> None:
    """An empty ``--out`` or ``--data-root`` (an unset shell variable) would silently mean the current folder."""
    if c.out is not None:
        check_path_text(c.out, "--out")
    check_path_text(c.data_root, "--data-root")


def _check_choices(c: PretrainConfig) -> None:
    c.dataset = check_choice("dataset", c.dataset, DATASETS)
    c.loss = check_choice("loss", c.loss, LOSSES)
    c.prototypes = check_choice("prototypes", c.prototypes, PROTOTYPES)
    c.similarity = check_choice("similarity", c.similarity, SIMILARITIES)
    c.clop_reduction = check_choice("clop_reduction", c.clop_reduction, REDUCTIONS)
    if c.augmentation is None:
        c.augmentation = default_policy(c.dataset)
    c.augmentation = check_choice("augmentation", c.augmentation, POLICIES)
    if c.dataset == "digits" and c.augmentation in FLIPPING_POLICIES:
        raise ValueError(f"augmentation={c.augmentation!r} flips images, and a mirrored digit is another symbol; "
                         "with --dataset digits pass --augmentation digits (the default)")
    c.arch = check_choice("arch", c.arch, ARCHS)
    if c.hold_weight_norms and c.arch in NO_BATCHNORM:
        raise ValueError(f"hold_weight_norms: arch={c.arch!r} has no BatchNorm, hence no scale-invariant weight to "
                         "hold; drop --hold-weight-norms or pick an arch with BatchNorm")
    c.optimizer = check_choice("optimizer", c.optimizer, OPTIMIZERS)
    check_nonnegative("clop_lambda", c.clop_lambda)
    if not 0.0 < c.label_fraction <= 1.0:
        raise ValueError(f"label_fraction must be in (0, 1]; got {c.label_fraction!r}")
    _check_remedies(c)


def _check_remedies(c: PretrainConfig) -> None:
    """The settings of --loss ssem and --loss cplearn (checked whatever the loss, so a bad value never waits)."""
    if not (is_finite_real(c.ssem_alpha) and 0.0 <= c.ssem_alpha <= 1.0):
        raise ValueError(f"ssem_alpha must be a real number in [0, 1]; got {c.ssem_alpha!r}")
    c.ssem_alpha = float(c.ssem_alpha)
    c.ssem_convention = check_choice("ssem_convention", c.ssem_convention, SSEM_CONVENTIONS)
    c.cplearn_f = check_size("cplearn_f", c.cplearn_f)
    c.cplearn_c = check_size("cplearn_c", c.cplearn_c, 2)
    check_nonnegative("cplearn_beta", c.cplearn_beta)
    if c.loss == "cplearn" and c.clop_lambda > 0:
        raise ValueError(f"clop_lambda={c.clop_lambda:g}: --loss cplearn replaces the projection output z, on which "
                         "the CLOP term acts, by its code logits; pass --clop-lambda 0")


def _fill_dataset_defaults(c: PretrainConfig) -> None:
    info = DATASET_INFO[c.dataset]
    c.data_root = str(Path(c.data_root).expanduser().resolve())  # a probe run from elsewhere finds the data
    c.image_size = check_size("image_size", c.image_size if c.image_size is not None else info.image_size, 8)
    c.epochs = check_size("epochs", c.epochs if c.epochs is not None else EPOCHS[c.dataset])
    c.batch_size = check_size("batch_size", BATCH_SIZE.get(c.dataset, 1024) if c.batch_size is None else c.batch_size, 2)
    if c.warmup_epochs is None:  # SimCLR: 10 epochs; digits: a tenth of the run
        c.warmup_epochs = c.epochs / 10 if c.dataset == "digits" else 10.0


SEED_LIMIT = 2**63
"""Seeds must lie below this: torch's generators take a signed 64-bit seed."""
LR_LIMIT = 3.4028234663852886e38
"""Learning rates must lie below float32's largest value: the optimisers apply them to float32 tensors."""


def _check_seed(seed: object) -> int:
    seed = check_size("seed", seed, 0)
    if seed >= SEED_LIMIT:
        raise ValueError(f"seed must be an integer in [0, 2**63); got {seed}")
    return seed


def _check_optimisation(c: PretrainConfig) -> None:
    for name in ("base_lr", "trust_coefficient"):
        check_positive(name, getattr(c, name))
    if not c.lr < LR_LIMIT:
        raise ValueError(f"base_lr x batch_size / 256 = {c.lr:g} exceeds float32's largest value {LR_LIMIT:g}; "
                         "pass a smaller --base-lr")
    for name in ("weight_decay", "momentum", "warmup_epochs"):
        check_nonnegative(name, getattr(c, name))
    if c.momentum >= 1:
        raise ValueError(f"momentum must be a real number in [0, 1); got {c.momentum!r}")
    c.seed = _check_seed(c.seed)
    if c.warmup_epochs > c.epochs:
        raise ValueError(f"warmup_epochs={c.warmup_epochs} exceeds epochs={c.epochs}; pass a smaller --warmup-epochs")
    if c.temperature is not None:
        if c.loss not in LOSSES_WITH_TEMPERATURE:
            raise ValueError(f"temperature: loss={c.loss!r} has no temperature; it applies to {LOSSES_WITH_TEMPERATURE}")
        check_positive("temperature", c.temperature)


def _check_head_and_logging(c: PretrainConfig) -> None:
    k = DATASET_INFO[c.dataset].num_classes
    if c.projection_dim is None:
        c.projection_dim = max(128, 1 << (k - 1).bit_length())
    c.projection_dim = check_size("projection_dim", c.projection_dim)
    if c.clop_lambda > 0 and c.prototypes == "orthonormal" and c.projection_dim < k:
        raise ValueError(
            f"projection_dim={c.projection_dim} is smaller than the {k} classes of {c.dataset}: "
            f"{k} orthonormal prototypes need projection_dim >= {k}"
        )
    if c.clop_lambda > 0 and c.prototypes == "etf" and c.projection_dim < k - 1:
        raise ValueError(
            f"projection_dim={c.projection_dim} is too small for the {k} classes of {c.dataset}: a simplex ETF of "
            f"{k} prototypes spans {k - 1} dimensions, so --prototypes etf needs projection_dim >= {k - 1}"
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


_FIELDS = dataclasses.fields(PretrainConfig)
RESUMABLE_CHANGES = tuple(f.name for f in _FIELDS if f.metadata["resumable"])
"""Settings that may differ between a run and its resumption: they change neither its training numbers nor the
run's default name. The loader only for the policies of ``training.data.loader.SAME_VIEWS`` (digits): a resume
refuses another loader for the others; geometry_images is checked against the checkpoint's class-mean snapshot
instead; a changed geometry_every only changes the length of the later geometry.csv intervals."""
ADDED_SETTINGS = {f.name: f.metadata["absent_means"] for f in _FIELDS if f.metadata["absent_means"] is not _UNSET}
"""Settings added after runs were made: the value that a config.json without the key ran with."""
RUN_SETTINGS = tuple(f.name for f in _FIELDS if f.metadata["in_results"])
"""The settings of a pre-training run that go into a results row of training.linear_eval (not those of its
logging: the probe's class geometry uses every test image; nor how its views were loaded)."""


def run_name(c: PretrainConfig) -> str:
    """The default ``--out`` of a resolved config: ``runs/<dataset>-<loss>-<clop>-l<labels>-b<batch>-lr<base_lr>-
    s<seed>-<hash>``, the hash (6 hex digits of a SHA-1) of every setting that changes the numbers. Added settings
    at the value older runs had, and the loader where both loaders give the same views, leave it as it was, so
    that ``--resume`` without ``--out`` finds runs made before."""
    tag = f"clop{c.clop_lambda:g}" if c.clop_lambda > 0 else "noclop"
    settings = {k: v for k, v in dataclasses.asdict(c).items()
                if k not in RESUMABLE_CHANGES and (k, v) not in ADDED_SETTINGS.items()}
    if c.loader != "workers" and c.augmentation not in SAME_VIEWS:
        settings["loader"] = c.loader  # other views than the PIL path's (workers runs keep their names)
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:6]
    return str(Path("runs") / f"{c.dataset}-{c.loss}-{tag}-l{c.label_fraction:g}-b{c.batch_size}"
               f"-lr{c.base_lr:g}-s{c.seed}-{digest}")


def changed_settings(saved: dict, now: dict) -> list[str]:
    """The settings of ``now`` that differ from ``saved`` and change a run's numbers, as "name: saved -> now";
    a setting of :data:`ADDED_SETTINGS` missing from ``saved`` counts at its old value."""
    saved = {**ADDED_SETTINGS, **saved}
    return [f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in now.items()
            if k not in RESUMABLE_CHANGES and saved.get(k) != v]


def default_workers() -> int:
    """Data-loading processes per training process: min(8, CPUs / processes on this machine), at least 1."""
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # set by torchrun
    return max(1, min(8, (os.cpu_count() or 1) // per_node))


@dataclasses.dataclass
class ProbeConfig:
    """Settings of the linear probe (SGD on standardised frozen features, :mod:`training.eval.probe`)."""

    run: str = setting("run directory written by training.pretrain")
    results: str | None = setting("results CSV to append to (default: RUN/../results.csv)", None)
    all_labels: bool = setting("train the probe on every training label, not the run's labeled fraction", False)
    allow_partial: bool = setting("probe an unfinished run (its last finished epoch)", False)
    epochs: int = setting("probe epochs", 100)
    lr: float = setting("probe SGD learning rate (cosine decay)", 0.1)
    weight_decay: float = setting("probe weight decay", 0.0)
    batch_size: int = setting("batch of the feature pass and of the probe", 256)
    data_root: str | None = setting("dataset folder (default: the run's)", None)
    workers: int | None = setting("data-loading processes (default: min(8, CPUs))", None)
    seed: int = setting("seed of the probe's shuffling (its weights start at zero)", 0)
    device: str | None = setting("cuda, cuda:N or cpu (default: CUDA when present)", None)

    def resolved(self) -> ProbeConfig:
        """A validated copy with the defaults filled in; bad values raise ValueError naming the setting."""
        c = dataclasses.replace(self)
        check_path_text(c.run, "--run")
        for flag, value in (("--results", c.results), ("--data-root", c.data_root)):
            if value is not None:
                check_path_text(value, flag)
        check_size("epochs", c.epochs)
        _check_seed(c.seed)
        check_positive("lr", c.lr)
        if not c.lr < LR_LIMIT:
            raise ValueError(f"lr must be below float32's largest value {LR_LIMIT:g}; got {c.lr:g}")
        if not (c.weight_decay >= 0 and math.isfinite(c.weight_decay)):
            raise ValueError(f"weight_decay must be a finite real number >= 0; got {c.weight_decay!r}")
        check_size("batch_size", c.batch_size)
        if c.workers is None:
            c.workers = default_workers()
        check_size("workers", c.workers, 0)
        if c.results is None:
            c.results = str(Path(c.run).resolve().parent / "results.csv")
        check_device(c.device)
        return c


# ----------------------------------------------------------------------------------------------------
# Command lines
# ----------------------------------------------------------------------------------------------------


def _add_settings(parser: argparse.ArgumentParser, cls: type) -> None:
    """One option per field of the dataclass ``cls``, from its type and metadata."""
    for f in dataclasses.fields(cls):
        m = f.metadata
        flag = m["flag"] or "--" + f.name.replace("_", "-")
        kw: dict[str, Any] = {"help": m["help"], "dest": f.name}
        if f.type == "bool":
            kw["action"] = "store_false" if f.default else "store_true"
        else:
            if f.default is dataclasses.MISSING:
                kw["required"] = True
            else:
                kw["default"] = f.default if m["cli_default"] is _UNSET else m["cli_default"]
            kind = f.type.split(" | ")[0]
            if kind in ("int", "float"):
                kw["type"] = int if kind == "int" else float
            if m["choices"] is not None:
                kw["choices"] = m["choices"]
        parser.add_argument(flag, **kw)


def pretrain_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m training.pretrain``: one option per :class:`PretrainConfig` field, then
    ``--smoke`` and ``--no-progress``."""
    p = argparse.ArgumentParser(
        prog="python -m training.pretrain",
        description="Pre-train ResNet-50 with a contrastive loss, with or without the CLOP term (CLOP paper Sec. 5).",
        formatter_class=HelpFormatter,
    )
    _add_settings(p, PretrainConfig)
    p.add_argument("--smoke", action="store_true",
                   help="tiny run on generated data: " + ", ".join(f"{k}={v}" for k, v in SMOKE.items()))
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def probe_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m training.linear_eval``: one option per :class:`ProbeConfig` field, then
    ``--no-progress``."""
    p = argparse.ArgumentParser(
        prog="python -m training.linear_eval",
        description="Top-1/top-5 of a linear classifier on the frozen features of a pre-trained run (CLOP paper Sec. 5).",
        formatter_class=HelpFormatter,
    )
    _add_settings(p, ProbeConfig)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def parse_given(parser: argparse.ArgumentParser, argv: Sequence[str] | None, dests: Sequence[str], *,
                known: bool = False, exit_on_error: bool = True) -> tuple[argparse.Namespace, set[str], list[str]]:
    """Parse ``argv`` once: (the namespace with every default filled in, those of ``dests`` given on the command
    line, the arguments not recognised (only with ``known``; else they are an error, exit 2)). Without
    ``exit_on_error`` a bad value raises argparse.ArgumentError instead of exiting."""
    parser.exit_on_error = exit_on_error
    ns = argparse.Namespace(**dict.fromkeys(dests, _UNSET))  # argparse sets a default only where no value is
    if known:
        ns, rest = parser.parse_known_args(argv, namespace=ns)
    else:
        ns, rest = parser.parse_args(argv, namespace=ns), []
    given = {d for d in dests if getattr(ns, d) is not _UNSET}
    for d in set(dests) - given:
        setattr(ns, d, parser.get_default(d))
    return ns, given, rest


def parse_pretrain_args(argv: Sequence[str] | None, *, known: bool = False, exit_on_error: bool = True
                        ) -> tuple[argparse.Namespace, set[str], list[str]]:
    """:func:`parse_given` with :func:`pretrain_parser` and its every destination."""
    return parse_given(pretrain_parser(), argv, [*(f.name for f in _FIELDS), "smoke", "no_progress"], known=known,
                       exit_on_error=exit_on_error)


def config_from_args(argv: Sequence[str] | None) -> tuple[PretrainConfig, argparse.Namespace]:
    """The config of a training.pretrain command line and its parsed namespace; ``--smoke`` fills in the settings
    of :data:`SMOKE` that the user did not give (its geometry_images raised to the class count of a --dataset
    with more classes)."""
    args, given, _ = parse_pretrain_args(argv)
    values = {f.name: getattr(args, f.name) for f in _FIELDS if f.name in given}
    if args.smoke:
        values = {**{k: v for k, v in SMOKE.items() if k not in given}, **values}
        info = DATASET_INFO.get(values["dataset"])  # an unknown name is refused by resolved()
        if "geometry_images" not in given and info is not None:
            values["geometry_images"] = max(values["geometry_images"], info.num_classes)
    return PretrainConfig(**values), args
