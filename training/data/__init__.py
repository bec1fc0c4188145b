"""The data of the pre-training and the probe: datasets and their facts, the labeled subset, the two augmented
views, and the batched loader. Import from the modules: :mod:`~training.data.catalog`,
:mod:`~training.data.datasets`, :mod:`~training.data.cifar`, :mod:`~training.data.digits`,
:mod:`~training.data.folders`, :mod:`~training.data.views`, :mod:`~training.data.augment`,
:mod:`~training.data.augment_batched`, :mod:`~training.data.loader`.
"""
