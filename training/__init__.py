"""ResNet-50 pre-training and linear-probe benchmarks of the CLOP paper (Section 5).

Modules (torchvision is needed: ``pip install -e '.[training]'``):

* :mod:`training.data`        CIFAR-100, Tiny-ImageNet, ImageNet and a generated CIFAR-format dataset;
                              the class-stratified labeled subset; the augmentation policies.
* :mod:`training.model`       torchvision's ResNet with the small-image stem, SimCLR's projection head.
* :mod:`training.optim`       LARS, the parameter groups it excludes, warm-up + cosine schedule.
* :mod:`training.probe`       the linear classifier on frozen features, top-k accuracy.
* :mod:`training.pretrain`    ``python -m training.pretrain``: one pre-training run into a run directory.
* :mod:`training.linear_eval` ``python -m training.linear_eval --run RUN``: top-1/top-5 into a results CSV.
"""
