"""What ``--out`` holds before a pre-training starts, and what a resumed run must keep.

:func:`run_state` reads the folder (and changes nothing): a new run, a run to resume from its checkpoint, or a
finished one; it refuses to resume with settings that change the numbers (:func:`training.config.changed_settings`),
with another loader where the two loaders give other views, or with another ``--geometry-images`` while the run
is unfinished. :func:`resumed_loader` gives ``--resume`` without ``--loader`` the run's own loader. Resuming is
exact: the views of image i in epoch e depend only on (seed, e, i) and the batch order of epoch e only on
(seed, e) (:class:`training.engine.steps.BatchOrder`), and the checkpoint holds every other state.

A folder is a run of ours only if its ``config.json`` parses as a config of training.pretrain
(:func:`read_config`): files of a run's names in any other folder are never deleted, ``--overwrite`` or not.
A resumed run must find the history its checkpoint continues: ``metrics.csv`` with a row for every epoch the
checkpoint holds, ``geometry.csv`` reaching the checkpoint's last class-mean snapshot (neither can be rebuilt
from the checkpoint; :func:`check_history`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from training.config import ADDED_SETTINGS, PretrainConfig, changed_settings
from training.data.catalog import DATASETS
from training.data.loader import LOADERS, SAME_VIEWS, check_loader
from training.engine.rundir import (
    CHECKPOINT,
    CONFIG,
    GEOMETRY,
    LAST_GOOD,
    LOG,
    METRICS,
    PREV_CHECKPOINT,
    RUN_FILES,
    CsvLog,
    load_checkpoint,
)

__all__ = ["CONFIG_KEYS", "read_config", "run_state", "check_history", "resumed_loader"]

CONFIG_KEYS = ("dataset", "loss", "arch", "epochs", "batch_size", "base_lr", "seed")
"""Settings that every config.json of training.pretrain holds, whatever version wrote it."""


def read_config(run: Path, flag: str = "--out") -> PretrainConfig:
    """The settings of the run in ``run`` (RUN/config.json, as written: not resolved). FileNotFoundError when
    there is none; ValueError naming ``flag`` when it is not a config of training.pretrain (not JSON, not an
    object, unknown settings, one of :data:`CONFIG_KEYS` missing, an unknown dataset)."""
    run = Path(run)
    try:
        saved = json.loads((run / CONFIG).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"run={str(run)!r} has no {CONFIG}; is it a directory written by training.pretrain?") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{flag} {str(run)!r}: {CONFIG} cannot be read ({exc}); is it a directory written by "
                         "training.pretrain?") from None
    fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    unknown = sorted(set(saved) - fields) if isinstance(saved, dict) else []
    lacking = [k for k in CONFIG_KEYS if k not in saved] if isinstance(saved, dict) else []
    if not isinstance(saved, dict) or unknown or lacking or saved["dataset"] not in DATASETS:
        why = (f" (unknown settings {unknown})" if unknown else f" (it lacks {lacking})" if lacking
               else f" (dataset {saved['dataset']!r})" if isinstance(saved, dict) else "")
        raise ValueError(f"{flag} {str(run)!r}: {CONFIG} is not a training.pretrain config{why}")
    for f in dataclasses.fields(PretrainConfig):
        value = saved.get(f.name)
        if f.name in saved and not _of_type(value, str(f.type)):
            raise ValueError(f"{flag} {str(run)!r}: {CONFIG} has {f.name}={value!r}, which is not a {f.type}; is it a "
                             "directory written by training.pretrain?")
    return PretrainConfig(**saved)


_SCALARS = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def _of_type(value: object, annotation: str) -> bool:
    """Whether a JSON value fits a setting's annotation (``int``, ``float | None``, ...; a bool is not a number)."""
    kind, _, optional = annotation.partition(" | ")
    if value is None:
        return optional == "None"
    if kind not in _SCALARS:
        return True  # not a scalar setting: left to the config's own checks
    return isinstance(value, _SCALARS[kind]) and (kind == "bool" or not isinstance(value, bool))


def _check_ours(run: Path, found: list[str]) -> None:
    """ValueError unless the run files ``found`` in ``run`` belong to a run of training.pretrain (its config.json
    parses as one); a symbolic link named train.log is refused too (the run appends to it)."""
    try:
        read_config(run, "--out")
    except (FileNotFoundError, ValueError) as exc:
        raise FileExistsError(
            f"out={str(run)!r} holds {', '.join(found)}, but not a run of training.pretrain ({exc}); nothing was "
            "deleted: choose another --out, or move these files away") from None
    if (run / LOG).is_symlink():
        raise ValueError(f"out={str(run)!r}: {LOG} is a symbolic link (to {str((run / LOG).readlink())!r}); a run "
                         "writes its log only inside its folder: remove the link")


def run_state(cfg: PretrainConfig) -> tuple[str, dict | None, str | None]:
    """What --out holds: ("new", None), ("resume", checkpoint) or ("finished", checkpoint), plus a note when
    the checkpoint is the previous one because the last does not load; reads, changes nothing.

    Raises FileExistsError for an existing run without --resume / --overwrite, ValueError when a run would be
    resumed with settings that change its numbers, and CheckpointError when no checkpoint of it loads.
    """
    run = Path(cfg.out)
    found = [f for f in RUN_FILES if (run / f).exists() or (run / f).is_symlink()]
    if found:
        _check_ours(run, found)
    if not found or cfg.overwrite or not any(f in found for f in (METRICS, CHECKPOINT, PREV_CHECKPOINT, LAST_GOOD)):
        return "new", None, None  # nothing trained yet (e.g. a start that failed on missing data): start afresh
    if not cfg.resume:
        raise FileExistsError(
            f"out={str(run)!r} already holds a run ({', '.join(found)}); pass --resume to continue it, "
            "--overwrite to start it again from scratch, or choose another --out"
        )
    ckpt, note = load_checkpoint(run, "resume")
    if ckpt is None:
        return "new", None, None  # killed before its first checkpoint: nothing to keep
    changed = sorted(changed_settings(ckpt["config"], dataclasses.asdict(cfg)))
    if changed:
        detail = ", ".join(changed)
        raise ValueError(f"resume: the run in {str(run)!r} was made with other settings ({detail}); "
                         "resume it with its own settings, or pass --overwrite")
    saved_loader = ckpt["config"].get("loader") or ADDED_SETTINGS["loader"]  # configs from before --loader
    if saved_loader != cfg.loader and cfg.augmentation not in SAME_VIEWS:
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
    if not finished:
        check_history(run, ckpt)
    return ("finished" if finished else "resume"), ckpt, note


def check_history(run: Path, ckpt: dict) -> None:
    """ValueError naming the file when the logs of ``run`` do not reach as far as the checkpoint ``ckpt`` it
    resumes from: ``metrics.csv`` must hold a row for each of its epochs 1..E, ``geometry.csv`` a row at its last
    class-mean snapshot (when that snapshot closed an interval). A file that is not such a log is named too."""
    epochs = ckpt["epoch"]
    have = {int(e) for e in CsvLog(run / METRICS, "epoch").keys()}
    lost = [e for e in range(1, epochs + 1) if e not in have]
    if lost:
        what = "is missing" if not (run / METRICS).exists() else f"lacks the rows of epochs {_span(lost)}"
        raise ValueError(f"resume: {run / METRICS} {what}, which the checkpoint (epoch {epochs}) continues and which "
                         "cannot be rebuilt from it; restore the file, or pass --overwrite to start the run again")
    geo = ckpt.get("geometry") or {}
    step = geo.get("step")
    if geo.get("interval", 0) > 0 and step is not None:  # a snapshot that closed an interval: its row is in the log
        steps = CsvLog(run / GEOMETRY, "step").keys()
        if not steps or max(steps) < step:
            what = "is missing" if not (run / GEOMETRY).exists() else f"ends before step {step}"
            raise ValueError(f"resume: {run / GEOMETRY} {what}, but the checkpoint's class geometry was logged up to "
                             f"step {step}; those rows cannot be rebuilt from it: restore the file, or pass "
                             "--overwrite to start the run again")


def _span(values: list[int]) -> str:
    return str(values[0]) if len(values) == 1 else f"{values[0]}..{values[-1]}" if len(values) > 3 else \
        ", ".join(map(str, values))


def resumed_loader(cfg: PretrainConfig) -> PretrainConfig:
    """``--resume`` without ``--loader``: ``cfg`` with the loader of the run in ``--out`` (its config.json; runs
    from before ``--loader`` used the DataLoader) where the two loaders give other views; else ``cfg``."""
    if cfg.augmentation in SAME_VIEWS:
        return cfg
    try:
        saved = json.loads((Path(cfg.out) / CONFIG).read_text())
    except (OSError, ValueError):
        return cfg
    loader = (saved.get("loader") or ADDED_SETTINGS["loader"]) if isinstance(saved, dict) else cfg.loader
    if loader == cfg.loader or loader not in LOADERS:
        return cfg
    return dataclasses.replace(cfg, loader=check_loader(loader, cfg.dataset, cfg.augmentation, cfg.image_size))
