"""ResNet-50 pre-training and linear-probe benchmarks of the CLOP paper (arXiv 2403.18699, Section 5), and a
miniature of them on real 8x8 digits that runs on a CPU (torchvision is needed: ``pip install -e '.[training]'``).

Entry points (thin command lines; docs/training.md is the guide):

* ``python -m training.pretrain``     one pre-training run into a run folder (:mod:`training.pretrain`);
* ``python -m training.linear_eval``  the linear probe of a run: top-1 / top-5 into a results CSV;
* ``python -m training.sweep NAME``   one of the paper's grids of runs;
* ``python -m training.plots``       Figures 6-9 and Tables 1-3 from results CSVs;
* ``python -m training.practice``    Section 5 in miniature on digits.

Packages and modules:

* :mod:`training.config`     every setting once (PretrainConfig, ProbeConfig); the parsers derive from it.
* :mod:`training.data`       datasets (catalog, cifar, digits, folders, datasets), the labeled subset and the two
                             views (views), augmentation (augment, augment_batched), ``--loader device`` (loader).
* :mod:`training.engine`     the network (model), what a run is built of (build), one step (steps), several
                             GPUs (distributed), the run folder (rundir), resuming (resume), the memory a run
                             needs (memory), the loop (loop).
* :mod:`training.eval`       collapse metrics and the class geometry during training (evaluate, geometry), the
                             linear probe (probe, linear) and its results CSV (results).
* :mod:`training.optim`      LARS and the warm-up + cosine schedule (used by the engine and the probe).
* :mod:`training.sweeps`     the paper's grids (grid), a point's state (state), running them (launch), and the
                             figures and tables from results (results, figures, tables, report).
* :mod:`training.paper_results`  what the paper prints about Sec. 5, as data.
* :mod:`training.practice`   the practice study (grid, run, claims, report, figures, cli).
"""
