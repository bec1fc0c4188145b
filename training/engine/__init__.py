"""The pre-training engine: the network (:mod:`~training.engine.model`), what a run is built of
(:mod:`~training.engine.build`), one step (:mod:`~training.engine.steps`), several processes
(:mod:`~training.engine.distributed`), the run folder and its lock (:mod:`~training.engine.rundir`,
:mod:`clop.util.lock`), resuming (:mod:`~training.engine.resume`) and the loop
(:mod:`~training.engine.loop`).
"""
