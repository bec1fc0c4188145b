"""Measuring a run: the collapse metrics and class geometry logged during training
(:mod:`~training.eval.evaluate`, :mod:`~training.eval.geometry`), the linear probe (:mod:`~training.eval.probe`,
:mod:`~training.eval.linear`) and its results CSV (:mod:`~training.eval.results`).
"""
