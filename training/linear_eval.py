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

The run gets ``RUN_DIR/linear_eval.json``, and one row is appended to the results CSV (default
``RUN_DIR/../results.csv``) with every setting of the run and of the probe and
``top1, top5, stable_rank, entropy_rank``: the collapse metrics of the test-set embeddings z (the space
where the losses act), beside ``feature_stable_rank, feature_entropy_rank`` of the features h.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from clop import metrics as clop_metrics
from clop._checks import check_positive, check_size
from clop._device import default_device

from training import data as tdata
from training.pretrain import (
    CHECKPOINT, CONFIG, LABELED, PROBE_RESULT, HelpFormatter, PretrainConfig, append_row, build_model, default_workers,
    embed,
)
from training.probe import fit_linear_probe, topk_accuracy

RESULT = PROBE_RESULT


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
        if not c.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0; got {c.weight_decay!r}")
        check_size("batch_size", c.batch_size)
        if c.workers is None:
            c.workers = default_workers()
        check_size("workers", c.workers, 0)
        if c.results is None:
            c.results = str(Path(c.run).resolve().parent / "results.csv")
        default_device(c.device)
        return c


def load_run(
    run: str | Path, device: torch.device, *, allow_partial: bool = False
) -> tuple[PretrainConfig, torch.nn.Module, int]:
    """The config, the trained network and the epochs it was trained for, from a run's last checkpoint.

    An unfinished run is refused unless ``allow_partial`` (its results would otherwise carry the
    configured epochs, not the trained ones).
    """
    run = Path(run)
    for f in (CONFIG, CHECKPOINT):
        if not (run / f).is_file():
            raise FileNotFoundError(f"run={str(run)!r} has no {f}; is it a directory written by training.pretrain?")
    cfg = PretrainConfig(**json.loads((run / CONFIG).read_text()))
    ckpt = torch.load(run / CHECKPOINT, map_location="cpu", weights_only=False)
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
    return cfg, model.to(device).eval(), epochs


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
    """Probe a run; returns the results row (also appended to ``cfg.results``)."""
    cfg = cfg.resolved()
    device = default_device(cfg.device)
    run = Path(cfg.run)
    pcfg, model, trained = load_run(run, device, allow_partial=cfg.allow_partial)
    info = tdata.DATASET_INFO[pcfg.dataset]
    root = cfg.data_root or pcfg.data_root
    tf = tdata.eval_transform(pcfg.image_size, info.mean, info.std)
    train = tdata.load_dataset(pcfg.dataset, root, "train", tf)
    test = tdata.load_dataset(pcfg.dataset, root, "test", tf)
    if cfg.all_labels:
        idx = np.arange(len(train.targets))
    else:
        idx = np.load(run / LABELED)
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
    h_metrics = clop_metrics.collapse_metrics(h_test, top=0)
    row = {
        "run": str(run),
        **{k: v for k, v in dataclasses.asdict(pcfg).items() if k not in ("out", "overwrite", "device", "workers")},
        "trained_epochs": trained,
        "probe_labels": "all" if cfg.all_labels else "run",
        "probe_train_images": len(idx), "test_images": len(y_test),
        "probe_epochs": cfg.epochs, "probe_lr": cfg.lr, "probe_weight_decay": cfg.weight_decay, "probe_seed": cfg.seed,
        "top1": acc[1], "top5": acc[5],
        "stable_rank": z_metrics["stable_rank"], "entropy_rank": z_metrics["entropy_rank"],
        "feature_stable_rank": h_metrics["stable_rank"], "feature_entropy_rank": h_metrics["entropy_rank"],
    }
    (run / RESULT).write_text(json.dumps(row, indent=2) + "\n")
    append_row(Path(cfg.results), row)
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
    try:
        row = linear_eval(ProbeConfig(**values), progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"top-1 {row['top1']:.4f}  top-5 {row['top5']:.4f}  ({args.run}; appended to {ProbeConfig(**values).resolved().results})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
