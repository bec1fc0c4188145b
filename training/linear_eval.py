"""Linear probe of a pre-trained run: top-1 / top-5 of a linear classifier on frozen features.

    python -m training.linear_eval --run RUN_DIR [--all-labels] [--results CSV]

The CLOP paper (Sec. 5) reports "top-1 and top-5 classification accuracy using the supervised linear
classifier", trained on the labeled fraction of the run (10 % in the semi-supervised setting; all
labels for SupCon). Here the encoder is frozen and its 2048-d features h of the un-augmented images
are computed once; a linear classifier on standardised features is trained with SGD
(:func:`training.probe.fit_linear_probe`) and scored on the test split (CIFAR-100's test set, the val
split of Tiny-ImageNet and ImageNet). Training the probe on fixed features rather than on augmented
crops as in SimCLR's linear evaluation (Chen et al. 2020a, B.5) is our choice: it is far cheaper and is
the usual protocol for comparing representations.

The result is printed first, then written to ``RUN_DIR/linear_eval.json``, then one row is appended to
the results CSV (default ``RUN_DIR/../results.csv``) with every setting of the run and of the probe and
``top1, top5, stable_rank, entropy_rank``: the collapse metrics of the test-set embeddings z (the space
where the losses act), beside ``feature_stable_rank, feature_entropy_rank`` of the features h, then
``geom_<key>`` for every :data:`training.geometry.GEOMETRY_KEYS` key: the class geometry
(:func:`training.geometry.class_geometry`) of the embeddings z of ALL the test images (not the
``--geometry-images`` subset of the run's metrics.csv; for digits, whose 359 test images are all in it, the
two agree), with the run's CLOP prototypes when it used CLOP (``geom_class_proto_cos`` is empty otherwise)
and the round-off cut of the embeddings' precision (bf16 on CUDA, :func:`training.evaluate.embedding_eps`)
(:data:`RESULT_COLUMNS`, in that order).

Before any compute, ``--results`` is checked: its folder must be writable, and an existing file must be a
CSV with exactly these columns (any other CSV is refused, never rewritten). The row is appended as one more
line, so the existing rows stay byte for byte as they were; the file is replaced atomically, under a short
lock (``.results.csv.lock``) against concurrent probes. While the probe runs, the run directory is locked
as training.pretrain locks it (:mod:`training.rundir`). A ``checkpoint.pt`` that does not load is named in
the error; ``checkpoint.prev.pt`` stands in for it only if it holds the finished run.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from clop import metrics as clop_metrics
from clop.util.checks import check_positive, check_size
from clop.util.cli import HelpFormatter, check_device
from clop.util.io import atomic_path, atomic_write_text, check_output_dir, check_output_file

from training import data as tdata
from training import rundir
from training.evaluate import GEOM_COLUMNS, embed, embedding_eps, geometry_columns
from training.pretrain import (
    CHECKPOINT, CONFIG, LABELED, PROBE_RESULT, PretrainConfig, build_model, build_objective,
    default_workers,
)
from training.probe import fit_linear_probe, topk_accuracy

RESULT = PROBE_RESULT
RUN_SETTINGS = tuple(
    f.name for f in dataclasses.fields(PretrainConfig)
    if f.name not in ("out", "overwrite", "device", "workers", "loader", "geometry_images", "geometry_every")
)
"""The settings of the pre-training run that go into a results row (not those of its logging: the
probe's class geometry uses every test image; nor how its views were loaded: the same views for digits,
the same distributions for SimCLR, and the run's name and config.json record the loader)."""
RESULT_COLUMNS = (
    "run", *RUN_SETTINGS, "trained_epochs", "probe_labels", "probe_train_images", "test_images", "probe_epochs",
    "probe_lr", "probe_weight_decay", "probe_seed", "top1", "top5", "stable_rank", "entropy_rank",
    "feature_stable_rank", "feature_entropy_rank", *GEOM_COLUMNS,
)
"""The columns of a results CSV, in the order they are written."""


@dataclasses.dataclass
class ProbeConfig:
    """Settings of the linear probe (SGD on standardised frozen features)."""

    run: str
    results: str | None = None
    all_labels: bool = False
    allow_partial: bool = False
    epochs: int = 100
    lr: float = 0.1
    weight_decay: float = 0.0
    batch_size: int = 256
    data_root: str | None = None
    workers: int | None = None
    seed: int = 0
    device: str | None = None

    def resolved(self) -> ProbeConfig:
        c = dataclasses.replace(self)
        check_size("epochs", c.epochs)
        check_positive("lr", c.lr)
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


def check_results(path: str | Path) -> list[str]:
    """Before any compute: ``--results`` can take a row. Returns the column order to write in.

    ``path``'s folder must be writable (it is created if missing); an existing ``path`` must be a CSV whose
    header holds exactly :data:`RESULT_COLUMNS` (in any order). ValueError naming --results otherwise.
    """
    path = check_output_file(path, "--results")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"--results {str(path)!r} is read-only; make it writable or give another --results")
    if not path.exists() or path.stat().st_size == 0:
        return list(RESULT_COLUMNS)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"--results {str(path)!r} cannot be read as a CSV: {exc}") from None
    unexpected = [c for c in header if c not in RESULT_COLUMNS]
    missing = [c for c in RESULT_COLUMNS if c not in header]
    if unexpected or missing or len(set(header)) != len(header):
        raise ValueError(
            f"--results {str(path)!r} is a CSV with other columns than training.linear_eval writes (unexpected: "
            f"{_some(unexpected)}; missing: {_some(missing)}"
            f"{'; repeated columns' if len(set(header)) != len(header) else ''}); it is left as it is: give another "
            "--results"
        )
    return header


def _some(names: list[str], n: int = 6) -> str:
    return str(names) if len(names) <= n else f"{names[:n]} and {len(names) - n} more"


def _csv_line(values: Sequence[object]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(["" if v is None else v for v in values])
    return buf.getvalue()


def append_result(path: str | Path, row: dict) -> None:
    """Append ``row`` to the results CSV ``path`` as one more line (a header first for a new file).

    The existing lines are copied unchanged; the file is replaced atomically, under a lock beside it that
    concurrent probes wait for. ValueError (see :func:`check_results`) if ``path`` is not a results CSV.
    """
    path = Path(path)
    with rundir.RunLock.acquire(path.parent, "training.linear_eval", "--results", wait_s=120.0,
                                name=f".{path.name}.lock"):
        columns = check_results(path)
        old = path.read_bytes() if path.exists() else b""
        if old and not old.endswith(b"\n"):
            old += b"\n"
        head = b"" if old else _csv_line(columns).encode()
        with atomic_path(path) as tmp:
            tmp.write_bytes(old + head + _csv_line([row[c] for c in columns]).encode())


def load_config(run: str | Path) -> PretrainConfig:
    """The settings of the run in ``run`` (RUN/config.json); FileNotFoundError / ValueError naming --run."""
    run = Path(run)
    if not run.is_dir():
        raise FileNotFoundError(f"--run {str(run)!r} is not a folder; give a run directory written by training.pretrain")
    try:
        saved = json.loads((run / CONFIG).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"run={str(run)!r} has no {CONFIG}; is it a directory written by training.pretrain?") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"--run {str(run)!r}: {CONFIG} cannot be read ({exc}); is it a directory written by "
                         "training.pretrain?") from None
    fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    unknown = sorted(set(saved) - fields) if isinstance(saved, dict) else []
    if not isinstance(saved, dict) or unknown:
        raise ValueError(f"--run {str(run)!r}: {CONFIG} is not a training.pretrain config"
                         f"{f' (unknown settings {unknown})' if unknown else ''}")
    return PretrainConfig(**saved)


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
    :class:`training.rundir.CheckpointError` naming it, unless checkpoint.prev.pt holds the finished run
    (or, with ``allow_partial``, any finished epoch), which is then used, saying so on stderr.
    """
    run = Path(run)
    cfg = load_config(run)
    if not (run / CHECKPOINT).exists() and not (run / rundir.PREV_CHECKPOINT).exists():
        raise FileNotFoundError(f"run={str(run)!r} has no {CHECKPOINT}; is it a directory written by training.pretrain?")
    finished = lambda c: allow_partial or (c["epoch"], c["step_in_epoch"]) == (cfg.epochs, 0)  # noqa: E731
    ckpt, note = rundir.load_finished(run, finished)
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
    model = build_model(cfg)
    model.load_state_dict(ckpt["model"])
    if not with_prototypes:
        return cfg, model.to(device).eval(), epochs
    objective = build_objective(cfg, torch.device("cpu"))  # the prototypes are its buffer: read them back
    objective.load_state_dict(ckpt["objective"])
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
    with rundir.RunLock.acquire(run, "training.linear_eval", "--run"):
        row = _probe(cfg, run, device, progress)
        print(f"top-1 {row['top1']:.4f}  top-5 {row['top5']:.4f}  ({run}, {row['trained_epochs']} epochs, "
              f"probe on {row['probe_train_images']} labels, {row['test_images']} test images)", flush=True)
        try:
            atomic_write_text(run / RESULT, json.dumps(_json_safe(row), indent=2, allow_nan=False) + "\n")
        except OSError as exc:
            raise ResultNotSavedError(f"the result above could not be written to {run / RESULT}: {exc}") from None
        try:
            append_result(cfg.results, row)
        except (OSError, ValueError, rundir.RunLockedError) as exc:
            raise ResultNotSavedError(f"the result is saved in {run / RESULT} but could not be appended to --results "
                                      f"{cfg.results!r}: {exc}") from None
    return row


class ResultNotSavedError(RuntimeError):
    """The probe finished (its result was printed) but a file could not be written."""


def _probe(cfg: ProbeConfig, run: Path, device: torch.device, progress: bool) -> dict:
    pcfg, model, trained, prototypes = load_run(run, device, allow_partial=cfg.allow_partial, with_prototypes=True)
    info = tdata.DATASET_INFO[pcfg.dataset]
    root = cfg.data_root or pcfg.data_root
    tf = tdata.eval_transform(pcfg.image_size, info.mean, info.std)
    train = tdata.load_dataset(pcfg.dataset, root, "train", tf)
    test = tdata.load_dataset(pcfg.dataset, root, "test", tf)
    if cfg.all_labels:
        idx = np.arange(len(train.targets))
    else:
        try:
            idx = np.load(run / LABELED)
        except (OSError, ValueError) as exc:
            raise ValueError(f"--run {str(run)!r}: {LABELED} cannot be read ({exc}); pass --all-labels to probe with "
                             "every label, or resume the run to write it again") from None
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


def build_parser() -> argparse.ArgumentParser:
    d = ProbeConfig(run="")
    p = argparse.ArgumentParser(
        prog="python -m training.linear_eval",
        description="Top-1/top-5 of a linear classifier on the frozen features of a pre-trained run (CLOP paper Sec. 5).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--run", required=True, help="run directory written by training.pretrain")
    p.add_argument("--results", default=None, help="results CSV to append to (default: RUN/../results.csv)")
    p.add_argument("--all-labels", action="store_true", help="train the probe on every training label, not the run's labeled fraction")
    p.add_argument("--allow-partial", action="store_true", help="probe an unfinished run (its last finished epoch)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="probe epochs")
    p.add_argument("--lr", type=float, default=d.lr, help="probe SGD learning rate (cosine decay)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="probe weight decay")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="batch of the feature pass and of the probe")
    p.add_argument("--data-root", default=None, help="dataset folder (default: the run's)")
    p.add_argument("--workers", type=int, default=None, help="data-loading processes (default: min(8, CPUs))")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the probe's shuffling (its weights start at zero)")
    p.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: CUDA when present)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    values = {k: v for k, v in vars(args).items() if k != "no_progress"}
    cfg = ProbeConfig(**values)
    try:
        linear_eval(cfg, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, rundir.RunLockedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ResultNotSavedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"saved in {Path(cfg.run) / RESULT}; appended to {cfg.resolved().results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
