"""Section 5 of the CLOP paper (arXiv 2403.18699) in miniature: the practice study on 8x8 digits, on a CPU.

* :mod:`training.practice.grid`     the study's axes, points and launch settings;
* :mod:`training.practice.run`      the points run in-process, several at a time;
* :mod:`training.practice.claims`   the claims tested and their verdicts;
* :mod:`training.practice.report`   practice.md, the figures and their CSVs;
* :mod:`training.practice.figures`  the figures, each drawn from its CSV's frame;
* :mod:`training.practice.cli`      ``python -m training.practice``.
"""
