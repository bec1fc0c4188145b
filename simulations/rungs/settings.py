"""The grids of the ladder study and their checks (every bad value refused before any compute).

:func:`default_settings` gives the full study or, with ``quick=True``, a short version that exercises every
part on smaller grids and horizons (run times: ``docs/ladder.md``). Where the numbers come from:

* base setting k = 4 classes, n = 2 instances, d = 17: the smallest d that every loss accepts (L_class over
  2N = 16 views needs d >= 16, Theorem 1's m >= k), so all losses share the starts and are paired by trial;
* 6 trials: the smallest number of paired samples a verdict of :mod:`clop.stats` may rest on;
* 1000 steps (Figure 3 uses 2000): the horizon's excess is measured by repeating the base at 2000 for the
  losses whose prediction is expected to hold (L_class, InfoNCE, DCL); rung 2 trains 500 steps;
* the local part repeats the base searches from the optimum plus a 1e-4 perturbation (where the linearisation
  applies) for L_class, InfoNCE, SupCon, DCL, Barlow Twins and VICReg;
* resolution 2 %: the final bracket hi/lo of every bisection;
* k sweep 3 ... 20 (free embeddings of up to 2N = 40 views) and temperatures 0.05 ... 1;
* rung 2 on the digits with k = 10 classes, n = 2 instances, D = 41 output dimensions (>= the 2N = 40 views
  L_class needs), and on a Gaussian mixture of k = 4, n = 2 in p = 64 dimensions with a flat or decaying
  Gram spectrum for the mapping test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

from clop.util.checks import check_distinct
from simulations.rungs.encoder import MODELS, OPTIMISERS
from simulations.rungs.problem import DEFAULT_TAU, LOSSES, Problem, base_loss

__all__ = ["Settings", "default_settings", "check_settings", "settings_hash"]


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every grid of the study (module docstring)."""

    seed: int = 0
    steps: int = 1000
    horizon_steps: int = 2000
    trials: int = 6
    sweep_trials: int = 3
    resolution: float = 0.02
    k: int = 4
    n: int = 2
    d: int = 17
    losses: tuple[str, ...] = LOSSES
    horizon_losses: tuple[str, ...] = ("lclass", "infonce", "dcl")
    local_losses: tuple[str, ...] = ("lclass", "infonce", "supcon", "dcl", "barlowtwins", "vicreg")
    ks: tuple[int, ...] = (3, 5, 10, 20)
    k_losses: tuple[str, ...] = ("lclass", "infonce", "supcon")
    taus: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5, 1.0)
    tau_losses: tuple[str, ...] = ("infonce", "supcon")
    batches: tuple[int, ...] = (2, 4)
    batch_losses: tuple[str, ...] = ("infonce", "lclass")
    r2_k: int = 10
    r2_n: int = 2
    r2_d: int = 41
    r2_losses: tuple[str, ...] = ("lclass", "infonce", "supcon")
    r2_models: tuple[str, ...] = MODELS
    r2_optimisers: tuple[str, ...] = OPTIMISERS
    r2_steps: int = 500
    map_spectra: tuple[str, ...] = ("flat", "decay")
    map_steps: int = 300
    path_checkpoints: int = 20
    minibatch_samples: int = 24
    quick: bool = False


def default_settings(quick: bool = False, **overrides) -> Settings:
    """The full study, or its quick version; keyword overrides replace single fields."""
    base = Settings()
    if quick:
        base = dataclasses.replace(
            base, steps=300, horizon_steps=600, trials=2, sweep_trials=1, resolution=0.05,
            losses=("lclass", "infonce", "infonce+clop"), horizon_losses=("lclass",), local_losses=("infonce",),
            ks=(3, 5), path_checkpoints=5, minibatch_samples=6,
            k_losses=("lclass", "infonce"), taus=(0.1, 0.5), tau_losses=("infonce",), batches=(4,),
            batch_losses=("infonce",), r2_k=4, r2_n=2, r2_d=17, r2_losses=("infonce",), r2_models=("linear",),
            r2_optimisers=("gd", "lars"), r2_steps=200, map_spectra=("flat",), map_steps=100, quick=True)
    return dataclasses.replace(base, **overrides)


def check_settings(s: Settings) -> None:
    """ValueError naming the first bad field (e.g. ``--ks``: k < 3; ``--batches``: B > N; ``--d``: d too small)."""
    for name in ("steps", "horizon_steps", "trials", "sweep_trials", "r2_steps", "map_steps", "path_checkpoints",
                 "minibatch_samples"):
        v = getattr(s, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 1; got {v!r}")
    if not (math.isfinite(s.resolution) and 0 < s.resolution < 1):
        raise ValueError(f"--resolution must be a number in (0, 1); got {s.resolution!r}")
    if s.seed < 0:
        raise ValueError(f"--seed must be an integer >= 0; got {s.seed!r}")
    for name, values, allowed in (("losses", s.losses, LOSSES), ("k-losses", s.k_losses, LOSSES),
                                  ("tau-losses", s.tau_losses, LOSSES), ("batch-losses", s.batch_losses, LOSSES),
                                  ("horizon-losses", s.horizon_losses, LOSSES), ("local-losses", s.local_losses, LOSSES),
                                  ("r2-losses", s.r2_losses, LOSSES),
                                  ("r2-models", s.r2_models, MODELS), ("r2-optimisers", s.r2_optimisers, OPTIMISERS)):
        bad = [v for v in values if v not in allowed]
        if bad:
            raise ValueError(f"--{name} got {bad}; expected values from {list(allowed)}")
    for name in ("losses", "k_losses", "tau_losses", "batch_losses", "horizon_losses", "local_losses", "r2_losses",
                 "r2_models", "r2_optimisers", "ks", "taus", "batches"):  # a repeat would train a setting twice
        check_distinct(f"--{name.replace('_', '-')}", getattr(s, name))
    untempered = [loss for loss in s.tau_losses if base_loss(loss) not in DEFAULT_TAU]
    if untempered:
        raise ValueError(f"--tau-losses got {untempered}, which have no temperature; expected losses from "
                         f"{[loss for loss in LOSSES if base_loss(loss) in DEFAULT_TAU]}")
    _refuse("--k/--n/--d", lambda: [Problem.make(loss, s.k, s.n, s.d) for loss in s.losses])
    _refuse("--ks", lambda: [Problem.make(loss, k, 2 if loss == "supcon" else 1) for loss in s.k_losses
                             for k in s.ks])
    _refuse("--taus", lambda: [Problem.make(loss, s.k, s.n, s.d, tau=t) for loss in s.tau_losses for t in s.taus])
    _refuse("--batches", lambda: [Problem.make(loss, s.k, s.n, s.d, batch=b) for loss in s.batch_losses
                                  for b in s.batches])
    _refuse("--r2-k/--r2-n/--r2-d", lambda: [Problem.make(loss, s.r2_k, s.r2_n, s.r2_d) for loss in s.r2_losses])
    if s.r2_k > 10:
        raise ValueError(f"--r2-k must be <= 10 (digit classes); got {s.r2_k}")


def _refuse(flag: str, build) -> None:
    try:
        build()
    except ValueError as exc:
        raise ValueError(f"{flag}: {exc}") from None


def settings_hash(s: Settings, fields: tuple[str, ...]) -> str:
    """A short hash of the named fields: a part of the study is skipped on relaunch when its hash is unchanged."""
    payload = json.dumps({f: getattr(s, f) for f in fields}, sort_keys=True, default=list)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
