"""Verdicts on L_class (Eq. (3)), its optimum and rank (Sec. 3.2, Figure 4) and Lemma 2 (proof in Appendix E)
of the CLOP paper (arXiv 2403.18699).

:data:`CLAIMS` lists one small function per claim, in the report's order; the computations live in
:mod:`theory.lclass`, and each verdict is computed from the values its detail prints.
"""

from __future__ import annotations

import sympy as sp

from theory import lclass as lc
from theory.verdict import Claim, equal

__all__ = ["CLAIMS"]


def identity_claim(fast: bool = False) -> Claim:
    before, unit = lc.identity_symbolic_k()
    explicit = lc.identity_explicit()
    return Claim(
        "LC-identity",
        "(used throughout Section 3.2) sum_{i != j} x_i.x_j = ||sum_i x_i||^2 - k for unit x_i",
        "sympy Sums over i, j = 1..k with symbolic k and symbolic Gram entries; and a polynomial identity in symbolic vectors of R^3 for k = 2..6",
        "holds" if equal(unit, lc.k) and explicit else "fails",
        f"||sum x||^2 - sum_(i!=j) = {before} = {unit} for symbolic k; explicit polynomial identity k = 2..6: {explicit}",
        {"||sum x_i||^2 - sum_{i != j} G_ij": before, "with G_ii = 1": unit},
        where="Sec. 3.2 (sum identity)",
    )


def sign_claim(fast: bool = False) -> Claim:
    signs = lc.printed_sign_collapse_expr()
    return Claim(
        "LC-sign",
        "Eq. (3): L_class(X) := - sum_{i != j} [X^T X]_ij, minimised, optimum -k",
        "from the identity and 0 <= ||sum x_i||^2 <= k^2 (sympy)",
        "holds with correction" if equal(signs["text_sign_min"], -lc.k) and equal(signs["printed_sign_min"], -lc.k * (lc.k - 1)) else "fails",
        f"+sum_(i!=j) has minimum {signs['text_sign_min']} (zero sum), as the text says; the printed '-' sign has minimum "
        f"{signs['printed_sign_min']} at complete collapse (its value at zero sum is {signs['printed_sign_at_zero_sum']}): drop the minus",
        signs,
        where="Sec. 3.1, Eq. (3)",
    )


def optimum_claim(fast: bool = False) -> Claim:
    by: dict[str, list[dict]] = {}
    for rw in lc.configurations_report():
        by.setdefault(rw["configuration"], []).append(rw)
    etf_ok = all(abs(rw["l_class"] + rw["k"]) < 1e-9 and abs(rw["l_class_loop"] + rw["k"]) < 1e-9 for rw in by["simplex ETF"])
    inv_ok = all(abs(rw["l_class"] + rw["k"]) < 1e-9 for rw in by["inverted groups (pairs)"])
    orth_zero = all(abs(rw["l_class"]) < 1e-9 for rw in by["orthonormal"])
    return Claim(
        "LC-optimum",
        "Section 3.2: simplex ETF and 'inverted groups' achieve the optimum -k of L_class; the orthogonal arrangement is the most separable (not claimed optimal)",
        "sympy value of the ETF Gram matrix (symbolic k); clop.losses.l_class and a double loop on clop.prototypes.simplex_etf / orthonormal and "
        "pairs (v, -v), k in {4, 6, 10}, m = 12",
        "holds" if etf_ok and inv_ok and orth_zero and equal(lc.etf_value_expr(), -lc.k) else "fails",
        f"ETF: {lc.etf_value_expr()} (symbolic) and numerically; inverted pairs -k with rank k/2 "
        f"({[rw['rank'] for rw in by['inverted groups (pairs)']]}); orthonormal 0; minimisers = exactly the zero-sum unit configurations",
        {"ETF value": lc.etf_value_expr()},
        where="Sec. 3.2 (optimum of L_class)",
    )


def rank_claim(fast: bool = False) -> Claim:
    desc = lc.descent_rank_check(k_values=(5, 10) if fast else (5, 10, 30))
    rank_ok = all(rw["rank"] == rw["k"] - 1 and abs(rw["l_class"] + rw["k"]) < 1e-9 and rw["gram_spread"] > 1e-3 for rw in desc)
    return Claim(
        "LC-rank",
        "Section 3.2 / Figure 4: minimising L_class by gradient descent converges to a zero-mean subspace of rank k - 1, not equidistant",
        "every minimiser has sum x_i = 0, a linear dependency, so rank <= k-1; Appendix D step (eta = 1) from Gaussian starts in R^100, "
        "k in {5, 10, 30}, 3 seeds each",
        "holds" if rank_ok else "fails",
        f"descent reached L_class = -k with rank k-1 and unequal similarities (spread >= {min(rw['gram_spread'] for rw in desc):.2f}) in all "
        f"{len(desc)} runs; but not every minimiser has rank k-1 (inverted pairs: k/2)",
        where="Sec. 3.2, Figure 4",
    )


def lemma2_claim(fast: bool = False) -> Claim:
    lag = lc.lemma2_lagrange()
    cs = lc.lemma2_cauchy_schwarz_identity()
    n2 = lc.lemma2_numeric(draws=100 if fast else 200)
    l2_ok = lag["is_minus_s_hat"] and cs and n2["max_random_improvement"] <= 1e-12 and n2["max_pgd_improvement"] <= 1e-12 and n2["max_span_residual"] < 1e-12
    return Claim(
        "L2-statement",
        "Lemma 2: for linearly independent unit x_1..x_{k-1}, the x_k minimising L_class is linearly dependent on them",
        "sympy Lagrange multipliers for min 2 x.s on the unit sphere (s = sum_{i<k} x_i) and the identity 2x.s + 2||s|| = ||s|| ||x + s/||s||||^2; "
        f"{n2['draws']} random draws (k = {n2['k']}, m = {n2['m']}) vs 2048 random candidates and projected gradient descent",
        "holds" if l2_ok else "fails",
        f"unique minimiser x_k = -s/||s|| (in the span; s != 0 by independence), value -2||s||; no competitor beat it "
        f"(best random candidate >= {-n2['max_random_improvement']:.2f} above it; projected GD reaches it to {n2['max_pgd_gap']:.0e}); out-of-span residual {n2['max_span_residual']:.0e}",
        {"minimiser": sp.Matrix(lag["best_x"]), "minimum of 2 x.s": lag["best_value"]},
        where="Sec. 3.2, Lemma 2",
    )


def lemma2_proof_claim(fast: bool = False) -> Claim:
    ae = lc.appendix_e_numeric(draws=1000 if fast else 2000)
    eq = lc.appendix_e_equality_case()
    eq_case = abs(eq["l_class_before"] - eq["l_class_after"]) < 1e-12 and eq["rank_after"] == eq["rank_before"] - 1
    return Claim(
        "L2-proof",
        "Appendix E (headed 'Proof of Theorem 2'): replacing x_k by its normalised in-span part (sign-flipped if needed) gives rank k-1 and L(X) > L(X')",
        f"float64 construction on {ae['draws']} random full-rank X (k = {ae['k']}, m = {ae['m']}); a constructed case with sum_i x_i.x_k^par = 0",
        "holds with correction" if ae["fraction_strictly_lower"] == 1.0 and ae["max_rank_after"] == ae["k"] - 1 and eq_case else "fails",
        f"strictly lower in {ae['fraction_strictly_lower']:.0%} of draws, rank k-1 after; but when sum_i x_i.x_k^par = 0 (measure zero) L(X') = L(X), "
        f"equality not '>' ({eq['l_class_before']:.4f} both); the heading should read Lemma 2",
        where="Appendix E",
    )


CLAIMS = [identity_claim, sign_claim, optimum_claim, rank_claim, lemma2_claim, lemma2_proof_claim]
"""The L_class and Lemma 2 claims in the report's order; each ``f(fast) -> Claim``."""
