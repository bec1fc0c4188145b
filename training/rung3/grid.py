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
"""

from __future__ import annotations

import dataclasses
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
    "RUNS",
    "SEEDS",
    "VARIANT",
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


def _check_list(name: str, values: Sequence, allowed: Sequence | None = None) -> list:
    values = list(values)
    if not values or len(set(values)) < len(values):
        raise ValueError(f"{name} must be distinct values, at least one; got {values!r}")
    if allowed is not None and any(v not in allowed for v in values):
        raise ValueError(f"{name}={values!r}: expected some of {list(allowed)}")
    return values


def points(runs: str | Path = RUNS, epochs: int = EPOCHS, lrs: Sequence[float] = LRS,
           optimizers: Sequence[str] = OPTIMIZERS, norms: Sequence[str] = tuple(NORMS),
           seeds: Sequence[int] = SEEDS, context_lrs: Sequence[float] = CONTEXT_LRS) -> list[tuple[str, Point]]:
    """(norm, point) for every cell of the grid, seed by seed, then the ``nobn`` points at ``context_lrs`` (those
    not in ``lrs``; none when ``nobn`` is not among ``norms``); ValueError naming a bad argument."""
    lrs = _check_list("lrs", lrs)
    context_lrs = list(context_lrs)
    for name, values in (("lrs", lrs), ("context_lrs", context_lrs)):
        if any(isinstance(x, bool) or not isinstance(x, (int, float)) or not x > 0 for x in values):
            raise ValueError(f"{name} must be numbers > 0; got {values!r}")
    optimizers = _check_list("optimizers", optimizers, OPTIMIZERS)
    norms = _check_list("norms", norms, tuple(NORMS))
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
                run = Path(runs) / sweep / f"{VARIANT}_{opt}_b{BATCH}_lr{float(lr):g}_s{seed}"
                settings = {
                    "dataset": DATASET, "loss": v.loss, "label_fraction": v.label_fraction,
                    "clop_lambda": v.clop_lambda, "prototypes": v.prototypes, "similarity": "cosine",
                    "augmentation": default_policy(DATASET), "batch_size": BATCH,
                    "base_lr": float(lr) * 256 / BATCH, "optimizer": opt, "seed": seed,
                }
                out.append((norm, Point(sweep, DATASET, VARIANT, float(lr), seed, settings, run, False)))
    return out


def make_launch(norm: str, runs: str | Path = RUNS, epochs: int = EPOCHS, device: str | None = None) -> Launch:
    """The sweep launch of one normalisation: ``--arch``, ``--hold-weight-norms``, ``--epochs``, one process."""
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r}: expected one of {list(NORMS)}")
    n = NORMS[norm]
    extra = ["--arch", n.arch, "--epochs", str(epochs), "--workers", "0"]
    extra += ["--hold-weight-norms"] if n.hold else []
    extra += ["--device", device] if device else []
    return Launch("local", Path(runs), check_extra(extra), None, probe_workers=0)
