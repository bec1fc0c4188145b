"""The simplex-to-simplex family of embeddings and SSEM's loss on it in closed form (sympy).

Paper: Lee, Oh, Lee & Sohn (2025), "A Theoretical Framework for Preventing Class Collapse in Supervised
Contrastive Learning", AISTATS, arXiv 2503.08203 (the Simplex-to-Simplex Embedding Model, SSEM). The paper's
theorem text was not available to us: the family below is our reading of the model its abstract names, and
every expression here is derived from the loss :func:`clop.losses.ssem`, not taken from the paper.

The family, for k >= 2 classes of n >= 2 samples each and a spread s in [0, 1]:

    u_ci = sqrt(1 - s^2) m_c + s e_ci,          c = 1..k, i = 1..n

with m_1..m_k unit vectors on a regular simplex (m_c . m_d = -1/(k-1), c != d), for each class c unit
vectors e_c1..e_cn on a regular simplex (e_ci . e_cj = -1/(n-1), i != j), the simplices of different classes
mutually orthogonal and all of them orthogonal to the m's. Then ||u_ci||^2 = (1 - s^2) + s^2 = 1: the unit
norm fixes the length of the class mean, (1/n) sum_i u_ci = sqrt(1 - s^2) m_c, and s^2 is the within-class
variance (1/n) sum_i ||u_ci - mean_c||^2. s = 0 is class collapse (every sample on its class mean); at s = 1
the class means vanish and the classes are k orthogonal n-simplices. Both views are equal (z1 = z2 = u).

The Gram matrix takes four values, by the relation of a row b to an anchor a, with rho = s^2:

    "self"  (b = a):                  1                          1 per anchor
    "twin"  (b = a's other view):     1                          1
    "class" (same class, other sample): 1 - rho n/(n-1)           2(n-1)
    "other" (another class):          -(1 - rho)/(k-1)           2n(k-1)

Every anchor sees the same multiset, so the per-anchor means of the ``"anchors"`` convention and the global
pair means of the ``"pairs"`` convention are both a single anchor's value. Each part of the loss is

    L_part = log sum_{t in denominator} count_t exp(g_t / tau) - sum_{t in positives} count_t g_t / (tau sum count_t)

and the loss is (1 - alpha) L_sup + alpha L_self. The expressions are kept in a scaled form,
log sum count_t exp(g_t/tau) = 1/tau + log sum count_t exp((g_t - 1)/tau), whose exponentials are at most 1
(g_t <= 1), so that the lambdified numerics neither overflow nor lose the small terms at small tau;
:func:`scaling_identity` proves the two forms equal.

Shapes: :func:`family_embeddings` returns ``U: (k n, k + k n)`` float64 rows u_ci (class-major) and
``labels: (k n,)``. Symbols: :data:`rho`, :data:`s`, :data:`alpha`, :data:`tau`, :data:`k`, :data:`n`.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import sympy as sp
import torch

from clop.util.checks import check_choice, check_size, is_finite_real

__all__ = [
    "rho",
    "s",
    "alpha",
    "tau",
    "k",
    "n",
    "CONVENTIONS",
    "PAIR_TYPES",
    "Convention",
    "gram_entry",
    "count_per_anchor",
    "terms_expr",
    "loss_expr",
    "scaling_identity",
    "family_embeddings",
    "family_loss",
    "family_loss_slope",
]

rho = sp.Symbol("rho", nonnegative=True)
s = sp.Symbol("s", nonnegative=True)
alpha = sp.Symbol("alpha", nonnegative=True)
tau = sp.Symbol("tau", positive=True)
k = sp.Symbol("k", positive=True)
n = sp.Symbol("n", positive=True)

PAIR_TYPES = ("self", "twin", "class", "other")


@dataclasses.dataclass(frozen=True)
class Convention:
    """Which pair types enter the denominators and the positives of each part (see :func:`clop.losses.ssem`)."""

    denominator: tuple[str, ...]
    self_positives: tuple[str, ...]
    sup_positives: tuple[str, ...]


CONVENTIONS = {
    # CIFAR code: softmax over all 2N rows with the self term kept; L_self over same-sample pairs (a = b
    # included), L_sup over same-class pairs of different samples.
    "pairs": Convention(PAIR_TYPES, ("self", "twin"), ("class",)),
    # ImageNet code (SupCon-style): the anchor out of its denominator and positives; SupCon's positives
    # include the anchor's own other view.
    "anchors": Convention(("twin", "class", "other"), ("twin",), ("twin", "class")),
}


def gram_entry(kind: str) -> sp.Expr:
    """u_a . u_b for a row b of relation ``kind`` to the anchor a (one of :data:`PAIR_TYPES`), in rho = s^2."""
    return {
        "self": sp.Integer(1),
        "twin": sp.Integer(1),
        "class": 1 - rho * n / (n - 1),
        "other": -(1 - rho) / (k - 1),
    }[kind]


def count_per_anchor(kind: str) -> sp.Expr:
    """How many of the 2kn rows stand in relation ``kind`` to one anchor."""
    return {"self": sp.Integer(1), "twin": sp.Integer(1), "class": 2 * (n - 1), "other": 2 * n * (k - 1)}[kind]


def _part(denominator: tuple[str, ...], positives: tuple[str, ...], scaled: bool) -> sp.Expr:
    if scaled:
        lse = 1 / tau + sp.log(sum(count_per_anchor(t) * sp.exp((gram_entry(t) - 1) / tau) for t in denominator))
    else:
        lse = sp.log(sum(count_per_anchor(t) * sp.exp(gram_entry(t) / tau) for t in denominator))
    weight = sum(count_per_anchor(t) for t in positives)
    return lse - sum(count_per_anchor(t) * gram_entry(t) for t in positives) / (tau * weight)


def _convention(convention: str) -> Convention:
    return CONVENTIONS[check_choice("convention", convention, tuple(CONVENTIONS))]


@functools.lru_cache(maxsize=None)
def terms_expr(convention: str, scaled: bool = True) -> tuple[sp.Expr, sp.Expr]:
    """(L_sup, L_self) of ``convention`` on the family, functions of rho, tau, k, n (scaled form by default)."""
    spec = _convention(convention)
    return _part(spec.denominator, spec.sup_positives, scaled), _part(spec.denominator, spec.self_positives, scaled)


@functools.lru_cache(maxsize=None)
def loss_expr(convention: str, scaled: bool = True) -> sp.Expr:
    """L(rho, alpha, tau, k, n) = (1 - alpha) L_sup + alpha L_self on the family; substitute rho = s^2 for L(s)."""
    sup, self_ = terms_expr(convention, scaled)
    return (1 - alpha) * sup + alpha * self_


@functools.lru_cache(maxsize=None)
def scaling_identity(convention: str) -> bool:
    """The scaled and the plain forms are equal: sum count exp(g/tau) - e^{1/tau} sum count exp((g-1)/tau)
    expands to 0 (so the two logs differ by exactly 1/tau)."""
    spec = _convention(convention)
    plain = sum(count_per_anchor(t) * sp.exp(gram_entry(t) / tau) for t in spec.denominator)
    scaled = sum(count_per_anchor(t) * sp.exp((gram_entry(t) - 1) / tau) for t in spec.denominator)
    return sp.expand(plain - sp.exp(1 / tau) * scaled) == 0


def _simplex_rows(m: int) -> torch.Tensor:
    """m unit rows in R^m on a regular simplex (pairwise dot -1/(m-1)): the centred basis, normalised. float64."""
    rows = torch.eye(m, dtype=torch.float64) - 1.0 / m
    return rows / math.sqrt((m - 1) / m)


def family_embeddings(k: int, n: int, s: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The family's k n unit rows u_ci = sqrt(1 - s^2) m_c + s e_ci, class-major: (U (k n, k + k n), labels (k n,)).

    The class means live in the first k coordinates, class c's instance simplex in coordinates
    k + c n .. k + (c + 1) n - 1. float64 on the CPU.
    """
    k = check_size("k", k, 2)
    n = check_size("n", n, 2)
    if not (is_finite_real(s) and 0.0 <= s <= 1.0):
        raise ValueError(f"s must be a real number in [0, 1]; got {s!r}")
    means, instances = _simplex_rows(k), _simplex_rows(n)
    u = torch.zeros(k * n, k + k * n, dtype=torch.float64)
    for c in range(k):
        rows = slice(c * n, (c + 1) * n)
        u[rows, :k] = math.sqrt(1.0 - s * s) * means[c]
        u[rows, k + c * n : k + (c + 1) * n] = s * instances
    return u, torch.arange(k).repeat_interleave(n)


@functools.lru_cache(maxsize=None)
def _lambdified(convention: str, derivative: bool):
    expr = loss_expr(convention)
    if derivative:
        expr = sp.diff(expr, rho)
    return sp.lambdify((rho, alpha, tau, k, n), expr, "numpy")


def family_loss(s_values, alpha_value: float, tau_value: float, k_value: int, n_value: int, convention: str = "pairs"):
    """The closed form L(s) evaluated in float64 (numpy); ``s_values`` a float or an array of spreads in [0, 1]."""
    r = np.asarray(s_values, dtype=np.float64) ** 2
    return _lambdified(convention, False)(r, float(alpha_value), float(tau_value), int(k_value), int(n_value))


def family_loss_slope(
    rho_values, alpha_value: float, tau_value: float, k_value: int, n_value: int, convention: str = "pairs"
):
    """dL/d(rho) of the closed form, rho = s^2, evaluated in float64 (numpy)."""
    r = np.asarray(rho_values, dtype=np.float64)
    return _lambdified(convention, True)(r, float(alpha_value), float(tau_value), int(k_value), int(n_value))
