"""What ``--out`` holds before a pre-training starts, and what a resumed run must keep.

:func:`run_state` reads the folder (and changes nothing): a new run, a run to resume from its checkpoint, or a
finished one; it refuses to resume with settings that change the numbers (:func:`training.config.changed_settings`),
with another loader where the two loaders give other views, or with another ``--geometry-images`` while the run
is unfinished. :func:`resumed_loader` gives ``--resume`` without ``--loader`` the run's own loader. Resuming is
exact: the views of image i in epoch e depend only on (seed, e, i) and the batch order of epoch e only on
(seed, e) (:class:`training.engine.steps.BatchOrder`), and the checkpoint holds every other state.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from training.config import ADDED_SETTINGS, PretrainConfig, changed_settings
from training.data.loader import LOADERS, SAME_VIEWS, check_loader
from training.engine.rundir import (
    CHECKPOINT,
    CONFIG,
    LAST_GOOD,
    METRICS,
    PREV_CHECKPOINT,
    RUN_FILES,
    load_checkpoint,
)

__all__ = ["run_state", "resumed_loader"]


def run_state(cfg: PretrainConfig) -> tuple[str, dict | None, str | None]:
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
    return ("finished" if finished else "resume"), ckpt, note


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
