"""ResNet-50 pre-training and linear-probe benchmarks of the CLOP paper (arXiv 2403.18699, Section 5), and a
miniature of them on real 8x8 digits that runs on a CPU.

Modules (torchvision is needed: ``pip install -e '.[training]'``):

* :mod:`training.data`         load_dataset, the class-stratified labeled subset, TwoViewDataset (and the names
                               of the next three, re-exported).
* :mod:`training.datasets`     dataset facts and readers: Tiny-ImageNet, ImageNet, scikit-learn's digits.
* :mod:`training.cifar`        CIFAR-100 files and the generated CIFAR-format ``synthetic`` set.
* :mod:`training.augment`      the augmentation policies (SimCLR, RandAugment, AutoAugment, digits).
* :mod:`training.model`        torchvision's ResNet with the small-image stem, a small CNN, SimCLR's head.
* :mod:`training.optim`        LARS, the parameter groups it excludes, warm-up + cosine schedule.
* :mod:`training.build`        the model, objective and optimizer of a run's settings.
* :mod:`training.steps`        the batch order and one forward pass of the loss (gathered under torchrun).
* :mod:`training.loader`       ``--loader device``: the views augmented in batches on the training device.
* :mod:`training.augment_batched`  the SimCLR policy on batches of uint8 images (CIFAR-100, synthetic).
* :mod:`training.evaluate`     per-epoch collapse metrics and the class geometry of held-out embeddings.
* :mod:`training.geometry`     class geometry (Sec. 3.2) and the Appendix D fit of the effective step.
* :mod:`training.probe`        the linear classifier on frozen features, top-k accuracy.
* :mod:`training.pretrain`     ``python -m training.pretrain``: one pre-training run into a run directory.
* :mod:`training.linear_eval`  ``python -m training.linear_eval --run RUN``: top-1/top-5 into a results CSV.
* :mod:`training.rundir`       a run directory's files, its lock and its checkpoints (current + previous).
* :mod:`training.sweep`        ``python -m training.sweep NAME``: the paper's grids of runs.
* :mod:`training.plots`        ``python -m training.plots``: Figures 6-9 and Tables 1-3 from results CSVs.
* :mod:`training.practice`     ``python -m training.practice``: Section 5 in miniature on digits.
"""
