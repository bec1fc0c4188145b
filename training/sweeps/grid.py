"""The CLOP paper's experiment grids (Sec. 5, Figs. 6-7, Tables 1-3) as data: its variants, its sweeps and their
points (one pre-training + linear probe each).

============  =======================================================  ======================  ==================
sweep         grid                                                     variants                source
============  =======================================================  ======================  ==================
batch-size    batch 32 ... 2048, lr = 0.3 x batch / 256                the six of Sec. 5       Sec. 5, Fig. 6
lr            lr 0.1, 0.3, 1, 3, 10 at batch 1024                      the six of Sec. 5       Sec. 5, Fig. 7
lambda        lambda 0.1, 0.5, 1.0, 1.5 at batch 1024                  CLOP ablation pair      Sec. 5, Table 1
similarity    s(z, c) cosine / euclidean / manhattan                   CLOP ablation pair      Sec. 5, Table 2
augmentation  RandAugment / AutoAugment (ImageNet) / SimCLR            CLOP ablation pair      Sec. 5, Table 3
============  =======================================================  ======================  ==================

The six variants compared in Sec. 5 (Figs. 6 and 7): InfoNCE with 10 % labels (semi-supervised; CLOP and
the probe use the labeled 10 %) and SupCon with all labels, each without CLOP, with CLOP (lambda = 1,
orthonormal prototypes) and with CLOP on simplex-ETF prototypes ("to ensure a fair comparison with ETF").
The ablations (Tables 1-3) cross their grid with the two orthonormal-CLOP variants; the paper's tables
used SupCon + CLOP (Table 1 says so; Table 2's cosine row and Table 3's RandAugment row repeat Table 1's
lambda = 1.0 numbers for CIFAR-100 and Tiny-ImageNet), which :data:`SWEEPS` records as ``paper_variants``
and each :class:`Point` as ``in_paper``.

Not printed in the paper, our choices: the lr grid (Fig. 7 says only "from 0.1 to 10"); that the learning
rates of Fig. 7 are the rates actually used (so base_lr = lr x 256 / 1024 here); the default dataset of the
lambda, similarity and augmentation ablations where the paper ran several (CIFAR-100). Epochs follow the
pre-training's per-dataset defaults. Every point passes its settings explicitly (dataset, loss, labels, lambda,
prototypes, similarity, augmentation, batch, base lr, seed). A point's run goes to
``ROOT/NAME/DATASET/<variant>_<tag><value>_s<seed>`` (e.g. ``runs/sweeps/batch-size/cifar100/supcon100-clop_b32_s0``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

from training.data.augment import default_policy
from training.data.catalog import DATASETS

__all__ = ["Variant", "VARIANTS", "COMPARISON", "ABLATION", "BASE_SETTINGS", "Sweep", "SWEEPS", "Point",
           "format_value", "points"]


@dataclasses.dataclass(frozen=True)
class Variant:
    """One method of Sec. 5: a contrastive loss, its labeled fraction and the CLOP term (lambda 0 = off)."""

    name: str
    loss: str
    label_fraction: float
    clop_lambda: float
    prototypes: str
    description: str


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("infonce10", "infonce", 0.1, 0.0, "orthonormal", "InfoNCE, 10 % labels for the probe, no CLOP"),
        Variant("infonce10-clop", "infonce", 0.1, 1.0, "orthonormal",
                "InfoNCE + CLOP (lambda 1, orthonormal prototypes), 10 % labels"),
        Variant("infonce10-clop-etf", "infonce", 0.1, 1.0, "etf", "InfoNCE + CLOP on simplex-ETF prototypes, 10 % labels"),
        Variant("supcon100", "supcon", 1.0, 0.0, "orthonormal", "SupCon, all labels, no CLOP"),
        Variant("supcon100-clop", "supcon", 1.0, 1.0, "orthonormal",
                "SupCon + CLOP (lambda 1, orthonormal prototypes), all labels"),
        Variant("supcon100-clop-etf", "supcon", 1.0, 1.0, "etf", "SupCon + CLOP on simplex-ETF prototypes, all labels"),
    )
}
"""CLOP paper Sec. 5: InfoNCE (semi-supervised, 10 % labels for CLOP and the linear classifier) and SupCon
(all labels) as baselines, with CLOP at the hand-tuned lambda = 1, and CLOP with ETF prototypes "to ensure a
fair comparison with ETF"; Figs. 6 and 7 plot all six."""

COMPARISON = tuple(VARIANTS)
"""The six variants of the batch-size and lr sweeps (Figs. 6 and 7)."""
ABLATION = ("infonce10-clop", "supcon100-clop")
"""The two orthonormal-CLOP variants the ablations are crossed with; the paper's Tables 1-3 used SupCon."""

BASE_SETTINGS: dict[str, object] = {"similarity": "cosine", "augmentation": "simclr", "batch_size": 1024, "base_lr": 0.3}
"""Settings not varied by a sweep (Sec. 5: cosine s(z, c) in Eq. (4), SimCLR framework, batch 1024 for the lr
sweep and the ablations, lr = 0.3 x batch / 256). The augmentation is the dataset's default policy
(``training.data.augment.default_policy``: simclr, but digits for ``--dataset digits``, whose digits must not be
flipped)."""


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A grid over one setting, crossed with variants. ``param`` names what ``values`` set."""

    name: str
    param: str
    values: tuple
    variants: tuple[str, ...]
    paper_variants: tuple[str, ...]
    dataset: str
    tag: str
    source: str

    def settings(self, value: object) -> dict[str, object]:
        """The pretrain settings one grid value sets (learning rates become base_lr at the sweep's batch)."""
        if self.param == "lr":
            return {"base_lr": float(value) * 256 / BASE_SETTINGS["batch_size"]}
        return {self.param: value}


SWEEPS: dict[str, Sweep] = {
    s.name: s
    for s in (
        Sweep("batch-size", "batch_size", (32, 64, 128, 256, 512, 1024, 2048), COMPARISON, COMPARISON, "cifar100", "b",
              "Sec. 5 'CLOP Enables Smaller Batch Sizes', Fig. 6 (top-5: Fig. 8): lr = 0.3 x batch / 256"),
        Sweep("lr", "lr", (0.1, 0.3, 1.0, 3.0, 10.0), COMPARISON, COMPARISON, "cifar100", "lr",
              "Sec. 5 'CLOP Prevents Collapse with Large Learning Rates', Fig. 7 (top-5: Fig. 9): 'from 0.1 to 10' "
              "at batch 1024; the grid itself is not printed (ours: half-decades)"),
        Sweep("lambda", "clop_lambda", (0.1, 0.5, 1.0, 1.5), ABLATION, ("supcon100-clop",), "cifar100", "lambda",
              "Sec. 5 'Ablation Study on lambda Tuning', Table 1: SupCon, batch 1024, CIFAR-100 and Tiny-ImageNet"),
        Sweep("similarity", "similarity", ("cosine", "euclidean", "manhattan"), ABLATION, ("supcon100-clop",),
              "cifar100", "sim-",
              "Sec. 5 'Ablation Study on the Choice of Similarity Metric', Table 2 (called Table 5 in the text): "
              "CIFAR-100, ResNet-50"),
        Sweep("augmentation", "augmentation", ("randaugment", "autoaugment", "simclr"), ABLATION, ("supcon100-clop",),
              "tiny-imagenet", "aug-",
              "Sec. 5 'Ablation Study on the Choice of Augmentation', Table 3: Tiny-ImageNet, batch 1024; "
              "RandAugment, AutoAugment (ImageNet policy), SimCLR"),
    )
}
"""The named sweeps: grid, variants (all run; ``paper_variants`` the ones the paper's figure/table shows),
default dataset, run-name tag and the paper's source."""

def format_value(value: object) -> str:
    """A setting as a command-line value and in run names: floats in their shortest form (1.0 -> 1)."""
    if isinstance(value, float):
        return format(value, "g") if float(format(value, "g")) == value else repr(value)
    return str(value)


@dataclasses.dataclass
class Point:
    """One run of a sweep: the variant, the grid value, the seed, and where it goes.

    ``settings`` maps training.pretrain's settings (``PretrainConfig`` field names) to values; ``args`` is
    them as flags (no ``--out``); ``run_dir`` is ``ROOT/SWEEP/DATASET/name``.
    """

    sweep: str
    dataset: str
    variant: str
    value: object
    seed: int
    settings: dict[str, object]
    run_dir: Path
    in_paper: bool

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def args(self) -> list[str]:
        out: list[str] = []
        for key, value in self.settings.items():
            out += ["--" + key.replace("_", "-"), format_value(value)]
        return out


def _check_sweep(name: object) -> Sweep:
    if name not in SWEEPS:
        raise ValueError(f"name={name!r} is not a sweep; expected one of {list(SWEEPS)}")
    return SWEEPS[name]


def _select(label: str, wanted: Sequence | None, available: Sequence, match: Callable[[object, object], bool]) -> list:
    """The entries of ``available`` that some entry of ``wanted`` matches (all when None), in grid order."""
    if wanted is None:
        return list(available)
    wanted = list(wanted)
    if not wanted:
        raise ValueError(f"{label} is empty; expected some of {[format_value(a) for a in available]}")
    bad = [w for w in wanted if not any(match(w, a) for a in available)]
    if bad:
        raise ValueError(f"{label}={bad!r} not in this sweep; expected some of {[format_value(a) for a in available]}")
    return [a for a in available if any(match(w, a) for w in wanted)]


def _value_matches(wanted: object, value: object) -> bool:
    if isinstance(value, str):
        return str(wanted).lower() == value
    try:
        return float(wanted) == float(value)
    except (TypeError, ValueError):
        return False


def points(
    name: str, dataset: str | None = None, variants: Sequence[str] | None = None, seeds: Sequence[int] = (0,),
    *, values: Sequence | None = None, root: str | Path = "runs/sweeps",
) -> list[Point]:
    """The points of sweep ``name``: seed (outer) x grid value x variant (inner).

    Args:
        name: one of :data:`SWEEPS`.
        dataset: one of training.data.catalog.DATASETS (default: the sweep's, see :data:`SWEEPS`).
        variants: names of :data:`VARIANTS` among the sweep's (default: all of them).
        seeds: one run per seed (integers >= 0, no repeats).
        values: a subset of the grid (default: all of it); numbers compare by value, so "1" selects 1.0.
        root: runs go to ``root/name/dataset/<variant>_<tag><value>_s<seed>``.
    """
    sweep = _check_sweep(name)
    dataset = sweep.dataset if dataset is None else dataset
    if dataset not in DATASETS:
        raise ValueError(f"dataset={dataset!r} is not supported; expected one of {list(DATASETS)}")
    chosen = _select("variants", variants, sweep.variants, lambda w, a: w == a)
    grid = _select("values", values, sweep.values, _value_matches)
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds) or len(set(seeds)) < len(seeds):
        raise ValueError(f"seeds must be distinct integers >= 0, at least one; got {seeds!r}")
    out = []
    for seed in seeds:
        for value in grid:
            for vname in chosen:
                v = VARIANTS[vname]
                settings = {
                    "dataset": dataset, "loss": v.loss, "label_fraction": v.label_fraction, "clop_lambda": v.clop_lambda,
                    "prototypes": v.prototypes, **BASE_SETTINGS, "augmentation": default_policy(dataset),
                    **sweep.settings(value), "seed": seed,
                }
                run = Path(root) / sweep.name / dataset / f"{vname}_{sweep.tag}{format_value(value)}_s{seed}"
                out.append(Point(sweep.name, dataset, vname, value, seed, settings, run, vname in sweep.paper_variants))
    return out
