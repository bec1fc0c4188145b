"""Batched gradient descent on L_class: the numerical experiments of Section 3 of the CLOP paper.

Paper: "Preventing collapse in contrastive learning with orthonormal prototypes" (CLOP),
../shared/papers/001_a0916c72eb7a88d5.txt: Eq. (3) (L_class), Theorem 1 and Figure 3 (Section 3.1),
Figure 4 and Lemma 2 (Section 3.2), and the update rule analysed in Appendix D.

The update (Appendix D, with the misprinted ``n mu`` read as ``k mu``)
-----------------------------------------------------------------------
k unit class embeddings ``x_1..x_k`` in R^m (rows of ``X: (k, m)``), mean ``mu = (1/k) sum_i x_i``.
One step moves every point by ``eta`` times the negative mean of the *other* points, then puts it back on
the sphere::

    y_i = x_i - eta * (1/(k-1)) sum_{j != i} x_j = (1 + eta/(k-1)) x_i - eta k/(k-1) mu,
    x_i <- y_i / ||y_i||.

What "learning rate" ``eta`` means here. L_class(X) = sum_{i != j} x_i.x_j (Eq. (3) with the sign the
text means; :func:`clop.losses.l_class`) has gradient ``grad_{x_i} L_class = 2 sum_{j != i} x_j``, so a
plain (autograd) gradient step ``x_i <- x_i - lr * grad_{x_i} L_class`` is the step above with

    eta = 2 (k - 1) * lr        (:func:`eta_from_autograd_lr`, :func:`autograd_lr_from_eta`).

``eta`` is the paper's learning rate throughout this package (Theorem 1, Figure 3: "2.0" and "2.1").

Exact reduction to k dimensions
-------------------------------
The step is a linear combination of the rows followed by a row scaling, so the row space of ``X0`` is
invariant. Writing ``X0 = C0 Q^T`` (QR of ``X0^T``; ``Q: (m, d)`` orthonormal columns, ``d = min(k, m)``),
every later ``X_t = C_t Q^T`` with ``C_t: (k, d)`` following the same update. Gram matrix, singular values,
mean norm and L_class of ``C_t`` and ``X_t`` are equal, so the engine simulates ``C`` (``reduced=True``,
the default) at cost O(k d) per run and step instead of O(k m). ``reduced=False`` runs the same code on
the full ``(k, m)`` rows (used by the tests to check the reduction).

Implementation of one step (float64)
------------------------------------
State per run: unnormalised rows ``z_i`` with tracked norms ``r_i = ||z_i||`` (``x_i = z_i / r_i``). With
``c = (eta k/(k-1)) / (1 + eta/(k-1)) = eta k / (k - 1 + eta)``, the normalised update is
``x_i' ∝ x_i - c mu``, i.e. ``z_i <- z_i - c r_i mu`` (one rank-one update) and
``r_i'^2 = r_i^2 (1 - 2 c x_i.mu + c^2 ||mu||^2)``. Rows are renormalised exactly every
``_RENORM_EVERY`` steps. Two codes take these steps (:mod:`simulations.lclass_engine`):

* the torch engine (CUDA, :func:`simulate` everywhere, and the CPU fallback): runs (trials x learning
  rates x k) stacked into ``(B, K, D)`` tensors, k < K padded with zero rows that a row mask keeps at
  zero; each step is a handful of batched tensor operations (two ``bmm`` and one ``addcmul_``) with no
  Python loop over runs. The runs are split into chunks of at most ``chunk_bytes`` of state (1 MiB on
  the CPU, within the per-core L2 cache; 1 GiB on CUDA), each advanced through all its steps before the
  next starts (time-blocking);
* the native kernel (:mod:`simulations.lclass_native`; :func:`sweep` and :func:`max_stable_lr` on the
  CPU, compiled on first use, the torch engine where no C compiler works): one run at a time through all
  its steps, its state in the L1/L2 cache, the dot products and the update in one pass and the next mean
  in a second pass over the same rows, with sums in a fixed order (the same bits on every machine).

Both make the same decisions (collapse step, decision step) on every run the tests and Figure 3 cover
(Figure 3's CSV files are byte-identical with either); they differ only in the order of additions inside
a sum (round-off). Both track each row's norm between exact normalisations and normalise a row that has
shrunk below :data:`simulations.lclass_native.DRIFT_R`, before the tracked norm's error can grow (an m < k
case that needed it is in :func:`simulations.lclass_engine._decide`).

Collapse criterion (used by the figures and the tests alike)
------------------------------------------------------------
*Complete collapse* means all embeddings at one point. For unit rows,
``(1/k) sum_i ||x_i - mu||^2 = 1 - ||mu||^2``, so a run is completely collapsed at step t when

    ||mu_t|| >= 1 - tol,     tol = COLLAPSE_TOL = 1e-6,

which bounds every ``||x_i - mu|| <= sqrt(2 k tol)`` (<= 0.015 for k = 100) and makes the top singular
value carry at least ``(1 - tol)^2`` of ``||X||_F^2 = k``. The criterion asks for the mean, not only for
rank one: co-linear "inverted pairs" ``(x, -x, x, -x, ...)`` have rank one but zero mean; they are global
minima of L_class (value -k for even k) and fixed points of the update (there ``y_i = (1 + eta/(k-1)) x_i``),
and the classes stay linearly separable by sign, so they count as *not* collapsed (a dimensional, not a
complete, collapse). The results store the first step at which the criterion held
(``collapse_step``); :func:`collapsed` reports whether it held at some step within the horizon.

Early decisions (``early_exit=True``). A run is decided when it has collapsed, or when its mean is so
small that it cannot collapse within the remaining steps: to first order in ``mu`` the step maps
``mu -> ((1 - c) I + c F) mu`` with ``F = (1/k) sum_i x_i x_i^T`` (eigenvalues in [0, 1]), so ``||mu||``
grows at most by ``g = max(1, |1 - c|)`` per step. A run with ``||mu_t|| < 1e-8`` and
``(max(||mu_t||, 1e-12) + 1e-16 (N - t)) g^(N - t) < 1e-4`` (round-off injection included) is declared
stable: even at the fastest linear growth it stays below 1e-4 at the horizon N, far from ``1 - tol``.
The tests check that early exit gives the same decisions as running every step.

Modules
-------
This module is the entry point; the code lives in :mod:`simulations.lclass_model` (the update, its
learning rate, starts, criterion, finite-horizon estimate), :mod:`simulations.lclass_engine` (stepping and
chunking), :mod:`simulations.lclass_native` (the CPU kernel), :mod:`simulations.lclass_simulate`
(:func:`simulate` and its records) and :mod:`simulations.lclass_search` (:func:`max_stable_lr`,
:func:`sweep`). Everything is importable from here; :func:`engine_name` says which code decides runs.

Example
-------
>>> res = simulate(30, 100, [2.0, 2.1], trials=1, steps=600, seed=0, device="cpu")
>>> collapsed(res).tolist()
[[False, True]]
"""

from __future__ import annotations

from simulations.lclass_engine import engine_name
from simulations.lclass_model import (
    COLLAPSE_TOL,
    autograd_lr_from_eta,
    collapse_contraction_factor,
    collapse_steps_estimate,
    eta_from_autograd_lr,
    fastest_collapse_steps,
    finite_horizon_threshold,
    initial_embeddings,
    is_collapsed,
    mean_growth_factor,
    reduce_coordinates,
    update_coefficients,
)
from simulations.lclass_search import SearchResult, max_stable_lr, sweep
from simulations.lclass_simulate import RECORDABLE, SimulationResult, collapsed, simulate

__all__ = [
    "COLLAPSE_TOL",
    "RECORDABLE",
    "update_coefficients",
    "eta_from_autograd_lr",
    "autograd_lr_from_eta",
    "initial_embeddings",
    "reduce_coordinates",
    "is_collapsed",
    "SimulationResult",
    "simulate",
    "collapsed",
    "SearchResult",
    "max_stable_lr",
    "sweep",
    "mean_growth_factor",
    "collapse_contraction_factor",
    "collapse_steps_estimate",
    "fastest_collapse_steps",
    "finite_horizon_threshold",
    "engine_name",
]
