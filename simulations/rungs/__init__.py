"""Rungs 1 and 2 of the ladder between Theorem 1 of the CLOP paper (arXiv 2403.18699) and training.

The study's entry point is ``simulations/ladder.py``; the method, the modules and the results are described in
``docs/ladder.md``. Importing the package does nothing.
"""
