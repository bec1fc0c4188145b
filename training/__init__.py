"""ResNet-50 pre-training and linear-probe benchmarks of the CLOP paper (Section 5).

Not built yet: see the open issues "training/: the ResNet-50 pre-training and linear-probe
pipeline" and "training/: several GPUs and machines". Installing the ``training`` extra
(``pip install -e '.[training]'``) brings torchvision, which that package will use.
"""
