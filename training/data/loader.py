"""The pre-training views in batches, augmented in the training process (``--loader device``).

The pre-training feeds its steps in one of two ways (:data:`LOADERS`):

* ``workers``: a ``DataLoader`` over :class:`training.data.views.TwoViewDataset`, one image at a time in
  ``--workers`` processes (every dataset and policy);
* ``device``: :class:`DeviceLoader`, for the datasets of :data:`DEVICE_DATASETS` with a batched policy: the
  training images are kept as one tensor on the training device and each batch's two views are computed
  there, a few dozen tensor operations per batch and view instead of per image and view: digits with its
  ``"digits"`` policy (:func:`training.data.augment.augment_digits_batch`), CIFAR-100 and synthetic (32 px,
  uint8) with the ``"simclr"`` policy below :data:`BLUR_FROM` px
  (:class:`training.data.augment_batched.BatchedSimCLR`).

The default is ``device`` where it exists and the images take at most a quarter of the device's memory
(:func:`default_loader`, :func:`images_fit`), else ``workers``. The batches are those of the ``DataLoader``
path: :class:`training.engine.steps.BatchOrder` gives this process's indices and every ``batch`` of them is one
batch.

Digits: the two loaders give the same views. The random numbers of the two views of image i in epoch e are
drawn, view 1 then view 2, from a CPU generator seeded with :func:`training.data.views.view_seed` ``(seed, e,
i)`` (:func:`training.data.augment.draw_digits_view`), and ``augment_digits_batch`` computes each view the
same whatever batch it is in: on the CPU the loaders are bit-identical, ``--resume`` stays exact (also when it
changes the loader) and the views depend neither on the batch nor on the process (:data:`SAME_VIEWS`).

SimCLR: each view's parameters come from 33 uniforms drawn from the same per-image generator, so views again
depend on (seed, epoch, index) alone and ``--resume`` is exact on the CPU; the parameters follow the per-image
policy's distributions, but the arithmetic is not PIL's (float instead of uint8 steps), so the two loaders give
different views: a run keeps its loader on ``--resume``. docs/training.md compares the costs of the two paths
(``benchmarks/bench_loader.py`` measures them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from training.data.augment import DigitsDraws, DigitsPolicy, SimCLRTransform, default_policy
from training.data.augment_batched import BLUR_FROM, BatchedSimCLR, SimCLRParams
from training.data.views import TwoViewDataset, view_seed

__all__ = ["LOADERS", "DEVICE_DATASETS", "SAME_VIEWS", "TRAIN_IMAGE_BYTES", "default_loader", "check_loader",
           "images_fit", "draw_two_views", "DeviceLoader"]

LOADERS: tuple[str, ...] = ("device", "workers")
DEVICE_DATASETS: tuple[str, ...] = ("digits", "cifar100", "synthetic")
"""The datasets whose pre-training policy has a batched implementation (``--loader device``): digits with its
``"digits"`` policy, the 32 px CIFAR-format sets with ``"simclr"`` below :data:`BLUR_FROM` px."""
SAME_VIEWS: tuple[str, ...] = ("digits",)
"""The policies whose views are bit-identical on both loaders (on the CPU): only for these may ``--resume``
change the loader."""
TRAIN_IMAGE_BYTES = {"cifar100": 50_000 * 3 * 32 * 32, "synthetic": 500 * 3 * 32 * 32}
"""The uint8 training images that :class:`DeviceLoader` keeps on the device (CIFAR-100: 150 MB; synthetic: the
500 images that ``write_synthetic_cifar`` writes by default), for :func:`images_fit`."""


def _device_memory(device: torch.device) -> int | None:
    """Total bytes of memory of ``device`` (CUDA: the GPU's, from its properties, which needs no context on
    it; CPU: physical RAM); None where unknown."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def images_fit(dataset: str, device: torch.device | None = None) -> bool:
    """Whether the device loader's copy of ``dataset``'s training images "fits": at most a quarter of the
    device's total memory (:func:`_device_memory`). Total rather than free memory: the answer is then the
    same on every process, at every resume and whatever else runs on the device at the moment (the loader
    checks the free memory of a GPU when it copies the images there)."""
    memory = _device_memory(device or torch.device("cpu"))
    return memory is None or TRAIN_IMAGE_BYTES.get(dataset, 0) * 4 <= memory


def _refusal(dataset: str, augmentation: str, image_size: int | None) -> str | None:
    """Why ``--loader device`` cannot run this dataset and policy, or None if it can."""
    if dataset not in DEVICE_DATASETS:
        return (f"--dataset {dataset} has no batched augmentation: the device loader keeps the uint8 training "
                f"images in memory and exists for --dataset {' / '.join(DEVICE_DATASETS)}"
                + (f" (SimCLR blurs at {BLUR_FROM} px and more, which the batched policy does not)"
                   if dataset == "tiny-imagenet" else ""))
    wanted = default_policy(dataset)
    if augmentation != wanted:
        return (f"--augmentation {augmentation} has no batched implementation: with --dataset {dataset} the "
                f"device loader runs --augmentation {wanted} only")
    if wanted == "simclr" and image_size is not None and image_size >= BLUR_FROM:
        return (f"--image-size {image_size}: SimCLR's policy blurs from {BLUR_FROM} px on, which the batched "
                "policy does not implement")
    return None


def default_loader(dataset: str, augmentation: str | None = None, image_size: int | None = None,
                   device: torch.device | None = None) -> str:
    """``"device"`` where the dataset's batched policy runs (digits with its own policy; cifar100 / synthetic
    with the simclr policy, the default, below :data:`BLUR_FROM` px) and the images fit
    (:func:`images_fit` on ``device``, default the CPU); else ``"workers"``."""
    augmentation = default_policy(dataset) if augmentation is None else augmentation
    if _refusal(dataset, augmentation, image_size) is None and images_fit(dataset, device):
        return "device"
    return "workers"


def check_loader(loader: str | None, dataset: str, augmentation: str, image_size: int | None = None,
                 device: torch.device | None = None) -> str:
    """``loader`` resolved (``None``: :func:`default_loader`); ValueError naming ``--loader`` if it is not one of
    :data:`LOADERS`, or is ``device`` where no batched policy exists (saying why: the dataset, the
    ``--augmentation``, the ``--image-size``)."""
    if loader is None:
        return default_loader(dataset, augmentation, image_size, device)
    if loader not in LOADERS:
        raise ValueError(f"loader={loader!r} is not supported; expected one of {list(LOADERS)}")
    why = _refusal(dataset, augmentation, image_size) if loader == "device" else None
    if why is not None:
        other = f" or an --image-size below {BLUR_FROM}" if why.startswith("--image-size") else ""
        raise ValueError(f"loader='device' (--loader device) is not supported for --dataset {dataset} --augmentation "
                         f"{augmentation}: {why}; pass --loader workers{other}")
    return loader


def draw_two_views(policy: DigitsPolicy, seed: int, epoch: int, indices: list[int], channels: int = 1,
                   generator: torch.Generator | None = None) -> tuple[DigitsDraws, DigitsDraws]:
    """The random numbers (on the CPU) of the first and of the second view of each image of ``indices`` in
    ``epoch``, as :class:`training.data.views.TwoViewDataset` draws them: a generator seeded with
    ``view_seed(seed, epoch, index)`` per image, view 1's numbers then view 2's (``generator``: the one to
    re-seed, else a new one)."""
    g = torch.Generator() if generator is None else generator
    first, second = (DigitsDraws.empty(len(indices), channels, policy.size) for _ in range(2))
    for index, row1, row2 in zip(indices, first.rows(), second.rows()):
        g.manual_seed(view_seed(seed, epoch, index))
        policy.draw(g, row1)
        policy.draw(g, row2)
    return first, second


class DeviceLoader:
    """The ``DataLoader`` of ``--loader workers`` without the workers: ``(v1, v2, labels, indices)`` per
    batch, the views ``(B, 3, S, S)`` float32 on ``device``, labels and indices int64 ``(B,)`` on the CPU.

    Args:
        views: the run's two-view dataset, with a seed and a :class:`training.data.augment.DigitsPolicy` or a
            :class:`training.data.augment.SimCLRTransform` (batched as :class:`~training.data.augment_batched.BatchedSimCLR`);
            its ``epoch`` (``set_epoch``) selects the views, as for the ``DataLoader``.
        order: the sampler (``training.engine.steps.BatchOrder``, or any sized iterable of indices): the indices
            this process loads, in order.
        batch: indices per batch (the process's share of the global batch).
        device: where the images are kept and the views computed.
    """

    def __init__(self, views: TwoViewDataset, order: Sampler[int] | Sequence[int], batch: int,
                 device: torch.device) -> None:
        if views.seed is None:
            raise ValueError("the device loader draws the views from (seed, epoch, index): views needs a seed")
        self.views, self.order, self.batch, self.device = views, order, batch, device
        transform = views.transform
        if isinstance(transform, DigitsPolicy):
            self.policy: DigitsPolicy | BatchedSimCLR = transform
            # prepared once (as float on [0, 1], resized where the image is not S x S), as the per-image path does
            images = torch.stack([transform.prepare(views.base[i][0]) for i in range(len(views))])
        elif isinstance(transform, SimCLRTransform):
            self.policy = BatchedSimCLR.from_transform(transform)
            images = self.policy.store(views.base)  # uint8 (N, 3, H, W)
        else:
            raise ValueError(f"the device loader batches the digits and simclr policies only; got {transform!r}")
        if device.type == "cuda":
            free = torch.cuda.mem_get_info(device)[0]
            if images.nbytes > free:
                raise ValueError(f"the training images ({images.nbytes / 2**20:.0f} MiB) do not fit in the "
                                 f"{free / 2**20:.0f} MiB free on {device}; pass --loader workers")
        self.images = images.to(device)
        self._generator = torch.Generator()  # re-seeded per image: the draws of a CPU generator, on any device

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch)  # type: ignore[arg-type]

    def draws(self, indices: list[int]) -> tuple[DigitsDraws, DigitsDraws] | tuple[SimCLRParams, SimCLRParams]:
        """The numbers of the two views of these images in the current epoch, on the CPU: :func:`draw_two_views`
        (digits), :meth:`~training.data.augment_batched.BatchedSimCLR.draw_two_views` (simclr: their parameters)."""
        if isinstance(self.policy, DigitsPolicy):
            return draw_two_views(self.policy, self.views.seed, self.views.epoch, indices, self.images.shape[1],
                                  self._generator)
        return self.policy.draw_two_views(self.views.seed, self.views.epoch, indices, *self.images.shape[2:])

    def _augment(self, x: torch.Tensor, draws: DigitsDraws | SimCLRParams) -> torch.Tensor:
        if isinstance(self.policy, DigitsPolicy):
            return self.policy.augment(x, draws.to(self.device))
        return self.policy.augment(x, draws)  # plans on the CPU, moves what it needs to x's device

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        order = iter(self.order)
        while True:
            indices = [i for _, i in zip(range(self.batch), order)]  # a short last one too, as the DataLoader
            if not indices:
                return
            first, second = self.draws(indices)
            idx = torch.tensor(indices, dtype=torch.long)
            x = self.images[idx.to(self.device)]
            v1 = self._augment(x, first)
            v2 = self._augment(x, second)
            yield v1, v2, self.views.labels[idx], idx
