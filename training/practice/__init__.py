"""Section 5 of the CLOP paper (arXiv 2403.18699) in miniature: the practice study on 8x8 digits, on a CPU.

* :mod:`training.practice.grid`      the study's axes, points, seeds and launch settings;
* :mod:`training.practice.run`       the points run in-process, several at a time;
* :mod:`training.practice.endgeom`   the end-of-run class geometry of a run and its bootstrap resolution;
* :mod:`training.practice.table`     the per-run and per-interval tables and how runs are picked from them;
* :mod:`training.practice.findings`  one quantity over seeds judged by clop.stats; Holm within a claim;
* :mod:`training.practice.claims`    the claims tested and their verdicts;
* :mod:`training.practice.seeds`     the seed-block study: how many seeds the verdicts need;
* :mod:`training.practice.report`    practice.md, the claim records, the figures and their CSVs;
* :mod:`training.practice.figures`   the figures, each drawn from its CSV's frame;
* :mod:`training.practice.cli`       ``python -m training.practice``.
"""
