"""The ladder's rung 4: ResNet-50 on CIFAR-100 at large learning rates (docs/ladder.md). The code is rung 3's
(:mod:`training.rung3`, with :data:`training.rung3.grid.RUNG4`); this package is its command line."""
