"""Linearisation of the normalised gradient step (step, then renormalise) at its fixed points, with sympy.

Paper: CLOP, arXiv 2403.18699, Sec. 3.1 (Theorem 1, Lemma 1) and Appendices C-D. The update under study
moves every unit vector ``z_a`` (a row of ``Z: (P, D)``) by the Euclidean gradient of a loss and renormalises:

    z_a <- (z_a - lr g_a) / ||z_a - lr g_a||,        g_a = dL/dz_a.

**General mode formula** (:func:`step_factor_expr`). At a fixed point every g_a is radial, g_a = -c_a z_a
(``c_a = -z_a . g_a``); for the scale-invariant losses (those that normalise inside, e.g. InfoNCE) c = 0. On
the tangent space the Jacobian of the update is ``J = (I + lr C)^-1 (I - lr H_T)``, with ``H_T`` the Euclidean
Hessian projected on the tangent space and ``C = diag(c_a)``. On a common eigen-direction (H_T v = h v, C = c I)
the factor is ``(1 - lr h) / (1 + lr c)``. It reaches -1 at ``lr = 2 / (h - c)`` (:func:`critical_step_expr`).
The Riemannian Hessian on the product of spheres is ``H_T + C`` (the Weingarten term of the radial gradient),
so the textbook step of gradient descent with a projected gradient is ``2 / (h + c)``
(:func:`textbook_step_expr`): the renormalisation flips the sign of the radial term. The two agree for
scale-invariant losses (c = 0); for L_class (c = 2 at a zero-mean configuration) they differ by the factor
``(h + c) / (h - c) = K / (K - 2)`` (:func:`lclass_textbook_ratio_expr`). The general (non-uniform c) form,
``lr* = 2 / lambda_max(H_T - C)``, is what :mod:`simulations.rungs.linearise` computes numerically.

**L_class** (Eq. (3)) on K unit vectors, L = sum_{a != b} z_a . z_b: at a zero-mean configuration in R^D,
D >= K, the common translation out of the span has h = 2 (K - 1), c = 2, so lr* = 1/(K - 2), i.e. Appendix
D's ``eta = 2 (K - 1) lr`` equals 2 (K - 1)/(K - 2), :func:`theory.theorem1.critical_lr_expr`
(:func:`lclass_critical_eta_expr`). At complete collapse (all z_a = u), c = -2 (K - 1) and the
difference modes have h = -2: the factor (1 + 2 lr)/(1 - 2 (K - 1) lr) has modulus < 1 exactly above the same
eta (:func:`lclass_collapse_attraction_eta_expr`).

**InfoNCE, SupCon, DCL at a class-collapsed simplex** (:func:`simplex_mode_exprs`): V vertices of a regular
simplex (z_i . z_j = -1/(V - 1)), m coincident points per vertex; InfoNCE and DCL converge to V = N instances
with m = 2 views, SupCon (every sample labelled) to V = k classes with m = 2n. With E1 = exp(1/tau),
E2 = exp(-1/((V - 1) tau)) the softmax weight of one same-vertex point is p_s = E1/Z and of one other-vertex
point p_d = E2/Z, Z = (m - 1) E1 + (V - 1) m E2 (DCL, m = 2: the positive leaves the denominator,
Z = (V - 1) m E2, p_s = 0). The Hessian on the tangent space splits by symmetry into (all scale-invariant,
c = 0; eigenvalues per point):

* rotations and out-of-span vertex contrasts: 0;
* translation out of the span (the mode Theorem 1 bounds): 2 p_d / tau;
* within-vertex splits out of the span: (2/(tau V)) (p_d - p_s + 1/(m - 1));
* within-vertex splits in the span: the above + 2 p_d / (tau^2 (V - 1));
* vertex deformations in the span, irreducible part [V-2, 2] (V >= 4): 4 p_d / (tau^2 (V - 1));
* vertex deformations in the span, standard part: 2 p_d (V-2)/(tau (V-1)) + 2 p_d V/(tau^2 (V-1)^2)
  - m p_d^2 V (V-2)/(tau^2 (V-1)^2).

The derivation is in ``docs/ladder.md``; the tests compare every family with the numerical Hessian of
:mod:`clop.losses`. The critical step is 2 / (largest family) (:func:`simplex_critical_step`), and the step at
which the translation mode alone flips, tau / p_d, is Theorem 1's mechanism carried over to these losses
(:func:`simplex_translation_step`).

**Complete collapse** of the same losses (Lemma 1; :func:`collapse_mode_exprs`): all P = V m points equal.
The gradient vanishes, and the tangent Hessian has vertex contrasts at -2/(tau (P - 1)) (negative: a saddle,
not a minimum) and within-vertex splits at (2/(tau P)) (1/(m - 1) - 1/(P - 1)). With c = 0 the factor on the
negative family is 1 + 2 lr /(tau (P - 1)) > 1 for every lr > 0: the collapsed state never attracts the
normalised step of these losses (:func:`collapse_never_attracts`).

Public symbols: :data:`lr`, :data:`h`, :data:`c`, :data:`K`, :data:`V`, :data:`m`, :data:`tau`.
"""

from __future__ import annotations

import functools
import math

import sympy as sp

from theory import theorem1

__all__ = [
    "lr",
    "h",
    "c",
    "K",
    "V",
    "m",
    "tau",
    "step_factor_expr",
    "critical_step_expr",
    "textbook_step_expr",
    "textbook_ratio_expr",
    "lclass_critical_eta_expr",
    "lclass_textbook_eta_expr",
    "lclass_textbook_ratio_expr",
    "lclass_collapse_factor_expr",
    "lclass_collapse_attraction_eta_expr",
    "softmax_weights",
    "simplex_mode_exprs",
    "collapse_mode_exprs",
    "collapse_never_attracts",
    "SIMPLEX_MODES",
    "simplex_modes",
    "simplex_critical_step",
    "simplex_translation_step",
    "lclass_critical_step",
    "lclass_textbook_step",
]

#: Learning rate of the step (the raw multiplier of the gradient).
lr = sp.Symbol("lr", positive=True)
#: An eigenvalue of the tangent-projected Euclidean Hessian H_T.
h = sp.Symbol("h", real=True)
#: The radial gradient coefficient at the fixed point, c = -z . g (one value shared by the points).
c = sp.Symbol("c", real=True)
#: Number of unit vectors of L_class.
K = sp.Symbol("K", positive=True)
#: Number of vertices of the simplex (classes or instances).
V = sp.Symbol("V", positive=True)
#: Number of coincident points per vertex (views x instances).
m = sp.Symbol("m", positive=True)
#: Temperature.
tau = sp.Symbol("tau", positive=True)

_w = sp.Symbol("w", positive=True)  # auxiliary: w = h - c > 0


# ------------------------------------------------------------------------------------------------
# General mode formula


def step_factor_expr() -> sp.Expr:
    """(1 - lr h)/(1 + lr c): the factor of the normalised step on a mode with Hessian eigenvalue h, radial c.

    Derived from y = z - lr g, g(z + v) = -c z + H v: the tangent part of y is v - lr H v, and the
    renormalisation divides it by ||y|| = 1 + lr c to first order.
    """
    return (1 - lr * h) / (1 + lr * c)


@functools.lru_cache(maxsize=None)
def critical_step_expr() -> sp.Expr:
    """The lr > 0 at which the factor reaches -1: 2/(h - c) (valid for h > c), solved by sympy."""
    sols = sp.solve(sp.Eq(step_factor_expr(), -1), lr)
    if len(sols) != 1:
        raise RuntimeError(f"expected one solution, sympy gave {sols}")
    return sp.simplify(sols[0])


def textbook_step_expr() -> sp.Expr:
    """2 / lambda of the Riemannian Hessian H_T + C on the same mode: 2/(h + c)."""
    return 2 / (h + c)


@functools.lru_cache(maxsize=None)
def textbook_ratio_expr() -> sp.Expr:
    """critical / textbook step: (h + c)/(h - c)."""
    return sp.simplify(critical_step_expr() / textbook_step_expr())


# ------------------------------------------------------------------------------------------------
# L_class


def _lclass_zero_mean() -> dict:
    """Mode of the translation out of the span at a zero-mean configuration of K points: h = 2(K-1), c = 2."""
    return {h: 2 * (K - 1), c: 2}


@functools.lru_cache(maxsize=None)
def lclass_critical_eta_expr() -> sp.Expr:
    """Appendix D's eta = 2 (K-1) lr at the critical step of the translation mode: 2 (K - 1)/(K - 2)."""
    return sp.factor(sp.simplify(2 * (K - 1) * critical_step_expr().subs(_lclass_zero_mean())))


@functools.lru_cache(maxsize=None)
def lclass_textbook_eta_expr() -> sp.Expr:
    """Appendix D's eta at 2/lambda_max of the Riemannian Hessian: 2 (K - 1)/K."""
    return sp.factor(sp.simplify(2 * (K - 1) * textbook_step_expr().subs(_lclass_zero_mean())))


@functools.lru_cache(maxsize=None)
def lclass_textbook_ratio_expr() -> sp.Expr:
    """critical / textbook for L_class: K/(K - 2)."""
    return sp.factor(sp.simplify(textbook_ratio_expr().subs(_lclass_zero_mean())))


@functools.lru_cache(maxsize=None)
def lclass_collapse_factor_expr() -> sp.Expr:
    """Factor of a difference mode at complete collapse of L_class (h = -2, c = -2 (K - 1))."""
    return sp.simplify(step_factor_expr().subs({h: -2, c: -2 * (K - 1)}))


@functools.lru_cache(maxsize=None)
def lclass_collapse_attraction_eta_expr() -> sp.Expr:
    """Appendix D's eta above which the collapsed state attracts: where the collapse factor reaches -1."""
    f = lclass_collapse_factor_expr()
    sols = sp.solve(sp.Eq(f, -1), lr)
    if len(sols) != 1:
        raise RuntimeError(f"expected one solution, sympy gave {sols}")
    return sp.factor(sp.simplify(2 * (K - 1) * sols[0]))


# ------------------------------------------------------------------------------------------------
# InfoNCE / SupCon / DCL at a class-collapsed simplex


def softmax_weights(positive_in_denominator: bool = True) -> tuple[sp.Expr, sp.Expr]:
    """(p_s, p_d): softmax weight of one same-vertex and of one other-vertex point at the simplex.

    ``positive_in_denominator=False`` is DCL (m = 2): the partner leaves the denominator, p_s = 0.
    """
    e1 = sp.exp(1 / tau)
    e2 = sp.exp(-1 / ((V - 1) * tau))
    if positive_in_denominator:
        z = (m - 1) * e1 + (V - 1) * m * e2
        return e1 / z, e2 / z
    z = (V - 1) * m * e2
    return sp.Integer(0), e2 / z


SIMPLEX_MODES = ("translation_out", "split_out", "split_in", "deform_irrep", "deform_standard")
"""Names of the non-zero mode families at the simplex, in the order of :func:`simplex_mode_exprs`."""


@functools.lru_cache(maxsize=None)
def simplex_mode_exprs(positive_in_denominator: bool = True) -> dict[str, sp.Expr]:
    """The tangent-Hessian eigenvalue of every non-zero mode family at the simplex (module docstring).

    Per point; loss = mean over the V m anchors as in :mod:`clop.losses`. The within-vertex families come
    from the Gram weights w_s = (p_s - 1/(m-1))/(tau V m) (same vertex) and w_d = p_d/(tau V m) (other vertex):
    out of the span a split has 2 m (w_d - w_s); in the span the second derivative of each anchor's log-sum-exp
    adds 2 p_d/(tau^2 (V - 1)), because sum_j (delta . z_j)^2 = V/(V - 1) |delta|^2 for a simplex frame.
    """
    p_s, p_d = softmax_weights(positive_in_denominator)
    w_s = (p_s - 1 / (m - 1)) / (tau * V * m)
    w_d = p_d / (tau * V * m)
    split_out = sp.simplify(2 * m * (w_d - w_s))
    return {
        "translation_out": 2 * p_d / tau,
        "split_out": split_out,
        "split_in": split_out + 2 * p_d / (tau**2 * (V - 1)),
        "deform_irrep": 4 * p_d / (tau**2 * (V - 1)),
        "deform_standard": 2 * p_d * (V - 2) / (tau * (V - 1))
        + 2 * p_d * V / (tau**2 * (V - 1) ** 2)
        - m * p_d**2 * V * (V - 2) / (tau**2 * (V - 1) ** 2),
    }


@functools.lru_cache(maxsize=None)
def collapse_mode_exprs() -> dict[str, sp.Expr]:
    """Tangent-Hessian eigenvalues at complete collapse of SupCon/InfoNCE (P = V m points, all equal).

    All Gram entries are 1, so the first-order Gram change vanishes on the tangent space and only the Gram
    weights enter: negative weight -1/(tau P) (1/(m-1) - 1/(P-1)) between same-vertex points, 1/(tau P (P-1))
    between the others, each row summing to 0.
    """
    p = V * m
    w_same = (1 / (p - 1) - 1 / (m - 1)) / (tau * p)
    w_other = 1 / (tau * p * (p - 1))
    return {
        "vertex_contrast": sp.simplify(2 * ((m - 1) * w_same - m * w_other)),
        "within_vertex": sp.simplify(-2 * w_same),
    }


@functools.lru_cache(maxsize=None)
def collapse_never_attracts() -> tuple[bool, sp.Expr]:
    """(proven, factor): the factor 1 - lr h of the vertex-contrast mode at collapse exceeds 1 for every lr > 0.

    Proven by sympy: the eigenvalue is -2/(tau (P - 1)) < 0 for P = V m > 1.
    """
    lam = collapse_mode_exprs()["vertex_contrast"]
    expected = -2 / (tau * (V * m - 1))
    factor = sp.simplify(1 - lr * lam)
    proven = sp.simplify(lam - expected) == 0
    return bool(proven), factor


# ------------------------------------------------------------------------------------------------
# Float API


@functools.lru_cache(maxsize=None)
def _lambdified_modes(positive_in_denominator: bool):
    exprs = simplex_mode_exprs(positive_in_denominator)
    return {name: sp.lambdify((V, m, tau), e, modules="math") for name, e in exprs.items()}


def _check_simplex_args(vertices: int, per_vertex: int, temperature: float, dcl: bool) -> None:
    if isinstance(vertices, bool) or not isinstance(vertices, int) or vertices < 3:
        raise ValueError(f"vertices must be an integer >= 3; got {vertices!r}")
    if isinstance(per_vertex, bool) or not isinstance(per_vertex, int) or per_vertex < 2:
        raise ValueError(f"per_vertex must be an integer >= 2 (two views); got {per_vertex!r}")
    if dcl and per_vertex != 2:
        raise ValueError(f"per_vertex must be 2 for DCL (instance-level optimum); got {per_vertex!r}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0; got {temperature!r}")


def simplex_modes(vertices: int, per_vertex: int, temperature: float, *, dcl: bool = False) -> dict[str, float]:
    """Float values of :func:`simplex_mode_exprs` (``deform_irrep`` omitted for V = 3, where it does not exist)."""
    _check_simplex_args(vertices, per_vertex, temperature, dcl)
    out = {name: float(fn(vertices, per_vertex, float(temperature)))
           for name, fn in _lambdified_modes(not dcl).items()}
    if vertices == 3:
        out.pop("deform_irrep")
    return out


def simplex_critical_step(vertices: int, per_vertex: int, temperature: float, *, dcl: bool = False) -> tuple[float, str]:
    """(2 / largest mode eigenvalue, name of that mode): the predicted critical lr at the simplex."""
    modes = simplex_modes(vertices, per_vertex, temperature, dcl=dcl)
    name = max(modes, key=modes.get)
    return 2.0 / modes[name], name


def simplex_translation_step(vertices: int, per_vertex: int, temperature: float, *, dcl: bool = False) -> float:
    """2 / (translation eigenvalue) = tau / p_d: where the mean mode that Theorem 1 bounds flips."""
    return 2.0 / simplex_modes(vertices, per_vertex, temperature, dcl=dcl)["translation_out"]


def lclass_critical_step(points: int) -> float:
    """Critical raw lr of L_class on ``points`` unit vectors at a zero-mean configuration: 1/(K - 2)."""
    if isinstance(points, bool) or not isinstance(points, int) or points < 3:
        raise ValueError(f"points must be an integer >= 3; got {points!r}")
    return float(theorem1.critical_lr(points)) / (2.0 * (points - 1))


def lclass_textbook_step(points: int) -> float:
    """2/lambda_max of the Riemannian Hessian for L_class, raw lr: 1/K."""
    if isinstance(points, bool) or not isinstance(points, int) or points < 3:
        raise ValueError(f"points must be an integer >= 3; got {points!r}")
    return 1.0 / points
