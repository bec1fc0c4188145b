"""What a run ended in: the metrics that tell the end states apart, and the classification.

Inputs: the final unit embeddings ``z: (R, P, D)`` of R runs (P = 2N views), the embeddings of the last
steps (for motion and periodicity; Gram matrices are compared, so a rigid rotation of a whole configuration
does not count as motion), the labels of the views ``(P,)``, and the losses at the start, at the end and at
the optimum a small step converges to. The CLOP paper (arXiv 2403.18699) names complete collapse (Lemma 1,
Sec. 3.1) and dimensional collapse (Sec. 3.2); the other states are what the ladder found instead.

End states (:data:`END_STATES`), decided in this order:

0. ``diverged``: the embeddings or the loss are not finite (an encoder's weights overflowed);
1. ``complete_collapse``: rank one, sigma_1^2 / sum sigma^2 >= 1 - :data:`COLLAPSE_TOL` (all views on one
   line: equal, or co-linear with both signs, the two cases of Lemma 1);
2. a run still moving (max |G_T - G_{T-1}| > :data:`SETTLED_TOL`):
   ``periodic`` when G_T = G_{T-p} within :data:`SETTLED_TOL` for some p in 2..:data:`MAX_PERIOD`,
   ``wandering`` when it moves by more than :data:`WANDER_TOL` per step without such a period,
   otherwise it is still converging and is judged like a settled run;
3. a settled run: ``converged`` when it ends within :data:`CONVERGED_GAP` of the loss decrease the optimum
   allows; ``class_collapse`` when every class sits on one point (within-class spread below
   :data:`CLASS_TOL`) but the loss is not optimal; ``dimensional_collapse`` when its numerical rank
   (singular values above :data:`RANK_RTOL` sigma_1) is below the optimum's; ``stalled`` otherwise.

The failure-to-train event is separate from the classification: a run fails when it ends short of
:data:`TRAINED_FRACTION` of the loss decrease the optimum allows.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "END_STATES", "COLLAPSE_TOL", "SETTLED_TOL", "WANDER_TOL", "MAX_PERIOD", "CONVERGED_GAP", "CLASS_TOL",
    "RANK_RTOL", "TRAINED_FRACTION", "state_metrics", "classify", "failed_to_train", "gram_motion",
]

END_STATES = ("complete_collapse", "converged", "class_collapse", "dimensional_collapse", "stalled",
              "periodic", "wandering", "diverged")
COLLAPSE_TOL = 1e-6
SETTLED_TOL = 1e-7
WANDER_TOL = 1e-3
MAX_PERIOD = 4
CONVERGED_GAP = 0.01
CLASS_TOL = 1e-6
RANK_RTOL = 1e-3
TRAINED_FRACTION = 0.95


def _gram(z: torch.Tensor) -> torch.Tensor:
    return z @ z.transpose(-1, -2)


def gram_motion(history: list[torch.Tensor]) -> np.ndarray:
    """(R, MAX_PERIOD): max |G_T - G_{T-p}| for p = 1..MAX_PERIOD from ``history`` (oldest first, each
    (R, P, D)); NaN where the history is too short."""
    r = history[-1].shape[0]
    out = np.full((r, MAX_PERIOD), np.nan)
    g_last = _gram(history[-1])
    for p in range(1, MAX_PERIOD + 1):
        if len(history) > p:
            out[:, p - 1] = (g_last - _gram(history[-1 - p])).abs().amax(dim=(-1, -2)).cpu().numpy()
    return out


def state_metrics(z: torch.Tensor, labels: torch.Tensor, history: list[torch.Tensor] | None = None) -> dict[str, np.ndarray]:
    """Metrics of R configurations ``z: (R, P, D)`` (unit rows) with view labels ``(P,)``.

    Returns arrays of shape (R,): ``share1`` (sigma_1^2 / sum sigma^2), ``mu`` (norm of the mean view),
    ``rank`` (singular values above RANK_RTOL sigma_1), ``finite`` (all entries finite; the other metrics
    treat a non-finite run as all zeros), ``class_spread`` (mean over classes of
    1 - ||mean of the class's views||: 0 iff every class sits on one point), and ``motion`` (R, MAX_PERIOD)
    from :func:`gram_motion` (all NaN without history).
    """
    z = z.to(torch.float64)
    finite = torch.isfinite(z).all(dim=(-1, -2))
    z = torch.where(finite[:, None, None], z, torch.zeros_like(z))
    s = torch.linalg.svdvals(z)
    share = (s[:, 0] ** 2 / (s**2).sum(-1).clamp_min(1e-300)).cpu().numpy()
    rank = (s > RANK_RTOL * s[:, :1]).sum(-1).cpu().numpy()
    mu = torch.linalg.vector_norm(z.mean(1), dim=-1).cpu().numpy()
    classes = labels.unique()
    spread = torch.stack([1 - torch.linalg.vector_norm(z[:, labels == c].mean(1), dim=-1) for c in classes]).mean(0)
    motion = gram_motion(history) if history else np.full((z.shape[0], MAX_PERIOD), np.nan)
    return {"share1": share, "mu": mu, "rank": rank.astype(np.int64), "class_spread": spread.cpu().numpy(),
            "motion": motion, "finite": finite.cpu().numpy()}


def _gap(loss_end: np.ndarray, loss0: np.ndarray, loss_opt: float) -> np.ndarray:
    """Fraction of the possible decrease L0 - L* not achieved: (L_T - L*)/(L0 - L*)."""
    den = np.maximum(np.asarray(loss0, dtype=float) - loss_opt, 1e-300)
    return (np.asarray(loss_end, dtype=float) - loss_opt) / den


def failed_to_train(loss_end: np.ndarray, loss0: np.ndarray, loss_opt: float) -> np.ndarray:
    """Runs that end short of TRAINED_FRACTION of the decrease L0 - L* (non-finite losses fail)."""
    gap = _gap(loss_end, loss0, loss_opt)
    return ~np.isfinite(gap) | (gap > 1.0 - TRAINED_FRACTION)


def classify(metrics: dict[str, np.ndarray], loss_end: np.ndarray, loss0: np.ndarray, loss_opt: float,
             rank_opt: int) -> tuple[np.ndarray, np.ndarray]:
    """(state, period): the end state of every run (module docstring) and its period (0 unless periodic)."""
    r = len(metrics["share1"])
    states = np.empty(r, dtype=object)
    period = np.zeros(r, dtype=np.int64)
    gap = _gap(loss_end, loss0, loss_opt)
    motion = metrics["motion"]
    finite = metrics.get("finite", np.ones(r, dtype=bool))
    for i in range(r):
        if not finite[i] or not np.isfinite(loss_end[i]):
            states[i] = "diverged"
            continue
        if metrics["share1"][i] >= 1.0 - COLLAPSE_TOL:
            states[i] = "complete_collapse"
            continue
        moving = np.isfinite(motion[i, 0]) and motion[i, 0] > SETTLED_TOL
        if moving:
            back = [p for p in range(2, motion.shape[1] + 1) if np.isfinite(motion[i, p - 1])
                    and motion[i, p - 1] <= SETTLED_TOL]
            if back:
                states[i], period[i] = "periodic", back[0]
                continue
            if motion[i, 0] > WANDER_TOL:
                states[i] = "wandering"
                continue
        if np.isfinite(gap[i]) and gap[i] <= CONVERGED_GAP:
            states[i] = "converged"
        elif metrics["class_spread"][i] <= CLASS_TOL:
            states[i] = "class_collapse"
        elif metrics["rank"][i] < rank_opt:
            states[i] = "dimensional_collapse"
        else:
            states[i] = "stalled"
    return states, period
