"""The theory of the CLOP paper (arXiv 2403.18699) re-derived with sympy and checked in float64.

* :mod:`theory.theorem1`, :mod:`theory.theorem1_numerics`  Theorem 1's learning-rate bound (Sec. 3.1,
  Appendix D): the derivation, the exact critical rate, and their float64 checks;
* :mod:`theory.lemma1`   Lemma 1 (Sec. 3.1, Appendix C): stationarity and the Hessian at collapse;
* :mod:`theory.lclass`   L_class (Eq. (3)), its optimum and rank (Sec. 3.2), Lemma 2 (Appendix E);
* :mod:`theory.theorem1_claims`, :mod:`theory.lemma1_claims`, :mod:`theory.lclass_claims`  one function
  per claim, each returning a :class:`theory.verdict.Claim` with its computed verdict;
* :mod:`theory.report`   the list of claims and its table / JSON / Markdown; ``python -m theory`` runs it;
* :mod:`theory.figure`   the bounds against k (``paper_figures/theorem1_bound.png``);
* :mod:`theory.paper_data`  the numbers the paper prints, with where they are printed.
"""
