"""The synthetic 3-D experiment of "Preventing collapse in contrastive learning with orthonormal
prototypes" (arXiv 2403.18699, Sec. 4, Figure 5; Appendix B, Table 5).

Modules (import every name from the module that defines it; this package re-exports nothing):

* :mod:`simulations.ffn.data`: the data, its two regimes and the reference classifiers;
* :mod:`simulations.ffn.train`: the network's initialisation, the views, the training of many seeds by one of
  the engines, and the evaluation;
* :mod:`simulations.ffn.grads`: the closed-form gradients of the Table 5 losses and the CLOP term;
* :mod:`simulations.ffn.fused`: the fused training (forward, gradients, backward, Adam by hand), as torch
  operations or in the native kernel;
* :mod:`simulations.ffn.native`: the native kernel (``kernel.c``), compiled on first use;
* :mod:`simulations.ffn.autograd`: the plain baseline engine (autograd, vmap, torch.optim.Adam);
* :mod:`simulations.ffn.report`: Table 5 as the paper prints it, our tables, the verdicts and table5.md;
* :mod:`simulations.ffn.plot`: Figure 5, drawn from its CSV;
* :mod:`simulations.ffn.seeds`: the seed study behind the default number of seeds.

The scripts ``simulations/synthetic_ffn.py`` and ``simulations/table5_seeds.py`` run them.
"""
