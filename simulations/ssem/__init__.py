"""SSEM's class-collapse boundary checked by simulation: free embeddings trained by the normalised step over an
(alpha, tau) grid (Lee et al. 2025, arXiv 2503.08203; the boundary of :mod:`theory.ssem`).

Modules: :mod:`simulations.ssem.loss` (the SSEM loss of many runs at once, each with its own alpha and tau),
:mod:`simulations.ssem.grid` (the training and the measurements), :mod:`simulations.ssem.report` (verdicts,
claims, ssem_grid.md, the figure). The script is ``simulations/ssem_grid.py``.
"""
