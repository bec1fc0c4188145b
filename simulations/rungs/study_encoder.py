"""The rung-2 parts of the ladder study: the mapping test on a Gaussian mixture, and training on the digits.

* :func:`mapping_part` -> ``rung2_mapping.csv``: a linear encoder trained by GD on a Gaussian mixture whose Gram
  spectrum is chosen (:func:`simulations.rungs.data.mixture_views`). Per (spectrum, loss): the optimum
  predicted critical lr 2/lambda_max(H_W) (``gd``), the rung-1 mapping r^2 lr_1 / lambda_max(K) (``mapped``)
  and its bounds (``mapped_lo``, ``mapped_hi``), and the measured local critical lr. The optimum: for the flat
  spectrum (K = I) the encoder that outputs rung 1's own optimum with unit norms
  (:func:`simulations.rungs.encoder_theory.optimum_from_views`: there the mapping is exact), otherwise the one
  L-BFGS reaches. The measurement: runs
  started at the optimum plus a perturbation of relative size :data:`PERTURBATION` along a random direction
  (one per trial), ``map_steps`` steps; a run is unstable when its weights grew by more than
  :data:`GROWTH_TOL` (:func:`grew`: the perturbation grew, even if the run settles again once the larger
  weights have lowered its effective step), and the bracket of :func:`simulations.rungs.search.critical_steps`
  on that event is the measured local critical lr.
* :func:`train_part` -> ``rung2_predictions.csv``, ``rung2_events.csv``, ``rung2_runs.csv``: per (model,
  optimiser, loss) on the digits, the predictions of :func:`simulations.rungs.encoder_theory.predictions` and
  the searches from the ordinary start (the grid reaches 4096 x the scale: a scale-invariant loss lets the
  weights grow, so the events come far above the local prediction or not at all).
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from simulations.rungs.data import digits_views, mixture_views
from simulations.rungs.encoder import Encoder
from simulations.rungs.encoder_theory import encoder_optimum, optimum_from_views, predictions
from simulations.rungs.linearise import fixed_point
from simulations.rungs.problem import Problem
from simulations.rungs.search import GRID, critical_steps
from simulations.rungs.settings import Settings

__all__ = ["PERTURBATION", "GROWTH_TOL", "PerturbedStart", "grew", "mapping_part", "train_part", "RUNG2_GRID"]

PERTURBATION = 1e-4
GROWTH_TOL = 1e-4
RUNG2_GRID = tuple(GRID) + tuple(2.0 ** (np.array([10.0, 12.0]) + 1.0 / 16))


class PerturbedStart:
    """An encoder rung whose runs start at ``params`` + a perturbation of relative size ``scale`` (per trial a
    random direction from a generator seeded by the trial)."""

    def __init__(self, enc: Encoder, params: dict[str, torch.Tensor], scale: float = PERTURBATION):
        self.enc, self.params, self.scale = enc, params, scale
        self.problem, self.name, self.device = enc.problem, enc.name + "-perturbed", enc.device

    def init(self, trials: Sequence[int]) -> dict[str, torch.Tensor]:
        runs = []
        norm = math.sqrt(sum(float((v * v).sum()) for v in self.params.values()))
        for t in trials:
            g = torch.Generator().manual_seed(1_000_003 * (int(t) + 1))
            dirs = {k: torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in self.params.items()}
            dn = math.sqrt(sum(float((v * v).sum()) for v in dirs.values()))
            runs.append({k: v + self.scale * norm / dn * dirs[k] for k, v in self.params.items()})
        state = {k: torch.stack([r[k] for r in runs]) for k in runs[0]}
        for k in list(state):
            state["v_" + k] = torch.zeros_like(state[k])
        return state

    def step(self, state, lrs, t):
        return self.enc.step(state, lrs, t)

    def embeddings(self, state):
        return self.enc.embeddings(state)

    def diagnostics(self, state):
        return self.enc.diagnostics(state)


def grew(rec: dict[str, np.ndarray], tol: float = GROWTH_TOL) -> np.ndarray:
    """Runs whose weights grew by more than the relative ``tol``: for a scale-invariant loss GD adds
    lr^2 ||g||^2 to ||W||^2 every step, so a perturbation of size delta that decays adds O(delta^2), one that
    grows adds O(1) (the local instability, even where the run later settles again)."""
    return (rec["log10_weight_norm"] - rec["log10_weight_norm_0"]) > np.log10(1.0 + tol)


def _cols(data: str, model: str, optimiser: str, p: Problem) -> dict:
    return {"data": data, "model": model, "optimiser": optimiser, "loss": p.loss, "k": p.k, "n": p.n, "d": p.d,
            "tau": p.tau if p.tau is not None else math.nan}


def mapping_part(s: Settings, progress=print) -> dict[str, pd.DataFrame]:
    """rung2_mapping.csv (module docstring)."""
    rows = []
    k, n = 4, 2
    for spectrum in s.map_spectra:
        x = mixture_views(k, n, p=64, spectrum=spectrum, seed=s.seed)
        for loss in s.r2_losses:
            p = Problem.make(loss, k, n, d=2 * k * n + 1, seed=s.seed)
            enc = Encoder(p, x, "linear", "gd")
            opt = optimum_from_views(enc, fixed_point(p).z) if spectrum == "flat" else encoder_optimum(enc)
            pred = predictions(enc, opt)
            progress(f"  mapping {spectrum} {p.label()}: predicted {pred['gd']:.4g}, mapped {pred['mapped']:.4g}")
            local = PerturbedStart(enc, opt.params)
            _, events = critical_steps(local, range(s.sweep_trials), pred["gd"], steps=s.map_steps,
                                       loss_opt=opt.loss, rank_opt=opt.rank, resolution=s.resolution,
                                       grid=(0.5, 0.75, 1.0 / 1.02, 1.02, 4.0 / 3, 2.0), events={"unstable": grew})
            for e in events:
                if e["event"] == "unstable":
                    rows.append({"spectrum": spectrum} | _cols("mixture", "linear", "gd", p) | pred
                                | {"loss_opt": opt.loss, "trial": e["trial"], "status": e["status"],
                                   "measured_lo": e["lo"], "measured_hi": e["hi"], "steps": s.map_steps})
    return {"rung2_mapping.csv": pd.DataFrame(rows)}


@functools.lru_cache(maxsize=None)
def _digits(k: int, n: int, seed: int) -> torch.Tensor:
    return digits_views(k, n, seed=seed)


def train_part(s: Settings, progress=print) -> dict[str, pd.DataFrame]:
    """rung2_predictions.csv, rung2_events.csv, rung2_runs.csv (module docstring)."""
    x = _digits(s.r2_k, s.r2_n, s.seed)
    pred_rows, ev_rows, run_frames = [], [], []
    for model in s.r2_models:
        for loss in s.r2_losses:
            p = Problem.make(loss, s.r2_k, s.r2_n, s.r2_d, seed=s.seed)
            opt = encoder_optimum(Encoder(p, x, model, "gd"))
            pred = predictions(Encoder(p, x, model, "gd"), opt)
            for optimiser in s.r2_optimisers:
                enc = Encoder(p, x, model, optimiser)
                scale = pred[optimiser]
                cols = _cols("digits", model, optimiser, p)
                pred_rows.append(cols | pred | {"predicted": scale, "loss_opt": opt.loss, "loss0": opt.loss0,
                                                "rank_opt": opt.rank})
                progress(f"  search rung 2: {enc.name} {p.label()} (scale {scale:.4g})")
                runs, events = critical_steps(enc, range(s.trials), scale, steps=s.r2_steps, loss_opt=opt.loss,
                                              rank_opt=opt.rank, resolution=s.resolution, grid=RUNG2_GRID)
                ev_rows += [cols | {"steps": s.r2_steps} | e | {"predicted": scale, "mapped": pred["mapped"],
                                                                "rung1": pred["rung1"]} for e in events]
                frame = pd.DataFrame(runs)
                for key, value in reversed(list((cols | {"steps": s.r2_steps}).items())):
                    frame.insert(0, key, value)
                run_frames.append(frame)
    return {"rung2_predictions.csv": pd.DataFrame(pred_rows), "rung2_events.csv": pd.DataFrame(ev_rows),
            "rung2_runs.csv": pd.concat(run_frames, ignore_index=True)}
