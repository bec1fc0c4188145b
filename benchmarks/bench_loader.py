"""Benchmark: augmented views per second of the two pre-training loaders (not a test).

``--loader workers`` is the per-image path: a ``DataLoader`` over ``training.data.views.TwoViewDataset``, here with
``--workers 0`` (the images augmented one at a time in this process: one worker's throughput). ``--loader
device`` is ``training.data.loader.DeviceLoader``: the images kept on ``--device``, each batch's random numbers
drawn per image on the CPU and its views computed batched (digits: ``training.data.augment.augment_digits_batch``;
synthetic, cifar100: the SimCLR policy of ``training.data.augment_batched``). Both iterate the same epochs of the
same ``BatchOrder`` (batch ``--batch``, ``--steps`` batches per epoch). Digits get the same views on both;
SimCLR views from the same distributions. Passes alternate (workers, device, workers, ...) so that drift in
the machine's speed hits both; each path's time is the median over ``--rounds`` epochs. Prints the views/s
of both, their ratio, and the device path's time split into drawing the numbers and the rest.

Datasets: ``digits`` (8 px, scikit-learn's), ``synthetic`` (32 px, generated into a temporary folder with
``--synthetic-images`` training images unless ``--data-root`` holds a set), ``cifar100`` (32 px, needs
``--data-root`` with ``cifar-100-python``).
Run: ``python benchmarks/bench_loader.py [--dataset digits|synthetic|cifar100] [--data-root DIR] [--device cpu]
[--threads 1] [--rounds 5]``.
"""

from __future__ import annotations

if __name__ == "__main__" and __package__ in (None, ""):  # run as a file: make the repo root importable
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from clop.util.cli import check_int, parse_device, run_main
from clop.util.io import check_path_text
from training.data.augment import default_policy, pretrain_transform
from training.data.catalog import DATASET_INFO, DatasetCorruptError, DatasetNotFoundError
from training.data.cifar import write_synthetic_cifar
from training.data.datasets import load_dataset
from training.data.loader import DEVICE_DATASETS, DeviceLoader
from training.data.views import TwoViewDataset, labeled_subset, masked_labels
from training.engine import distributed
from training.engine.steps import BatchOrder


def build(dataset: str, root: str, image_size: int | None, batch: int, steps: int | None, device: torch.device,
          seed: int = 0):
    """The two loaders of one run's settings (seed 0, 10 % labels, the dataset's default policy) and the
    dataset and batch order they read."""
    info = DATASET_INFO[dataset]
    size = image_size or info.image_size
    base = load_dataset(dataset, root, "train")
    labels = masked_labels(base.targets, labeled_subset(base.targets, 0.1, seed))
    views = TwoViewDataset(base, pretrain_transform(default_policy(dataset), size, info.mean,
                                                                info.std), labels, seed=seed)
    full = len(views) // batch
    if full < 1:
        raise SystemExit(f"error: --batch {batch} exceeds the {len(views)} training images of {dataset}")
    order = BatchOrder(len(views), batch, min(full, steps or full), seed, distributed.Context(device=device))
    workers = DataLoader(views, batch_size=batch, sampler=order, num_workers=0)
    return views, order, workers, DeviceLoader(views, order, batch, device)


def epoch_seconds(loader, views, order, epoch: int, device: torch.device) -> float:
    """Seconds to draw every batch of one epoch (the device synchronised at the end)."""
    views.set_epoch(epoch)
    order.set_epoch(epoch)
    start = time.perf_counter()
    for v1, v2, _, _ in loader:
        pass
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="digits", choices=DEVICE_DATASETS, help="dataset (those with a batched policy)")
    p.add_argument("--data-root", default=None, help="cifar100: the folder holding cifar-100-python (required); "
                   "synthetic: a folder holding synthetic/ (default: a generated set in a temporary folder)")
    p.add_argument("--synthetic-images", type=int, default=2560, help="training images of the generated synthetic set")
    p.add_argument("--device", default="cpu", help="where the device loader keeps the images and augments: cpu, cuda")
    p.add_argument("--image-size", type=int, default=None, help="view side (default: the dataset's, digits 8, else 32)")
    p.add_argument("--batch", type=int, default=256, help="images per batch (digits' pre-training default: 256)")
    p.add_argument("--steps", type=int, default=10, help="batches per epoch (at most a full epoch)")
    p.add_argument("--rounds", type=int, default=5, help="epochs of each path, alternating")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the pre-training's per-job setting: 1)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    for flag, value, minimum in (("--synthetic-images", args.synthetic_images, 1), ("--batch", args.batch, 1),
                                 ("--steps", args.steps, 1), ("--rounds", args.rounds, 1), ("--threads", args.threads, 1)):
        check_int(p, flag, value, minimum)
    if args.image_size is not None:
        check_int(p, "--image-size", args.image_size, 1)
    if args.data_root is not None:
        try:
            check_path_text(args.data_root, "--data-root")
        except ValueError as exc:
            p.error(str(exc))
    device = parse_device(p, args.device)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_root
        if args.dataset == "cifar100" and root is None:
            print("error: --dataset cifar100 needs --data-root (the folder holding cifar-100-python)", file=sys.stderr)
            return 2
        if args.dataset == "synthetic" and root is None:
            root = tmp
            write_synthetic_cifar(Path(tmp) / "synthetic", train_per_class=-(-args.synthetic_images // 10))
        try:
            views, order, workers, batched = build(args.dataset, root or "data", args.image_size, args.batch,
                                                   args.steps, device)
        except (DatasetNotFoundError, DatasetCorruptError) as exc:  # one line naming the files, no traceback
            print(f"error: --data-root {root!r}: {exc}", file=sys.stderr)
            return 2
        n_views = 2 * len(order)
        epoch_seconds(workers, views, order, 0, device)  # warm-up: first calls, allocations
        epoch_seconds(batched, views, order, 0, device)
        times: dict[str, list[float]] = {"workers": [], "device": []}
        for r in range(1, args.rounds + 1):
            times["workers"].append(epoch_seconds(workers, views, order, r, device))
            times["device"].append(epoch_seconds(batched, views, order, r, device))
        per_image, batched_s = statistics.median(times["workers"]), statistics.median(times["device"])
        draws = []
        indices = list(order)
        for r in range(1, args.rounds + 1):  # the part of the device path that stays per image: the random numbers
            views.set_epoch(r)
            start = time.perf_counter()
            for b in range(0, len(indices), args.batch):
                batched.draws(indices[b:b + args.batch])
            draws.append(time.perf_counter() - start)
        draw_s = statistics.median(draws)
    size = views.transform.size
    print(f"{args.dataset}, {size} px, batch {args.batch}, {len(order)} images x 2 views per epoch, "
          f"{args.rounds} epochs each, {torch.get_num_threads()} thread(s); device loader on {device}")
    print(f"  per-image (--loader workers, --workers 0): {n_views / per_image:10.0f} views/s  "
          f"({per_image * 1e3:7.1f} ms per epoch)")
    print(f"  batched   (--loader device):               {n_views / batched_s:10.0f} views/s  "
          f"({batched_s * 1e3:7.1f} ms per epoch: {draw_s * 1e3:.1f} ms drawing the numbers on the CPU, "
          f"{(batched_s - draw_s) * 1e3:.1f} ms the rest)")
    print(f"  ratio batched / per-image: {per_image / batched_s:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
