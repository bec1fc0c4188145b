"""Numerical experiments of "Preventing collapse in contrastive learning with orthonormal prototypes"
(arXiv 2403.18699): the L_class engine (:mod:`simulations.lclass`, Sec. 3), the synthetic 3-D experiment
(:mod:`simulations.ffn`, Sec. 4 and Appendix B), and one script per paper figure or table
(``lr_bound.py``: Figure 3; ``dimensional_collapse.py``: Figure 4; ``synthetic_ffn.py``: Figure 5 and
Table 5; ``table5_seeds.py``: the seed study); :mod:`simulations.native_build` compiles, caches and checks
their native kernels. Importing a module runs nothing.
"""
