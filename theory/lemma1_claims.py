"""Verdicts on Lemma 1 of the CLOP paper (arXiv 2403.18699, Sec. 3.1; proof in Appendix C).

:data:`CLAIMS` lists one small function per claim, in the report's order; the computations live in
:mod:`theory.lemma1` (float64 autograd and sympy), and each verdict is computed from the values its
detail prints.
"""

from __future__ import annotations

from theory import lemma1 as l1
from theory.verdict import Claim, equal

__all__ = ["CLAIMS"]


def stationary_claim(fast: bool = False) -> Claim:
    grads = l1.gradient_norms()
    ugrads = l1.normalised_gradient_norms()
    stationary = grads["all_equal"] < 1e-12 and grads["colinear"] < 1e-12 and grads["random"] > 1e-3
    return Claim(
        "L1-stationary",
        "Lemma 1 / Appendix C: at all-equal or co-linear embeddings the InfoNCE gradient w.r.t. the unnormalised embeddings vanishes",
        "float64 autograd of clop.losses.info_nce (2N = 8 views, D = 3, tau = 0.5) at all-equal (random positive lengths), co-linear (+-), random",
        "holds" if stationary else "fails",
        f"max |grad|: all-equal {grads['all_equal']:.1e}, co-linear {grads['colinear']:.1e}, random {grads['random']:.2f}; w.r.t. the normalised u: "
        f"all-equal {ugrads['all_equal']:.1e}, co-linear {ugrads['colinear']:.2f} (radial; tangential part {ugrads['colinear_tangential']:.0e})",
        where="Sec. 3.1, Lemma 1; Appendix C",
    )


def minima_claim(fast: bool = False) -> Claim:
    h_eq = l1.collapse_hessian()
    h_col = l1.collapse_hessian(config="colinear")
    net = l1.network_hessian()
    saddle = h_eq["n_negative"] > 0 and h_col["n_negative"] > 0 and net["n_negative"] > 0
    return Claim(
        "L1-minima",
        "'there exist infinitely many local minima where all embeddings produced by f are all equal or co-linear'",
        "torch.autograd.functional.hessian of info_nce w.r.t. the 2N x D unnormalised embeddings (N = 3, D = 3), and w.r.t. the head W of a "
        "collapsed network f(x) = W tanh(V x) + b, W = 0",
        "fails" if saddle else "holds",
        f"stationary but saddles: embedding Hessian min eigenvalue {h_eq['min_eig']:.3f} ({h_eq['n_negative']} negative) at all-equal, "
        f"{h_col['min_eig']:.3f} ({h_col['n_negative']} negative) at co-linear; network head Hessian min {net['min_eig']:.3f}. "
        "The proof shows only zero gradient; a family f that cannot move its outputs apart would make collapse trivially minimal",
        where="Sec. 3.1, Lemma 1",
    )


def p_star_claim(fast: bool = False) -> Claim:
    ps = l1.p_star()
    pn = l1.p_star_numeric()
    i_sym = list(ps["P_star"].free_symbols)[0]
    prob_ok = abs(pn["prob_positive"] - float(ps["P_star"].subs(i_sym, pn["views"]))) < 1e-12
    loss_ok = abs(pn["loss"] - float(ps["loss_at_collapse"].subs(i_sym, pn["views"]))) < 1e-12
    return Claim(
        "L1-pstar",
        "Appendix C: at collapse P_i = P_j(i) = P_a = -log 1/(|I| - 1) := P*",
        "sympy: softmax of |I| - 1 equal logits; float64 softmax and info_nce at the all-equal configuration",
        "holds with correction" if (not equal(ps["P_star"], ps["paper_P_star"])) and prob_ok and loss_ok else "fails",
        f"derived P* = {ps['P_star']} (numerically {pn['prob_positive']:.6f} for |I| = {pn['views']}); -log 1/(|I|-1) is the loss there, "
        f"not the probability; the zero-gradient display holds for any P* (coefficient {ps['gradient_coefficient']}); appendix heading says 'Theorem 1'",
        {"derived P*": ps["P_star"], "printed P*": ps["paper_P_star"], "loss at collapse": ps["loss_at_collapse"]},
        where="Appendix C (P*)",
    )


CLAIMS = [stationary_claim, minima_claim, p_star_claim]
"""The Lemma 1 claims in the report's order; each ``f(fast) -> Claim`` (``fast`` is not used: every check
is small)."""
