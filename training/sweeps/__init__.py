"""The paper's grids of runs and what is drawn from their results: the grids and points
(:mod:`~training.sweeps.grid`), a point's state (:mod:`~training.sweeps.state`), launching
(:mod:`~training.sweeps.launch`), the results CSVs (:mod:`~training.sweeps.results`), Figures 6-9
(:mod:`~training.sweeps.figures`), Tables 1-3 (:mod:`~training.sweeps.tables`) and all of them written together
(:mod:`~training.sweeps.report`).
"""
