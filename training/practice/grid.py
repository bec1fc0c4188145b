"""The grid of the practice study: Section 5 of the CLOP paper (arXiv 2403.18699; Figs. 6, 7, Table 1) in
miniature, every point on ``--dataset digits --arch small``.

* learning rate (:attr:`Grid.lrs`: 0.01, 0.1, 0.3, 1, 3, 10, 30) x optimiser (LARS, SGD) x the six variants of
  Sec. 5 (:data:`training.sweeps.grid.COMPARISON`: InfoNCE with 10 % labels and SupCon with all labels, each
  without CLOP, with CLOP (lambda 1, orthonormal prototypes) and with CLOP on simplex-ETF prototypes), at batch
  256 (:attr:`Grid.lr_batch`);
* batch size (:attr:`Grid.batches`: 16 ... 512) at lr = 0.3 x batch / 256 (the paper's rule), the six
  variants, LARS;
* lambda (:attr:`Grid.lambdas`: 0.1, 0.5, 1, 1.5) for InfoNCE + CLOP and SupCon + CLOP (Table 1's ablation
  pair), LARS, batch 256, lr 0.3;
* the untrained-encoder reference: InfoNCE 10 % and SupCon 100 % at lr 1e-6 (:attr:`Grid.reference_lr`), LARS,
  batch 256: the weights stay at their initialisation while BatchNorm's running statistics are estimated from
  the data, so its probe is what the random encoder gives.

Points shared by two axes (batch 256 at lr 0.3 with LARS; lambda 1) are one run: 122 runs a seed.
**Learning rate** means the rate the optimiser uses, lr = base_lr x batch / 256 (Sec. 5): the peak of the
warm-up + cosine schedule. Every point is a :class:`training.sweeps.grid.Point`; its run goes to
``RUNS/e<epochs>/<variant>[-lam<lambda>]_<optimizer>_b<batch>_lr<lr used>_s<seed>``. The settings were chosen
to fit 90 minutes on a 2-core CPU with the default seeds (docs/practice.md); :func:`estimate_seconds` gives the
expected time from the measured cost of a point (:data:`EPOCH_CPU_S`).

**Seeds.** Every point runs ``--seeds`` (default :data:`SEEDS`, three: enough for the figures); the points that
carry a verdict (:func:`carries_verdict`: the untrained reference, the two baselines and their CLOP variants at
lr 0.3 and 10 with both optimisers, the same four on the batch axis from batch 32 (the paper's range; batch 16 is
drawn, not judged), the six variants at batch 32) also run seeds 0 .. ``verdict_seeds`` - 1 (default
:data:`VERDICT_SEEDS`, sixteen, chosen by the seed-block study). ``--seed-blocks`` measures how often verdicts move
between disjoint blocks of seeds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

from training.data.augment import default_policy
from training.practice.claims import BATCH_SMALL, LR_LARGE, LR_PAPER, PAIRS
from training.sweeps.grid import ABLATION, COMPARISON, VARIANTS, Point
from training.sweeps.launch import Launch, check_extra

__all__ = ["DATASET", "ARCH", "EPOCHS", "SEEDS", "VERDICT_SEEDS", "WORKERS", "AXES", "Grid", "STUDY", "EPOCH_CPU_S",
           "PROBE_CPU_S", "WORKER_START_S", "carries_verdict", "study_points", "make_launch", "estimate_seconds"]

DATASET = "digits"
ARCH = "small"
EPOCHS = 25
SEEDS = (0, 1, 2)
VERDICT_SEEDS = 16
"""Seeds 0 .. 15 at the points that carry a verdict: the seed-block study (``--seed-blocks 16``,
paper_figures/practice/seed_blocks.md) found that no block of 6, 8 or 12 seeds reproduces every verdict that 16
decide, so the verdicts rest on all 16 (docs/practice.md)."""
WORKERS = 0
AXES = ("lr", "batch", "lambda")


@dataclasses.dataclass(frozen=True)
class Grid:
    """The axes of the study (module docstring); :data:`STUDY` is the study's, a test may pass a smaller one."""

    lrs: tuple[float, ...] = (0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
    """Learning rates actually used (= base_lr at batch 256). 30 goes past the paper's 10 because SGD and LARS
    with BatchNorm may not collapse at 10."""
    optimizers: tuple[str, ...] = ("lars", "sgd")
    lr_batch: int = 256
    batches: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    batch_base_lr: float = 0.3
    """Sec. 5: lr = 0.3 x batch size / 256."""
    lambdas: tuple[float, ...] = (0.1, 0.5, 1.0, 1.5)
    """Table 1."""
    reference_lr: float = 1e-6
    reference_variants: tuple[str, ...] = ("infonce10", "supcon100")
    variants: tuple[str, ...] = COMPARISON
    """The variants of the lr and batch axes (the six of Sec. 5)."""
    ablation: tuple[str, ...] = ABLATION
    """The variants of the lambda axis."""


STUDY = Grid()

EPOCH_CPU_S = {16: 0.97, 32: 0.57, 64: 0.45, 128: 0.43, 256: 0.43, 512: 0.42}
"""Measured CPU seconds of an epoch by batch size (one torch thread on a 2-core CPU; docs/training.md)."""
PROBE_CPU_S = 0.7
WORKER_START_S = 5.0


def carries_verdict(point: Point) -> bool:
    """Whether a verdict of :mod:`training.practice.claims` reads this point (module docstring)."""
    s = point.settings
    if not point.in_paper:
        return True
    lam, lr = s["clop_lambda"], s["base_lr"] * s["batch_size"] / 256
    if lam != VARIANTS[point.variant].clop_lambda:
        return False
    main = point.variant in {v for pair in PAIRS for v in pair}
    if main and s["batch_size"] == 256 and any(math.isclose(lr, x, rel_tol=1e-9) for x in (LR_PAPER, LR_LARGE)):
        return True
    on_batch_axis = s["optimizer"] == "lars" and math.isclose(s["base_lr"], LR_PAPER, rel_tol=1e-9)
    judged = s["batch_size"] >= BATCH_SMALL  # the paper's range (claims.judged_batches); batch 16 is drawn only
    return on_batch_axis and judged and (main or s["batch_size"] == BATCH_SMALL)


def _lr_tag(lr: float) -> str:
    return format(lr, ".6g")


def study_points(only: Sequence[str] | None = None, seeds: Sequence[int] = SEEDS, epochs: int = EPOCHS,
                 runs: str | Path = "runs/practice", grid: Grid = STUDY, verdict_seeds: int = VERDICT_SEEDS
                 ) -> list[Point]:
    """The points of the study (one per run directory, shared points once), seed by seed: every point with
    ``seeds``, the points that carry a verdict (:func:`carries_verdict`) also with 0 .. ``verdict_seeds`` - 1.

    ``only``: some of :data:`AXES` (default all; the untrained reference comes with lr and batch). Runs go to
    ``runs/e<epochs>/<variant>[-lam<lambda>]_<optimizer>_b<batch>_lr<lr used>_s<seed>``.
    """
    only = list(AXES) if only is None else list(only)
    bad = [a for a in only if a not in AXES]
    if bad or not only:
        raise ValueError(f"only={only!r}: expected some of {list(AXES)}")
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds) or len(set(seeds)) < len(seeds):
        raise ValueError(f"seeds must be distinct integers >= 0, at least one; got {seeds!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1; got {epochs!r}")
    if isinstance(verdict_seeds, bool) or not isinstance(verdict_seeds, int) or verdict_seeds < 0:
        raise ValueError(f"verdict_seeds must be an integer >= 0; got {verdict_seeds!r}")
    specs: list[tuple[str, str, str, int, float, float | None, object]] = []  # axis, variant, opt, batch, base_lr, lam, value
    g = grid
    if "lr" in only:
        specs += [("lr", v, o, g.lr_batch, lr * 256 / g.lr_batch, None, lr) for lr in g.lrs for o in g.optimizers
                  for v in g.variants]
    if "batch" in only:
        specs += [("batch", v, "lars", b, g.batch_base_lr, None, b) for b in g.batches for v in g.variants]
    if "lambda" in only:
        specs += [("lambda", v, "lars", g.lr_batch, g.batch_base_lr, lam, lam) for lam in g.lambdas for v in g.ablation]
    if "lr" in only or "batch" in only:
        specs += [("reference", v, "lars", g.lr_batch, g.reference_lr, None, 0.0) for v in g.reference_variants]
    root = Path(runs) / f"e{epochs}"
    out: dict[Path, Point] = {}
    for seed in sorted(set(seeds) | set(range(verdict_seeds)), key=lambda x: (x not in seeds, x)):
        for axis, vname, opt, batch, base_lr, lam, value in specs:
            v = VARIANTS[vname]
            lam = v.clop_lambda if lam is None else lam
            lr = base_lr * batch / 256
            tag = "" if lam == v.clop_lambda else f"-lam{lam:g}"
            run = root / f"{vname}{tag}_{opt}_b{batch}_lr{_lr_tag(lr)}_s{seed}"
            if run in out:
                continue
            settings = {
                "dataset": DATASET, "loss": v.loss, "label_fraction": v.label_fraction, "clop_lambda": lam,
                "prototypes": v.prototypes, "similarity": "cosine", "augmentation": default_policy(DATASET),
                "batch_size": batch, "base_lr": base_lr, "optimizer": opt, "seed": seed,
            }
            point = Point(root.name, DATASET, vname, value, seed, settings, run, axis != "reference")
            if seed in seeds or carries_verdict(point):
                out[run] = point
    return list(out.values())


def make_launch(runs: str | Path, epochs: int, device: str | None = None, data_root: str | None = None) -> Launch:
    """The sweep launch of the study: flags common to every pretrain command, results in RUNS/e<epochs>/."""
    extra = ["--arch", ARCH, "--epochs", str(epochs), "--workers", str(WORKERS)] + (["--device", device] if device else [])
    return Launch("local", Path(runs), check_extra(extra), data_root, probe_workers=WORKERS)


def estimate_seconds(points: Sequence[Point], epochs: int, jobs: int) -> float:
    """Wall seconds for ``points`` on ``jobs`` free cores, from the measured costs (:data:`EPOCH_CPU_S`)."""
    cpu = sum(EPOCH_CPU_S.get(int(p.settings["batch_size"]), 1.5) * epochs + PROBE_CPU_S for p in points)
    return cpu / max(1, jobs) + WORKER_START_S
