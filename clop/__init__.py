"""Reusable core of the CLOP verification suite (torch and numpy only).

Paper: "Preventing collapse in contrastive learning with orthonormal prototypes" (CLOP), arXiv 2403.18699.

* :mod:`clop.losses`     contrastive losses, the CLOP term of Eq. (4), L_class of Eq. (3);
* :mod:`clop.prototypes` orthonormal prototypes and the simplex ETF;
* :mod:`clop.metrics`    singular spectrum, stable rank, entropy rank, RankMe, alignment, uniformity;
* :mod:`clop.stats`      paired intervals and the verdict rules of every empirical claim;
* :mod:`clop.util`       plumbing shared by every package (file output, checks, device, progress, CLI).
"""
