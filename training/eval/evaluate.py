"""What the pre-training measures besides the loss: the collapse metrics of a fixed training batch and the class
geometry of held-out labeled embeddings (CLOP paper, arXiv 2403.18699, Theorem 1, Sec. 3.2, Appendix D).

* **Collapse metrics** (metrics.csv's ``stable_rank`` .. ``collapsed`` columns): :func:`eval_batch_images`
  picks a fixed batch of un-augmented TRAINING images, :func:`collapse_row` reads the rank metrics of their
  embeddings z (:mod:`clop.metrics`) and flags complete collapse (:data:`COLLAPSE_MEAN_NORM`).
* **Class geometry** (metrics.csv's ``geom_<key>`` columns, :data:`GEOM_COLUMNS`, one per
  :data:`training.eval.geometry.GEOMETRY_KEYS` key): :func:`training.eval.geometry.class_geometry` of the
  embeddings z of HELD-OUT labeled images (:func:`load_heldout`): the test split (Tiny-ImageNet and ImageNet:
  the val split), un-augmented, at most ``--geometry-images`` of them (a fixed, seeded, class-stratified subset
  when the split is larger, :func:`stratified_subset`), the network in eval mode, with CLOP's prototypes when
  the run uses CLOP. z, not the encoder features h: the theory speaks of the embeddings that the contrastive
  loss normalises, and that is the projection output z.
* **geometry.csv** (:class:`GeometryLog`, columns :data:`GEOMETRY_COLUMNS`): every ``--geometry-every``
  optimiser steps (default: at each epoch end) a snapshot of the k unit class means of the same held-out
  embeddings; each row fits the change since the previous snapshot to the Appendix D step
  (:func:`training.eval.geometry.eta_table`): ``step`` (the global optimiser step at the end of the interval),
  ``epoch`` (that step's epoch), ``lr`` (the learning rate of that step's update, as metrics.csv's ``lr``), then
  :data:`training.eval.geometry.TABLE_KEYS` with ``interval`` (0, 1, ... over the whole run) and ``steps``
  (the optimiser steps in the interval; eta_eff is per interval, divide by it or read ``eta_step``). The first
  interval starts from the freshly initialised network (step 0).

Precision: on CUDA :func:`embed` runs the network under bf16 autocast, so the embeddings carry bf16 precision
although they come back as float32; :func:`embedding_eps` says which, and every geometry computation gets
``rtol = clop.metrics.default_rtol(N, D, that eps)``: a class mean must turn by more than that to count as moving.

Exactness: nothing here draws from a random generator (the subset has its own seeded generator) and the network
is put back in train mode, so the training numbers are those of a run without it. Only the main process
computes and writes these, on the unwrapped network (no collective operation). geometry.csv's rows are kept in
memory and written (:class:`training.engine.rundir.CsvLog`) at every epoch end and checkpoint; a resumed run
drops the rows after its checkpoint and takes the last snapshot from it (:meth:`GeometryLog.state_dict`), so it
ends with the very file of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from clop import metrics as clop_metrics
from clop.metrics import default_rtol
from training.data.augment import eval_transform
from training.data.catalog import DATASET_INFO, DatasetNotFoundError, check_classes
from training.data.datasets import load_dataset
from training.engine.model import ContrastiveModel
from training.engine.rundir import CsvLog
from training.eval.geometry import (
    GEOMETRY_KEYS,
    TABLE_KEYS,
    class_geometry,
    eta_table,
    unit_class_means,
)

if TYPE_CHECKING:  # pragma: no cover
    from training.config import PretrainConfig

__all__ = [
    "COLLAPSE_MEAN_NORM", "GEOM_COLUMNS", "GEOMETRY_COLUMNS", "GEOMETRY_INT_COLUMNS", "GeometryLog", "HeldOut",
    "collapse_row", "embed", "embedding_eps", "eval_batch_images", "geometry_columns", "load_test_split",
    "load_heldout", "stratified_subset",
]

COLLAPSE_MEAN_NORM = 0.999
"""Complete collapse: the unit-normalised embeddings of the evaluation batch have a mean of norm
>= this, i.e. they all point the same way to within a few degrees (the simulations' criterion, with
1e-6 loosened to 1e-3 for a network). A freshly initialised ResNet-50 with its projection head already
sits near 0.98 (its outputs share a large common component), so a looser threshold would flag every
run in its first epochs."""
GEOM_COLUMNS = tuple(f"geom_{k}" for k in GEOMETRY_KEYS)
"""The class-geometry columns of metrics.csv and of training.linear_eval's results, in this order."""
GEOMETRY_COLUMNS = ("epoch", "step", "lr", *TABLE_KEYS)
"""The columns of RUN/geometry.csv, in this order."""
GEOMETRY_INT_COLUMNS = ("epoch", "step", "interval", "steps")
"""The columns of RUN/geometry.csv written as integers."""


# --------------------------------------------------------------------------------------------------
# the fixed training batch: collapse metrics


def eval_batch_images(cfg: PretrainConfig, train: torch.utils.data.Dataset) -> torch.Tensor:
    """The fixed evaluation batch: (eval_batch, 3, S, S), un-augmented training images chosen with the seed.

    ``train``: the training split as (PIL image, label) items (``load_dataset`` without a transform).
    """
    info = DATASET_INFO[cfg.dataset]
    transform = eval_transform(cfg.image_size, info.mean, info.std)
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
    """(h, z) of the images x: (N, 3, S, S) in eval mode, in chunks; float32 on the CPU (the network runs
    under bf16 autocast on CUDA: see :func:`embedding_eps`). The model's train/eval mode is restored."""
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


def embedding_eps(model: torch.nn.Module, device: torch.device) -> float:
    """Machine epsilon of the embeddings :func:`embed` computes: bf16's on CUDA (autocast), else that of the
    model's parameters (float32, or float64 for a float64 model)."""
    if device.type == "cuda":
        return torch.finfo(torch.bfloat16).eps
    return torch.finfo(next(model.parameters()).dtype).eps


# --------------------------------------------------------------------------------------------------
# held-out labeled embeddings: class geometry


def stratified_subset(targets: Any, m: int, seed: int) -> np.ndarray:
    """Sorted int64 indices of at most ``m`` of the N labels ``targets``, class-stratified.

    All N when N <= m. Otherwise exactly m: class c (n_c items) gets floor(m n_c / N) or one more (the
    largest remainders, ties to the lower label), and at least one while m >= the number of classes (taken
    from the classes with the most); the items of each class are drawn without replacement by
    ``np.random.default_rng(seed)``, classes in increasing label order.
    """
    labels = np.asarray(targets)
    n = labels.size
    if n <= m:
        return np.arange(n, dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    quota = m * counts / n
    take = np.floor(quota).astype(np.int64)
    order = np.lexsort((classes, -(quota - take)))  # largest remainder first, then the lower label
    take[order[: m - int(take.sum())]] += 1
    if m >= classes.size:
        for c in np.flatnonzero(take == 0):
            take[int(np.argmax(take))] -= 1
            take[c] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=int(t), replace=False) for c, t in zip(classes, take) if t]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


@dataclasses.dataclass
class HeldOut:
    """Held-out labeled images: ``x`` (N, 3, S, S) eval-transformed, ``y`` (N,) int64 labels in 0..k-1,
    ``indices`` their positions in the test split."""

    x: torch.Tensor
    y: torch.Tensor
    k: int
    indices: np.ndarray


def load_test_split(cfg: PretrainConfig) -> torch.utils.data.Dataset:
    """The test split of a resolved config's dataset (images untransformed), its class count checked
    (:func:`training.data.catalog.check_classes`). A missing test split raises
    :class:`training.data.catalog.DatasetNotFoundError` saying that ``--geometry-images 0`` trains without it."""
    try:
        test = load_dataset(cfg.dataset, cfg.data_root, "test")
    except DatasetNotFoundError as exc:
        raise DatasetNotFoundError(
            f"{exc} (the class geometry of the held-out images needs the test split; pass --geometry-images 0 "
            "to train without it)") from None
    check_classes(cfg.dataset, test, cfg.data_root)
    return test


def load_heldout(cfg: PretrainConfig, test: torch.utils.data.Dataset | None = None) -> HeldOut:
    """The held-out images of a resolved config: at most ``cfg.geometry_images`` of the test split ``test``
    (default: :func:`load_test_split`; see the module docstring), chosen by :func:`stratified_subset` with
    ``cfg.seed``."""
    info = DATASET_INFO[cfg.dataset]
    test = load_test_split(cfg) if test is None else test
    idx = stratified_subset(test.targets, cfg.geometry_images, cfg.seed)
    transform = eval_transform(cfg.image_size, info.mean, info.std)
    x = torch.stack([transform(test[int(i)][0]) for i in idx])
    y = torch.as_tensor(np.asarray(test.targets)[idx], dtype=torch.long)
    return HeldOut(x, y, info.num_classes, idx)


def geometry_columns(
    z: torch.Tensor, y: torch.Tensor, k: int, prototypes: torch.Tensor | None, eps: float
) -> dict[str, float]:
    """``geom_<key>`` of :func:`training.eval.geometry.class_geometry` of z: (N, D), y: (N,) with k classes, with
    ``rtol = default_rtol(N, D, eps)``, eps that of the embeddings' computation (:func:`embedding_eps`)."""
    rtol = default_rtol(z.shape[0], z.shape[1], eps)
    out = class_geometry(z, y, k=k, prototypes=prototypes, rtol=rtol)
    return {f"geom_{key}": out[key] for key in GEOMETRY_KEYS}


class GeometryLog:
    """The class geometry of the held-out images over a run: metrics.csv's ``geom_`` columns and RUN/geometry.csv.

    ``path``: RUN/geometry.csv; ``heldout``: :func:`load_heldout`; ``prototypes``: the CLOP prototypes
    (k, D) or None; ``eps``: :func:`embedding_eps`; ``images``: the ``--geometry-images`` setting (recorded in
    :meth:`state_dict`, so that a resumed run can refuse a different one). Call :meth:`start` (fresh run) or
    :meth:`load_state_dict` (resumed run) first, then :meth:`log` at every logged step, :meth:`columns` at
    epoch ends and :meth:`flush` before every checkpoint.
    """

    def __init__(self, path: Path, heldout: HeldOut, prototypes: torch.Tensor | None, eps: float, images: int) -> None:
        self.path, self.heldout, self.eps, self.images = Path(path), heldout, eps, images
        self.csv = CsvLog(self.path, "step", GEOMETRY_COLUMNS, GEOMETRY_INT_COLUMNS)
        self.prototypes = None if prototypes is None else prototypes.detach().cpu()
        self.means: torch.Tensor | None = None  # the last snapshot of the unit class means, (k, D) float64
        self.epoch = self.step = self.interval = 0
        self.pending: list[dict] = []
        self._z: tuple[int, torch.Tensor] | None = None  # the embeddings of the held-out images at a step

    def embeddings(self, model: ContrastiveModel, device: torch.device, step: int) -> torch.Tensor:
        """z: (N, D) of the held-out images with ``model`` at global step ``step`` (computed once per step)."""
        if self._z is None or self._z[0] != step:
            self._z = (step, embed(model, self.heldout.x, device)[1])
        return self._z[1]

    def _rtol(self, z: torch.Tensor) -> float:
        return default_rtol(z.shape[0], z.shape[1], self.eps)

    def _means(self, z: torch.Tensor) -> torch.Tensor:
        return unit_class_means(z, self.heldout.y, k=self.heldout.k, rtol=self._rtol(z))

    def columns(self, model: ContrastiveModel, device: torch.device, step: int) -> dict[str, float]:
        """metrics.csv's ``geom_`` columns at global step ``step``."""
        z = self.embeddings(model, device, step)
        return geometry_columns(z, self.heldout.y, self.heldout.k, self.prototypes, self.eps)

    def start(self, model: ContrastiveModel, device: torch.device, epoch: int, step: int, interval: int = 0) -> None:
        """The first snapshot (a fresh run: epoch 0, step 0); no row."""
        self.means = self._means(self.embeddings(model, device, step))
        self.epoch, self.step, self.interval = epoch, step, interval

    def log(self, model: ContrastiveModel, device: torch.device, epoch: int, step: int, lr: float) -> dict:
        """A snapshot at global step ``step`` (in ``epoch``, whose update used learning rate ``lr``): the row of
        the interval since the last snapshot, kept for the next :meth:`flush`; returns it."""
        z = self.embeddings(model, device, step)
        means = self._means(z)
        # on CUDA the fit runs there: eta_step repeats `steps` Appendix D steps on (k, D) per Gauss-Newton
        # iteration, which is slow on a CPU for ImageNet's k = 1000 (docs/training.md)
        snaps = [self.means, means] if device.type != "cuda" else [self.means.to(device), means.to(device)]
        fit = eta_table(snaps, steps=[step - self.step], rtol=self._rtol(z))[0]
        row = {"epoch": epoch, "step": step, "lr": lr, **fit, "interval": self.interval}
        self.pending.append(row)
        self.means, self.epoch, self.step, self.interval = means, epoch, step, self.interval + 1
        return row

    def flush(self) -> None:
        """Write the pending rows: RUN/geometry.csv rewritten atomically (created with its header if missing)."""
        self.csv.append(self.pending)
        self.pending = []

    def state_dict(self) -> dict:
        """What a checkpoint keeps: the last snapshot, its epoch and step, the next interval's index, the setting."""
        return {"images": self.images, "means": self.means, "epoch": self.epoch, "step": self.step,
                "interval": self.interval}

    def load_state_dict(self, state: dict) -> None:
        self.means, self.epoch = state["means"], state["epoch"]
        self.step, self.interval = state["step"], state["interval"]
