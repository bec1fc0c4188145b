"""The L_class engine: batched gradient descent on L_class, the numerical experiments of Section 3 of
"Preventing collapse in contrastive learning with orthonormal prototypes" (arXiv 2403.18699: Eq. (3),
Theorem 1 and Figure 3 in Sec. 3.1, Figure 4 and Lemma 2 in Sec. 3.2, the update analysed in Appendix D).

Modules (import every name from the module that defines it; this package re-exports nothing):

* :mod:`simulations.lclass.model`: the Appendix D update and what its learning rate ``eta`` means, the
  starts, the exact reduction to k dimensions, the collapse criterion, the growth factors and the
  finite-horizon estimate of the threshold;
* :mod:`simulations.lclass.engine`: stepping many runs together (the torch engine, chunking, early
  decisions) and the choice between the two engines;
* :mod:`simulations.lclass.native`: the native CPU kernel (``kernel.c``), compiled on first use;
* :mod:`simulations.lclass.simulate`: :func:`~simulations.lclass.simulate.simulate`, one k with records
  of mean norms, spectra and L_class;
* :mod:`simulations.lclass.search`: :func:`~simulations.lclass.search.max_stable_lr` (Figure 3) and
  :func:`~simulations.lclass.search.sweep`;
* :mod:`simulations.lclass.memory`: the memory a run needs, estimated before anything is allocated.
"""
