"""The grid of the ladder's rung 3: the digits CNN (``--dataset digits --arch small``) at large learning rates,
with BatchNorm, without it, and with the scale-invariant weights' norms held fixed.

Paper: CLOP, arXiv 2403.18699, Sec. 3.1 (Theorem 1: a large enough step ends in complete collapse) and Sec. 5
(the training it describes). The question (docs/ladder.md, rung 3): the practice study's digits CNN does not
collapse up to lr 30 with LARS or SGD; is that because BatchNorm makes the layers before it scale-invariant, so
that their effective step is lr / ||W||^2 and ||W|| grows at a large lr?

* variant: InfoNCE with 10 % labels for the probe, no CLOP (``infonce10`` of :data:`training.sweeps.grid.VARIANTS`,
  as in the practice study, :mod:`training.practice.grid`), batch 256;
* learning rate (the rate the optimiser uses, = base_lr at batch 256): :data:`LRS`, 30 to 1000;
* optimiser: LARS and SGD (:mod:`training.engine.build`);
* normalisation (:data:`NORMS`): ``bn`` the network as the practice study trains it; ``nobn`` no BatchNorm at all
  (``--arch small-nobn``); ``fixed`` BatchNorm with every scale-invariant weight put back to its initial norm
  after each step (``--hold-weight-norms``, :mod:`training.engine.norms`);
* for ``nobn`` also :data:`CONTEXT_LRS` (3 and 10), where its collapse may start;
* seeds 0 .. 5 (:data:`SEEDS`: six pairs, the least :data:`clop.stats.MIN_PAIRS` decides on); :data:`EPOCHS`
  epochs (the practice study's 25 where the grid fits about 15 minutes of a 2-core CPU, see docs/ladder.md).

Every point is a :class:`training.sweeps.grid.Point` run by the practice study's machinery
(:func:`training.practice.run.run_study`: finished runs skipped, partial ones resumed, a divergence kept as an
outcome), under ``RUNS/e<epochs>/<norm>/infonce10_<optimizer>_b256_lr<lr>_s<seed>`` with the probe rows in
``RUNS/e<epochs>/<norm>/results.csv``.

Rung 4 is the same grid on the paper's own setting (:data:`RUNG4`: ResNet-50 on CIFAR-100, batch 1024, the
paper's lr 0.3 x 1024 / 256 = 4.8 as the reference point, 100 epochs, ``bn`` and ``fixed``; a ResNet-50 without
BatchNorm does not train from scratch at these rates). A :class:`NetworkRung` holds what differs between the two;
every function here takes one (default :data:`RUNG3`), and ``python -m training.rung4`` is the command line of
:data:`RUNG4`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

from training.data.augment import default_policy
from training.sweeps.grid import VARIANTS, Point
from training.sweeps.launch import Launch, check_extra

__all__ = [
    "BATCH",
    "DATASET",
    "EPOCHS",
    "LRS",
    "NORMS",
    "OPTIMIZERS",
    "RUNG3",
    "RUNG4",
    "RUNS",
    "SEEDS",
    "VARIANT",
    "NetworkRung",
    "Norm",
    "make_launch",
    "points",
]

DATASET = "digits"
VARIANT = "infonce10"
BATCH = 256
LRS = (30.0, 100.0, 300.0, 1000.0)
CONTEXT_LRS = (3.0, 10.0)
"""Lower lrs run for ``nobn`` only: without BatchNorm the collapse may start below the grid, and these locate it."""
OPTIMIZERS = ("lars", "sgd")
SEEDS = (0, 1, 2, 3, 4, 5)
EPOCHS = 25
RUNS = "runs/ladder_rung3"


@dataclasses.dataclass(frozen=True)
class Norm:
    """One normalisation of the network: its ``--arch`` and whether ``--hold-weight-norms`` is on."""

    arch: str
    hold: bool
    label: str


NORMS = {
    "bn": Norm("small", False, "BatchNorm (as trained)"),
    "nobn": Norm("small-nobn", False, "no BatchNorm"),
    "fixed": Norm("small", True, "BatchNorm, weight norms held fixed"),
}
"""The normalisations compared (module docstring), by name."""


@dataclasses.dataclass(frozen=True)
class NetworkRung:
    """A rung of the ladder that is a network trained by ``training.pretrain`` (docs/ladder.md, rungs 3 and 4).

    ``number`` the rung; ``model`` its name in reports; ``dataset``, ``batch`` the runs' (the lr of the grid is
    the rate the optimiser uses, ``base_lr = lr x 256 / batch``); ``norms`` the normalisations it compares;
    ``lrs``, ``context_lrs`` (``nobn`` only), ``epochs`` the default grid; ``runs``, ``out``, ``rows`` the
    default run folder, report folder and ladder-rows file; ``workers`` the data workers of every run (None:
    training.pretrain's default); ``command`` the command line that makes the report; ``compared`` and
    ``heldout`` the report's words for the normalisations and the number of held-out images; ``datasets`` those
    its command line accepts (``--dataset``, ``--batch-size``, ``--data-root`` where there is a choice); ``smoke``: pass
    ``--smoke`` to every run (a few ResNet-50 steps on 16 px generated images: the test of rung 4's code on a CPU).
    """

    number: int
    model: str
    dataset: str
    batch: int
    norms: dict[str, Norm]
    lrs: tuple[float, ...]
    context_lrs: tuple[float, ...]
    epochs: int
    runs: str
    out: str
    rows: str
    workers: int | None
    command: str
    compared: str
    heldout: str
    datasets: tuple[str, ...]
    smoke: bool = False

    @property
    def cpu_study(self) -> bool:
        """Rung 3's way of running: on the CPU, several one-thread runs at a time, no data workers (``workers``
        0); otherwise (rung 4) one run at a time on a GPU or every core."""
        return self.workers == 0

    @property
    def tag(self) -> str:
        """The claim ids' rung tag, ``R3`` or ``R4``."""
        return f"R{self.number}"


RUNG3 = NetworkRung(3, "digits CNN", DATASET, BATCH, NORMS, LRS, CONTEXT_LRS, EPOCHS, RUNS,
                    "paper_figures/ladder/rung3", "paper_figures/ladder/ladder_rows_rung3.csv", 0,
                    "python -m training.rung3", "with and without BatchNorm", "359", (DATASET,))
"""Rung 3: the digits CNN (module docstring)."""

RUNG4 = NetworkRung(4, "ResNet-50 on cifar100", "cifar100", 1024,
                    {"bn": Norm("resnet50", False, "BatchNorm (as trained)"),
                     "fixed": Norm("resnet50", True, "BatchNorm, weight norms held fixed")},
                    (4.8, 30.0, 100.0, 300.0, 1000.0), (), 100, "runs/ladder_rung4", "paper_figures/ladder/rung4",
                    "paper_figures/ladder/ladder_rows_rung4.csv", None, "python -m training.rung4",
                    "with BatchNorm's weights free and held at their initial norms", "1024",
                    ("cifar100", "tiny-imagenet", "imagenet", "synthetic"))
"""Rung 4: ResNet-50 on CIFAR-100 (module docstring); needs a GPU and the data."""


def _check_list(name: str, values: Sequence, allowed: Sequence | None = None) -> list:
    values = list(values)
    if not values or len(set(values)) < len(values):
        raise ValueError(f"{name} must be distinct values, at least one; got {values!r}")
    if allowed is not None and any(v not in allowed for v in values):
        raise ValueError(f"{name}={values!r}: expected some of {list(allowed)}")
    return values


def points(runs: str | Path | None = None, epochs: int | None = None, lrs: Sequence[float] | None = None,
           optimizers: Sequence[str] = OPTIMIZERS, norms: Sequence[str] | None = None,
           seeds: Sequence[int] = SEEDS, context_lrs: Sequence[float] | None = None,
           rung: NetworkRung = RUNG3) -> list[tuple[str, Point]]:
    """(norm, point) for every cell of ``rung``'s grid, seed by seed, then the ``nobn`` points at ``context_lrs``
    (those not in ``lrs``; none when ``nobn`` is not among ``norms``); None takes the rung's default; ValueError
    naming a bad argument."""
    runs = rung.runs if runs is None else runs
    epochs = rung.epochs if epochs is None else epochs
    lrs = _check_list("lrs", rung.lrs if lrs is None else lrs)
    context_lrs = list(rung.context_lrs if context_lrs is None else context_lrs)
    if len(set(context_lrs)) < len(context_lrs):
        raise ValueError(f"context_lrs must be distinct values; got {context_lrs!r}")
    for name, values in (("lrs", lrs), ("context_lrs", context_lrs)):
        if any(isinstance(x, bool) or not isinstance(x, (int, float)) or not (math.isfinite(x) and x > 0)
               for x in values):
            raise ValueError(f"{name} must be finite numbers > 0; got {values!r}")
    optimizers = _check_list("optimizers", optimizers, OPTIMIZERS)
    norms = _check_list("norms", tuple(rung.norms) if norms is None else norms, tuple(rung.norms))
    seeds = _check_list("seeds", seeds)
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be integers >= 0; got {seeds!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1; got {epochs!r}")
    v = VARIANTS[VARIANT]
    cells = [(norm, opt, lr) for norm in norms for opt in optimizers for lr in lrs]
    extra = [x for x in context_lrs if x not in lrs] if "nobn" in norms else []
    out = []
    for group in (cells, [("nobn", opt, lr) for opt in optimizers for lr in extra]):
        for seed in seeds:
            for norm, opt, lr in group:
                sweep = f"e{epochs}/{norm}"
                run = Path(runs) / sweep / f"{VARIANT}_{opt}_b{rung.batch}_lr{float(lr):g}_s{seed}"
                settings = {
                    "dataset": rung.dataset, "loss": v.loss, "label_fraction": v.label_fraction,
                    "clop_lambda": v.clop_lambda, "prototypes": v.prototypes, "similarity": "cosine",
                    "augmentation": default_policy(rung.dataset), "batch_size": rung.batch,
                    "base_lr": float(lr) * 256 / rung.batch, "optimizer": opt, "seed": seed,
                }
                out.append((norm, Point(sweep, rung.dataset, VARIANT, float(lr), seed, settings, run, False)))
    return out


def make_launch(norm: str, runs: str | Path | None = None, epochs: int | None = None, device: str | None = None,
                rung: NetworkRung = RUNG3, data_root: str | None = None) -> Launch:
    """The sweep launch of one normalisation of ``rung``: ``--arch``, ``--hold-weight-norms``, ``--epochs``, the
    rung's data workers (and ``--smoke`` where the rung says so), ``--data-root`` when given; one process."""
    if norm not in rung.norms:
        raise ValueError(f"norm={norm!r}: expected one of {list(rung.norms)}")
    n = rung.norms[norm]
    epochs = rung.epochs if epochs is None else epochs
    extra = ["--arch", n.arch, "--epochs", str(epochs)]
    extra += ["--workers", str(rung.workers)] if rung.workers is not None else []
    extra += ["--hold-weight-norms"] if n.hold else []
    extra += ["--device", device] if device else []
    extra += ["--smoke"] if rung.smoke else []
    return Launch("local", Path(rung.runs if runs is None else runs), check_extra(extra), data_root,
                  probe_workers=0 if rung.smoke else rung.workers)
