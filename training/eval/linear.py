"""Linear probe of a pre-trained run: top-1 / top-5 of a linear classifier on frozen features, as a results row.

The CLOP paper (arXiv 2403.18699, Sec. 5) reports "top-1 and top-5 classification accuracy using the supervised
linear classifier", trained on the labeled fraction of the run (10 % in the semi-supervised setting; all labels
for SupCon). Here the encoder is frozen and its features h of the un-augmented images are computed once; a
linear classifier on standardised features is trained with SGD (:func:`training.eval.probe.fit_linear_probe`)
and scored on the test split (CIFAR-100's test set, the val split of Tiny-ImageNet and ImageNet). Training the
probe on fixed features rather than on augmented crops as in SimCLR's linear evaluation (Chen et al. 2020a,
B.5) is our choice: it is far cheaper and is the usual protocol for comparing representations.

:func:`linear_eval` prints the result first, then writes it to ``RUN/linear_eval.json``, then appends one row
(:data:`training.eval.results.RESULT_COLUMNS`) to the results CSV (default ``RUN/../results.csv``): every setting
of the run and of the probe, ``top1, top5, stable_rank, entropy_rank`` (the collapse metrics of the test-set
embeddings z, the space where the losses act), ``feature_stable_rank, feature_entropy_rank`` of the features
h, then ``geom_<key>``: the class geometry (:func:`training.eval.geometry.class_geometry`) of the embeddings z
of ALL the test images, with the run's CLOP prototypes when it used CLOP and the round-off cut of the
embeddings' precision (:func:`training.eval.evaluate.embedding_eps`). While the probe runs, the run directory
is locked as the pre-training locks it. A ``checkpoint.pt`` that does not load is named in the error;
``checkpoint.prev.pt`` stands in for it only if it holds the finished run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from clop import metrics as clop_metrics
from clop.util.cli import check_device
from clop.util.io import atomic_write_text, check_output_dir
from clop.util.lock import FolderLock, FolderLockedError
from training.config import RUN_SETTINGS, PretrainConfig, ProbeConfig, changed_settings
from training.data.augment import eval_transform
from training.data.catalog import DATASET_INFO, check_classes
from training.data.datasets import load_dataset
from training.engine.build import build_model, build_objective
from training.engine.resume import read_config
from training.engine.rundir import (
    CHECKPOINT,
    CONFIG,
    LABELED,
    PREV_CHECKPOINT,
    PROBE_RESULT,
    CheckpointError,
    load_checkpoint,
    load_state,
    remove_stale_files,
)
from training.eval.evaluate import embed, embedding_eps, geometry_columns
from training.eval.probe import fit_linear_probe, topk_accuracy
from training.eval.results import RESULT_COLUMNS, append_result, check_results

__all__ = ["ResultNotSavedError", "load_config", "load_run", "linear_eval"]


def load_config(run: str | Path) -> PretrainConfig:
    """The settings of the run in ``run`` (RUN/config.json); FileNotFoundError / ValueError naming --run."""
    run = Path(run)
    if not run.is_dir():
        raise FileNotFoundError(f"--run {str(run)!r} is not a folder; give a run directory written by training.pretrain")
    return read_config(run, "--run")


def _json_safe(row: dict) -> dict:
    """``row`` with NaN and infinite floats as None (null), so that strict JSON readers accept the file."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def load_run(
    run: str | Path, device: torch.device, *, allow_partial: bool = False, with_prototypes: bool = False
) -> tuple:
    """The config, the trained network and the epochs it was trained for, from a run's last checkpoint;
    with ``with_prototypes`` also the run's CLOP prototypes (k, D) on the CPU, None for a run without CLOP.

    An unfinished run is refused unless ``allow_partial`` (its results would otherwise carry the
    configured epochs, not the trained ones). A checkpoint.pt that does not load raises
    :class:`training.engine.rundir.CheckpointError` naming it, unless checkpoint.prev.pt holds the finished run
    (or, with ``allow_partial``, any finished epoch), which is then used, saying so on stderr.
    """
    run = Path(run)
    cfg = load_config(run)
    if not (run / CHECKPOINT).exists() and not (run / PREV_CHECKPOINT).exists():
        raise FileNotFoundError(f"run={str(run)!r} has no {CHECKPOINT}; is it a directory written by training.pretrain?")
    finished = lambda c: allow_partial or (c["epoch"], c["step_in_epoch"]) == (cfg.epochs, 0)  # noqa: E731
    ckpt, note = load_checkpoint(run, "probe", finished)
    if note:
        print(f"note: {note}", file=sys.stderr)
    epochs, step = ckpt.get("epoch", 0), ckpt.get("step_in_epoch", 0)
    if epochs < 1:
        raise ValueError(f"run={str(run)!r}: its checkpoint holds no finished epoch")
    if (epochs, step) != (cfg.epochs, 0) and not allow_partial:
        raise ValueError(
            f"run={str(run)!r} is not finished ({epochs} of {cfg.epochs} epochs"
            f"{f' and {step} steps' if step else ''}); resume it with `python -m training.pretrain ... --resume`, "
            "or pass --allow-partial to probe its last finished epoch"
        )
    source = run / (PREV_CHECKPOINT if note else CHECKPOINT)
    other = changed_settings(ckpt["config"], {k: v for k, v in dataclasses.asdict(cfg).items() if k in ckpt["config"]})
    if other:
        raise CheckpointError(f"checkpoint {source} was written by a run with other settings than its {CONFIG} "
                              f"({', '.join(sorted(other)[:4])}); it belongs to another run")
    model = build_model(cfg)
    load_state(model, ckpt["model"], source, "network")
    if not with_prototypes:
        return cfg, model.to(device).eval(), epochs
    objective = build_objective(cfg, torch.device("cpu"))  # the prototypes are its buffer: read them back
    load_state(objective, ckpt["objective"], source, "objective (the CLOP prototypes)")
    prototypes = None if objective.clop is None else objective.clop.prototypes
    return cfg, model.to(device).eval(), epochs, prototypes


def _features(model, dataset, device, batch, workers) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, z) of a dataset, batch by batch: the images never all sit in memory at once."""
    loader = DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=workers, pin_memory=device.type == "cuda")
    hs, zs = [], []
    for x, _ in loader:
        h, z = embed(model, x, device, batch=batch)
        hs.append(h)
        zs.append(z)
    return torch.cat(hs), torch.cat(zs)


def linear_eval(cfg: ProbeConfig, *, progress: bool = True) -> dict:
    """Probe a run; returns the results row.

    Settings, the run and ``--results`` are checked before any compute. The result is printed (stdout)
    as soon as it is known, then written to RUN/linear_eval.json, then appended to ``cfg.results``.
    """
    cfg = cfg.resolved()
    device = check_device(cfg.device)
    run = Path(cfg.run)
    load_config(run)
    check_results(cfg.results)
    check_output_dir(run, "--run")
    with FolderLock.acquire(run, "training.linear_eval", "--run"):
        remove_stale_files(run)  # what a killed probe or run left
        row = _probe(cfg, run, device, progress)
        print(f"top-1 {row['top1']:.4f}  top-5 {row['top5']:.4f}  ({run}, {row['trained_epochs']} epochs, "
              f"probe on {row['probe_train_images']} labels, {row['test_images']} test images)", flush=True)
        try:
            atomic_write_text(run / PROBE_RESULT, json.dumps(_json_safe(row), indent=2, allow_nan=False) + "\n")
        except OSError as exc:
            raise ResultNotSavedError(f"the result above could not be written to {run / PROBE_RESULT}: {exc}") from None
        try:
            append_result(cfg.results, row)
        except (OSError, ValueError, FolderLockedError) as exc:
            raise ResultNotSavedError(f"the result is saved in {run / PROBE_RESULT} but could not be appended to --results "
                                      f"{cfg.results!r}: {exc}") from None
    return row


class ResultNotSavedError(RuntimeError):
    """The probe finished (its result was printed) but a file could not be written."""


def _labeled_indices(run: Path, n: int) -> np.ndarray:
    """RUN/labeled_indices.npy: distinct integer indices into the ``n`` training images; ValueError naming the
    file otherwise (read without pickles)."""
    remedy = "pass --all-labels to probe with every label, or resume the run to write it again"
    try:
        idx = np.load(run / LABELED, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--run {str(run)!r}: {LABELED} cannot be read ({exc}); {remedy}") from None
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"--run {str(run)!r}: {LABELED} is not a list of image indices ({idx.dtype}, shape "
                         f"{idx.shape}); {remedy}")
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size or np.unique(idx).size != idx.size:
        what = f"indices outside 0..{n - 1} (e.g. {int(bad[0])})" if bad.size else "repeated indices"
        raise ValueError(f"--run {str(run)!r}: {LABELED} holds {what} of the {n} training images: it belongs to "
                         f"another dataset or was damaged; {remedy}")
    return idx


def _probe(cfg: ProbeConfig, run: Path, device: torch.device, progress: bool) -> dict:
    pcfg, model, trained, prototypes = load_run(run, device, allow_partial=cfg.allow_partial, with_prototypes=True)
    info = DATASET_INFO[pcfg.dataset]
    root = cfg.data_root or pcfg.data_root
    tf = eval_transform(pcfg.image_size, info.mean, info.std)
    train = load_dataset(pcfg.dataset, root, "train", tf)
    test = load_dataset(pcfg.dataset, root, "test", tf)
    for split in (train, test):
        check_classes(pcfg.dataset, split, root)
    idx = np.arange(len(train.targets)) if cfg.all_labels else _labeled_indices(run, len(train.targets))
    y_train = torch.as_tensor(np.asarray(train.targets)[idx], dtype=torch.long)
    y_test = torch.as_tensor(test.targets, dtype=torch.long)

    h_train, _ = _features(model, Subset(train, idx.tolist()), device, cfg.batch_size, cfg.workers)
    h_test, z_test = _features(model, test, device, cfg.batch_size, cfg.workers)
    probe = fit_linear_probe(
        h_train, y_train, info.num_classes, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
        weight_decay=cfg.weight_decay, seed=cfg.seed, device=device, progress=progress,
    )
    with torch.no_grad():
        logits = probe(h_test.to(device)).float().cpu()
    acc = topk_accuracy(logits, y_test, ks=(1, 5))
    z_metrics = clop_metrics.collapse_metrics(z_test, top=0)
    geom = geometry_columns(z_test, y_test, info.num_classes, prototypes, embedding_eps(model, device))
    h_metrics = clop_metrics.collapse_metrics(h_test, top=0)
    settings = dataclasses.asdict(pcfg)
    row = {
        "run": str(run),
        **{k: settings[k] for k in RUN_SETTINGS},
        "trained_epochs": trained,
        "probe_labels": "all" if cfg.all_labels else "run",
        "probe_train_images": len(idx), "test_images": len(y_test),
        "probe_epochs": cfg.epochs, "probe_lr": cfg.lr, "probe_weight_decay": cfg.weight_decay, "probe_seed": cfg.seed,
        "top1": acc[1], "top5": acc[5],
        "stable_rank": z_metrics["stable_rank"], "entropy_rank": z_metrics["entropy_rank"],
        "feature_stable_rank": h_metrics["stable_rank"], "feature_entropy_rank": h_metrics["entropy_rank"],
        **geom,
    }
    assert tuple(row) == RESULT_COLUMNS
    return row
