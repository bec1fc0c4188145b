"""The ladder study: its parts, resumable through the CSVs they write, then the report and the figures.

Parts (:data:`PARTS`), in order: ``r1_theory``, ``r1_base``, ``r1_horizon``, ``r1_local``, ``r1_k``, ``r1_tau``,
``r1_batch`` (:mod:`simulations.rungs.study_free`), ``r2_map``, ``r2_train``
(:mod:`simulations.rungs.study_encoder`). Each part writes its CSVs into the output folder through
:func:`clop.util.io.staged_outputs` (all of a part's files appear together or not at all) and records the hash
of the settings it used in ``parts.json``; a relaunch with the same settings skips every part whose files
and hash are present, so an interrupted study resumes at the part it was in. ``fresh=True`` recomputes the selected parts (all, or
those in ``only``) and keeps the records of the others.
The report (:mod:`simulations.rungs.report`) and the figures (:mod:`simulations.rungs.figures`) are always
redrawn from the CSVs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import pandas as pd

from clop.util.io import atomic_write_text, staged_outputs
from simulations.rungs.settings import Settings, settings_hash
from simulations.rungs.study_encoder import mapping_part, train_part
from simulations.rungs.study_free import events_part, theory_part

__all__ = ["PARTS", "run_study", "part_files", "estimate_bytes"]

_R1 = ("seed", "k", "n", "d", "losses", "taus", "tau_losses", "batches", "batch_losses", "path_checkpoints",
       "minibatch_samples")
PARTS: dict[str, tuple[Callable, tuple[str, ...]]] = {
    "r1_theory": (theory_part, _R1),
    "r1_base": (lambda s, pr: events_part(s, "base", pr), _R1 + ("steps", "trials", "resolution")),
    "r1_horizon": (lambda s, pr: events_part(s, "horizon", pr),
                   _R1 + ("horizon_steps", "horizon_losses", "trials", "resolution")),
    "r1_local": (lambda s, pr: events_part(s, "local", pr),
                 _R1 + ("steps", "local_losses", "sweep_trials", "resolution", "path_checkpoints")),
    "r1_k": (lambda s, pr: events_part(s, "k", pr), ("seed", "ks", "k_losses", "steps", "sweep_trials", "resolution")),
    "r1_tau": (lambda s, pr: events_part(s, "tau", pr), _R1 + ("steps", "sweep_trials", "resolution")),
    "r1_batch": (lambda s, pr: events_part(s, "batch", pr), _R1 + ("steps", "sweep_trials", "resolution")),
    "r2_map": (mapping_part, ("seed", "r2_losses", "map_spectra", "map_steps", "sweep_trials", "resolution")),
    "r2_train": (train_part, ("seed", "r2_k", "r2_n", "r2_d", "r2_losses", "r2_models", "r2_optimisers",
                              "r2_steps", "trials", "resolution")),
}
"""part name -> (function(settings, progress) -> {file: DataFrame}, the settings fields it depends on)."""

_MANIFEST = "parts.json"


def part_files(out: Path, part: str) -> list[Path]:
    """The files a finished part left in ``out`` (from the manifest); [] if the part is not recorded."""
    manifest = _read_manifest(out)
    return [out / f for f in manifest.get(part, {}).get("files", [])]


def _read_manifest(out: Path) -> dict:
    path = out / _MANIFEST
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def estimate_bytes(s: Settings) -> int:
    """Peak memory of the study, estimated before any allocation: the largest batch of runs of a search
    (trials x grid points) times the state, history and autograd copies of one run, plus the largest Hessian."""
    from simulations.rungs.linearise import MAX_PARAMETERS
    from simulations.rungs.search import GRID

    views = max(2 * s.k * s.n * s.d, 2 * 20 * 2 * 21, 2 * s.r2_k * s.r2_n * max(s.r2_d, 64))
    k_views = max((2 * k * 2) * (k + 1) for k in s.ks) if s.ks else 0
    gram = max(2 * s.k * s.n, 4 * max(s.ks, default=3), 2 * s.r2_k * s.r2_n) ** 2
    per_run = 8 * (24 * max(views, k_views) + 8 * gram)
    runs = max(s.trials, s.sweep_trials) * (len(GRID) + 2)
    return runs * per_run + 8 * MAX_PARAMETERS**2 * 4


def run_study(s: Settings, out: Path, *, fresh: bool = False, only: tuple[str, ...] | None = None,
              progress: Callable[[str], None] = print) -> dict[str, float]:
    """Run every part that is not already done; returns the seconds each part took (0 for skipped ones)."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(out)
    times: dict[str, float] = {}
    for name, (fn, fields) in PARTS.items():
        if only and name not in only:
            continue
        h = settings_hash(s, fields)
        done = manifest.get(name, {})
        if not fresh and done.get("hash") == h and done.get("files") and all((out / f).exists() for f in done["files"]):
            progress(f"{name}: done before with these settings, skipped")
            times[name] = 0.0
            continue
        progress(f"{name}: running")
        start = time.perf_counter()
        frames: dict[str, pd.DataFrame] = fn(s, progress)
        with staged_outputs(out) as stage:
            for fname, df in frames.items():
                df.to_csv(stage(fname), index=False)
        times[name] = time.perf_counter() - start
        manifest[name] = {"hash": h, "files": sorted(frames), "seconds": round(times[name], 1)}
        atomic_write_text(out / _MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        progress(f"{name}: {times[name]:.1f} s")
    return times
