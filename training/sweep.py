"""The CLOP paper's experiment grids (Sec. 5, Figs. 6-7, Tables 1-3) as named sweeps of pre-training + linear probe.

    python -m training.sweep NAME [options] [-- extra training.pretrain flags]

``NAME`` is one of

============  =======================================================  ======================  ==================
sweep         grid                                                     variants                source
============  =======================================================  ======================  ==================
batch-size    batch 32 ... 2048, lr = 0.3 x batch / 256                the six of Sec. 5       Sec. 5, Fig. 6
lr            lr 0.1, 0.3, 1, 3, 10 at batch 1024                      the six of Sec. 5       Sec. 5, Fig. 7
lambda        lambda 0.1, 0.5, 1.0, 1.5 at batch 1024                  CLOP ablation pair      Sec. 5, Table 1
similarity    s(z, c) cosine / euclidean / manhattan                   CLOP ablation pair      Sec. 5, Table 2
augmentation  RandAugment / AutoAugment (ImageNet) / SimCLR            CLOP ablation pair      Sec. 5, Table 3
============  =======================================================  ======================  ==================

The six variants compared in Sec. 5 (Figs. 6 and 7): InfoNCE with 10 % labels (semi-supervised; CLOP and
the probe use the labeled 10 %) and SupCon with all labels, each without CLOP, with CLOP (lambda = 1,
orthonormal prototypes) and with CLOP on simplex-ETF prototypes ("to ensure a fair comparison with ETF").
The ablations (Tables 1-3) cross their grid with the two orthonormal-CLOP variants; the paper's tables
used SupCon + CLOP (Table 1 says so; Table 2's cosine row and Table 3's RandAugment row repeat Table 1's
lambda = 1.0 numbers for CIFAR-100 and Tiny-ImageNet), which :data:`SWEEPS` records as ``paper_variants``
and each :class:`Point` as ``in_paper``. Grids and variants are data at the top of this module.

Not printed in the paper, our choices: the lr grid (Fig. 7 says only "from 0.1 to 10"); that the learning
rates of Fig. 7 are the rates actually used (so base_lr = lr x 256 / 1024 here); the default dataset of the
lambda, similarity and augmentation ablations where the paper ran several (CIFAR-100; pass ``--dataset``).
Epochs follow training.pretrain's per-dataset defaults (200 CIFAR-100 / ImageNet, 100 Tiny-ImageNet:
Sec. 5). Every point passes its settings explicitly (dataset, loss, labels, lambda, prototypes, similarity,
augmentation, batch, base lr, seed); the flags after ``--`` come last, so they override them.

Layout: run ``ROOT/NAME/DATASET/<variant>_<setting>_s<seed>`` (e.g. ``runs/sweeps/batch-size/cifar100/
supcon100-clop_b32_s0``), its console output in ``<run>.log`` beside it, every probe's row in
``ROOT/NAME/results.csv`` (columns: see training.linear_eval).

Launchers:

* ``local`` (default): the points one after another, each as ``python -m training.pretrain ... --resume``
  then ``python -m training.linear_eval --run RUN --results ROOT/NAME/results.csv``. A point whose probe
  result exists is skipped, one whose pre-training finished only gets its probe, a partial run is
  resumed. A failing point is reported and the sweep goes on; the exit status is 1 if any failed. A
  run directory that holds a run made with other settings (say, other flags after ``--``) is reported
  as failed and left alone, rather than skipped as finished (:func:`conflicts`).
* ``torchrun``: the same, with pre-training under ``torchrun --nproc-per-node N -m training.pretrain``
  (the probe stays one process). Several machines, the same sweep started on each (ROOT on a shared
  filesystem; the machines walk the points in the same order, torchrun's static rendezvous at
  ``--rdzv-endpoint`` joins them for each pre-training, and node 0 runs the probes)::

      # node 0 (host gpu-a) and node 1, 8 GPUs each
      python -m training.sweep lr --launcher torchrun --nproc-per-node 8 --nnodes 2 --node-rank 0 --rdzv-endpoint gpu-a:29500
      python -m training.sweep lr --launcher torchrun --nproc-per-node 8 --nnodes 2 --node-rank 1 --rdzv-endpoint gpu-a:29500

* ``print``: one shell line per unfinished point (``pretrain && linear_eval``, or the probe alone) for a
  cluster scheduler, finished points left out; nothing runs. Given any torchrun option
  (``--nproc-per-node``, ``--nnodes``, ...), the lines use torchrun.

Examples::

    python -m training.sweep batch-size --variants supcon100 supcon100-clop --seeds 0 1 2
    python -m training.sweep augmentation --launcher print > jobs.txt
    python -m training.sweep lr --dataset tiny-imagenet --data-root DATA -- --checkpoint-every 200 --workers 16
    python -m training.sweep batch-size --dataset synthetic --values 32 --variants supcon100-clop \\
        --root /tmp/sweeps -- --smoke --arch resnet18 --epochs 1   # under a minute on a CPU
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from clop.util.io import check_output_dir

from training import data as tdata
from training.linear_eval import RESULT, ProbeConfig
from clop.util.cli import HelpFormatter
from training.pretrain import CHECKPOINT, CONFIG, METRICS, RUN_FILES, changed_settings
from training.pretrain import build_parser as pretrain_parser
from training.pretrain import config_from_args

# ----------------------------------------------------------------------------------------------------
# The paper's grids and variants (CLOP paper, Sec. 5)
# ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Variant:
    """One method of Sec. 5: a contrastive loss, its labeled fraction and the CLOP term (lambda 0 = off)."""

    name: str
    loss: str
    label_fraction: float
    clop_lambda: float
    prototypes: str
    description: str


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("infonce10", "infonce", 0.1, 0.0, "orthonormal", "InfoNCE, 10 % labels for the probe, no CLOP"),
        Variant("infonce10-clop", "infonce", 0.1, 1.0, "orthonormal",
                "InfoNCE + CLOP (lambda 1, orthonormal prototypes), 10 % labels"),
        Variant("infonce10-clop-etf", "infonce", 0.1, 1.0, "etf", "InfoNCE + CLOP on simplex-ETF prototypes, 10 % labels"),
        Variant("supcon100", "supcon", 1.0, 0.0, "orthonormal", "SupCon, all labels, no CLOP"),
        Variant("supcon100-clop", "supcon", 1.0, 1.0, "orthonormal",
                "SupCon + CLOP (lambda 1, orthonormal prototypes), all labels"),
        Variant("supcon100-clop-etf", "supcon", 1.0, 1.0, "etf", "SupCon + CLOP on simplex-ETF prototypes, all labels"),
    )
}
"""CLOP paper Sec. 5: InfoNCE (semi-supervised, 10 % labels for CLOP and the linear classifier) and SupCon
(all labels) as baselines, with CLOP at the hand-tuned lambda = 1, and CLOP with ETF prototypes "to ensure a
fair comparison with ETF"; Figs. 6 and 7 plot all six."""

COMPARISON = tuple(VARIANTS)
"""The six variants of the batch-size and lr sweeps (Figs. 6 and 7)."""
ABLATION = ("infonce10-clop", "supcon100-clop")
"""The two orthonormal-CLOP variants the ablations are crossed with; the paper's Tables 1-3 used SupCon."""

BASE_SETTINGS: dict[str, object] = {"similarity": "cosine", "augmentation": "simclr", "batch_size": 1024, "base_lr": 0.3}
"""Settings not varied by a sweep (Sec. 5: cosine s(z, c) in Eq. (4), SimCLR framework, batch 1024 for the lr
sweep and the ablations, lr = 0.3 x batch / 256). The augmentation is the dataset's default policy
(``training.data.default_policy``: simclr, but digits for ``--dataset digits``, whose digits must not be
flipped)."""


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A grid over one setting, crossed with variants. ``param`` names what ``values`` set."""

    name: str
    param: str
    values: tuple
    variants: tuple[str, ...]
    paper_variants: tuple[str, ...]
    dataset: str
    tag: str
    source: str

    def settings(self, value: object) -> dict[str, object]:
        """The pretrain settings one grid value sets (learning rates become base_lr at the sweep's batch)."""
        if self.param == "lr":
            return {"base_lr": float(value) * 256 / BASE_SETTINGS["batch_size"]}
        return {self.param: value}


SWEEPS: dict[str, Sweep] = {
    s.name: s
    for s in (
        Sweep("batch-size", "batch_size", (32, 64, 128, 256, 512, 1024, 2048), COMPARISON, COMPARISON, "cifar100", "b",
              "Sec. 5 'CLOP Enables Smaller Batch Sizes', Fig. 6 (top-5: Fig. 8): lr = 0.3 x batch / 256"),
        Sweep("lr", "lr", (0.1, 0.3, 1.0, 3.0, 10.0), COMPARISON, COMPARISON, "cifar100", "lr",
              "Sec. 5 'CLOP Prevents Collapse with Large Learning Rates', Fig. 7 (top-5: Fig. 9): 'from 0.1 to 10' "
              "at batch 1024; the grid itself is not printed (ours: half-decades)"),
        Sweep("lambda", "clop_lambda", (0.1, 0.5, 1.0, 1.5), ABLATION, ("supcon100-clop",), "cifar100", "lambda",
              "Sec. 5 'Ablation Study on lambda Tuning', Table 1: SupCon, batch 1024, CIFAR-100 and Tiny-ImageNet"),
        Sweep("similarity", "similarity", ("cosine", "euclidean", "manhattan"), ABLATION, ("supcon100-clop",),
              "cifar100", "sim-",
              "Sec. 5 'Ablation Study on the Choice of Similarity Metric', Table 2 (called Table 5 in the text): "
              "CIFAR-100, ResNet-50"),
        Sweep("augmentation", "augmentation", ("randaugment", "autoaugment", "simclr"), ABLATION, ("supcon100-clop",),
              "tiny-imagenet", "aug-",
              "Sec. 5 'Ablation Study on the Choice of Augmentation', Table 3: Tiny-ImageNet, batch 1024; "
              "RandAugment, AutoAugment (ImageNet policy), SimCLR"),
    )
}
"""The named sweeps: grid, variants (all run; ``paper_variants`` the ones the paper's figure/table shows),
default dataset, run-name tag and the paper's source."""

LAUNCHERS = ("local", "torchrun", "print")
STATES = ("done", "trained", "partial", "new")
FORBIDDEN_EXTRA = {"out": "the sweep names the run directories", "seed": "use the sweep's --seeds",
                   "dataset": "use the sweep's --dataset", "data_root": "use the sweep's --data-root",
                   "overwrite": "delete the run directory to start a point again"}
"""training.pretrain flags that may not follow ``--``: they would break the run-directory layout or the resume."""

# ----------------------------------------------------------------------------------------------------
# Points
# ----------------------------------------------------------------------------------------------------


def _fmt(value: object) -> str:
    """A setting as a command-line value and in run names: floats in their shortest form (1.0 -> 1)."""
    if isinstance(value, float):
        return format(value, "g") if float(format(value, "g")) == value else repr(value)
    return str(value)


@dataclasses.dataclass
class Point:
    """One run of a sweep: the variant, the grid value, the seed, and where it goes.

    ``settings`` maps training.pretrain's settings (``PretrainConfig`` field names) to values; ``args`` is
    them as flags (no ``--out``); ``run_dir`` is ``ROOT/SWEEP/DATASET/name``.
    """

    sweep: str
    dataset: str
    variant: str
    value: object
    seed: int
    settings: dict[str, object]
    run_dir: Path
    in_paper: bool

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def args(self) -> list[str]:
        out: list[str] = []
        for key, value in self.settings.items():
            out += ["--" + key.replace("_", "-"), _fmt(value)]
        return out


def _check_sweep(name: object) -> Sweep:
    if name not in SWEEPS:
        raise ValueError(f"name={name!r} is not a sweep; expected one of {list(SWEEPS)}")
    return SWEEPS[name]


def _select(label: str, wanted: Sequence | None, available: Sequence, match: Callable[[object, object], bool]) -> list:
    """The entries of ``available`` that some entry of ``wanted`` matches (all when None), in grid order."""
    if wanted is None:
        return list(available)
    wanted = list(wanted)
    if not wanted:
        raise ValueError(f"{label} is empty; expected some of {[_fmt(a) for a in available]}")
    bad = [w for w in wanted if not any(match(w, a) for a in available)]
    if bad:
        raise ValueError(f"{label}={bad!r} not in this sweep; expected some of {[_fmt(a) for a in available]}")
    return [a for a in available if any(match(w, a) for w in wanted)]


def _value_matches(wanted: object, value: object) -> bool:
    if isinstance(value, str):
        return str(wanted).lower() == value
    try:
        return float(wanted) == float(value)
    except (TypeError, ValueError):
        return False


def points(
    name: str, dataset: str | None = None, variants: Sequence[str] | None = None, seeds: Sequence[int] = (0,),
    *, values: Sequence | None = None, root: str | Path = "runs/sweeps",
) -> list[Point]:
    """The points of sweep ``name``: seed (outer) x grid value x variant (inner).

    Args:
        name: one of :data:`SWEEPS`.
        dataset: one of training.data.DATASETS (default: the sweep's, see :data:`SWEEPS`).
        variants: names of :data:`VARIANTS` among the sweep's (default: all of them).
        seeds: one run per seed (integers >= 0, no repeats).
        values: a subset of the grid (default: all of it); numbers compare by value, so "1" selects 1.0.
        root: runs go to ``root/name/dataset/<variant>_<tag><value>_s<seed>``.
    """
    sweep = _check_sweep(name)
    dataset = sweep.dataset if dataset is None else dataset
    if dataset not in tdata.DATASETS:
        raise ValueError(f"dataset={dataset!r} is not supported; expected one of {list(tdata.DATASETS)}")
    chosen = _select("variants", variants, sweep.variants, lambda w, a: w == a)
    grid = _select("values", values, sweep.values, _value_matches)
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds) or len(set(seeds)) < len(seeds):
        raise ValueError(f"seeds must be distinct integers >= 0, at least one; got {seeds!r}")
    out = []
    for seed in seeds:
        for value in grid:
            for vname in chosen:
                v = VARIANTS[vname]
                settings = {
                    "dataset": dataset, "loss": v.loss, "label_fraction": v.label_fraction, "clop_lambda": v.clop_lambda,
                    "prototypes": v.prototypes, **BASE_SETTINGS, "augmentation": tdata.default_policy(dataset),
                    **sweep.settings(value), "seed": seed,
                }
                run = Path(root) / sweep.name / dataset / f"{vname}_{sweep.tag}{_fmt(value)}_s{seed}"
                out.append(Point(sweep.name, dataset, vname, value, seed, settings, run, vname in sweep.paper_variants))
    return out


# ----------------------------------------------------------------------------------------------------
# State of a run directory
# ----------------------------------------------------------------------------------------------------


def _finished_training(run: Path) -> bool:
    """RUN/metrics.csv reaches the epochs of RUN/config.json and RUN/checkpoint.pt is not older than it.

    training.pretrain appends an epoch's metrics row, then writes that epoch's checkpoint; a run killed
    between the two has every row but an older checkpoint, and is not finished. (The checkpoint itself is
    not opened: a ResNet-50 checkpoint with its optimiser state is hundreds of MB.)
    """
    if not (run / CHECKPOINT).is_file() or not (run / METRICS).is_file():
        return False
    try:
        if (run / CHECKPOINT).stat().st_mtime_ns < (run / METRICS).stat().st_mtime_ns:
            return False
        epochs = int(json.loads((run / CONFIG).read_text())["epochs"])
        with open(run / METRICS, newline="") as f:
            rows = list(csv.DictReader(f))
        last = max((int(float(r["epoch"])) for r in rows), default=0) if rows and "epoch" in rows[0] else len(rows)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return last >= epochs


def status(run_dir: str | Path) -> str:
    """``"done"`` (probe result written), ``"trained"`` (pre-training finished, no probe yet), ``"partial"``
    (some pre-training files, not finished) or ``"new"`` (none)."""
    run = Path(run_dir)
    if (run / RESULT).is_file():
        return "done"
    if _finished_training(run):
        return "trained"
    if any((run / f).exists() for f in RUN_FILES):
        return "partial"
    return "new"


# ----------------------------------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------------------------------


def _torchrun() -> str:
    exe = Path(sys.executable).with_name("torchrun")
    return str(exe) if exe.is_file() else "torchrun"


@dataclasses.dataclass(frozen=True)
class Launch:
    """How the points run. Bad values raise ValueError naming the field.

    ``extra``: flags appended to every pretrain command. ``nproc_per_node`` / ``nnodes`` / ``node_rank`` /
    ``rdzv_endpoint``: torchrun's (launcher ``torchrun``; with ``print`` they switch the lines to torchrun).
    Several nodes need ``rdzv_endpoint`` (host:port of node 0): torchrun's static rendezvous, so the
    node ranks are the ones given, and node 0 (alone) runs the probes. Meanwhile the other nodes wait at
    the next point's rendezvous, for up to ``rdzv_timeout`` seconds (torchrun's default, 600 s, can be
    shorter than a probe of ImageNet).
    """

    launcher: str = "local"
    root: str | Path = "runs/sweeps"
    extra: tuple[str, ...] = ()
    data_root: str | None = None
    probe_epochs: int | None = None
    nproc_per_node: int | None = None
    nnodes: int | None = None
    node_rank: int | None = None
    rdzv_endpoint: str | None = None
    rdzv_timeout: int = 3600
    python: str = sys.executable
    probe_workers: int | None = None
    """``--workers`` of the probe commands (default: training.linear_eval's own)."""

    def __post_init__(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"launcher={self.launcher!r} is not supported; expected one of {list(LAUNCHERS)}")
        for field, low in (("probe_epochs", 1), ("nproc_per_node", 1), ("nnodes", 1), ("node_rank", 0), ("rdzv_timeout", 1),
                           ("probe_workers", 0)):
            v = getattr(self, field)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
                raise ValueError(f"{field} must be an integer >= {low}; got {v!r}")
        given = [f for f in ("nproc_per_node", "nnodes", "node_rank", "rdzv_endpoint") if getattr(self, f) is not None]
        if given and self.launcher == "local":
            raise ValueError(
                f"{given[0]}={getattr(self, given[0])!r} applies to launcher 'torchrun' or 'print'; got launcher='local'"
            )
        nnodes = self.nnodes or 1
        if self.node_rank is not None and self.node_rank >= nnodes:
            raise ValueError(f"node_rank must be in [0, nnodes={nnodes}); got {self.node_rank!r}")
        if nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError(f"rdzv_endpoint (host:port of node 0) is required with nnodes={nnodes}; got {self.rdzv_endpoint!r}")
        if self.rdzv_endpoint is not None and ":" not in self.rdzv_endpoint:
            raise ValueError(f"rdzv_endpoint must be host:port; got {self.rdzv_endpoint!r}")

    @property
    def torchrun(self) -> bool:
        """Pretrain under torchrun: launcher torchrun, or print with any torchrun option given."""
        options = (self.nproc_per_node, self.nnodes, self.node_rank, self.rdzv_endpoint)
        return self.launcher == "torchrun" or (self.launcher == "print" and any(o is not None for o in options))

    @property
    def probes(self) -> bool:
        """Whether this node runs the probes (node 0 only, so each result is written once)."""
        return not self.node_rank

    def results(self, point: Point) -> Path:
        return Path(self.root) / point.sweep / "results.csv"

    def log(self, point: Point) -> Path:
        """``<run>.log`` beside the run directory (``<run>.nodeR.log`` on node R > 0: the folder may be shared)."""
        suffix = f".node{self.node_rank}.log" if self.node_rank else ".log"
        return point.run_dir.with_name(point.run_dir.name + suffix)

    def pretrain_command(self, point: Point) -> list[str]:
        if self.torchrun:
            head = [_torchrun(), "--nproc-per-node", str(self.nproc_per_node or 1)]
            if self.nnodes is not None:
                head += ["--nnodes", str(self.nnodes), "--node-rank", str(self.node_rank or 0)]
            if self.rdzv_endpoint is not None:
                head += ["--rdzv-endpoint", self.rdzv_endpoint]
            if (self.nnodes or 1) > 1:  # the other nodes wait at the rendezvous while node 0 probes
                head += ["--rdzv-conf", f"timeout={self.rdzv_timeout}"]
        else:
            head = [self.python]
        tail = ["--data-root", str(self.data_root)] if self.data_root is not None else []
        return [*head, "-m", "training.pretrain", *point.args, *tail, "--out", str(point.run_dir),
                "--no-progress", "--resume", *self.extra]

    def probe_command(self, point: Point) -> list[str]:
        cmd = [self.python, "-m", "training.linear_eval", "--run", str(point.run_dir), "--results", str(self.results(point)),
               "--seed", str(point.seed), "--no-progress"]
        if self.probe_epochs is not None:
            cmd += ["--epochs", str(self.probe_epochs)]
        if self.probe_workers is not None:
            cmd += ["--workers", str(self.probe_workers)]
        return cmd


def commands(point: Point, launch: Launch | None = None, state: str | None = None) -> list[list[str]]:
    """What a point still needs, by its ``state`` (default: :func:`status` of its run directory):
    done -> nothing; trained -> the probe; partial / new -> pretrain (``--resume``) then the probe.
    Nodes other than 0 run no probe."""
    launch = Launch() if launch is None else launch
    state = status(point.run_dir) if state is None else state
    if state not in STATES:
        raise ValueError(f"state={state!r} is not a run state; expected one of {list(STATES)}")
    cmds = [] if state in ("done", "trained") else [launch.pretrain_command(point)]
    if state != "done" and launch.probes:
        cmds.append(launch.probe_command(point))
    return cmds


def check_extra(extra: Sequence[str]) -> tuple[str, ...]:
    """The flags after ``--``, checked against training.pretrain's parser (a typo fails before any run)."""
    extra = tuple(extra)
    parser = pretrain_parser(suppress_defaults=True)
    parser.exit_on_error = False
    try:
        given, unknown = parser.parse_known_args(list(extra))
    except (argparse.ArgumentError, SystemExit) as exc:
        raise ValueError(f"extra pretrain flags {list(extra)!r}: {exc}") from None
    if unknown:
        raise ValueError(
            f"extra pretrain flags: {unknown!r} are not training.pretrain flags (see python -m training.pretrain --help)"
        )
    for dest in vars(given):
        if dest in FORBIDDEN_EXTRA:
            raise ValueError(f"extra pretrain flags: --{dest.replace('_', '-')} may not follow '--' ({FORBIDDEN_EXTRA[dest]})")
    return extra


def pretrain_config(point: Point, launch: Launch):
    """The resolved ``training.pretrain.PretrainConfig`` that the point's pretrain command would run;
    ValueError (naming the run) if training.pretrain would reject it."""
    cmd = launch.pretrain_command(point)
    try:
        return config_from_args(cmd[cmd.index("training.pretrain") + 1 :])[0].resolved()
    except ValueError as exc:
        raise ValueError(f"{point.name}: {exc}") from None


def conflicts(point: Point, launch: Launch) -> list[str]:
    """Settings where what ``point.run_dir`` holds differs from what this sweep would run now.

    ``RUN/config.json`` against training.pretrain's resolved config of the point's command (settings that
    do not change the numbers, e.g. ``--workers``, aside), and a finished probe's epochs and seed against
    the probe command's. A skipped point would otherwise silently keep results made with other settings
    (say, after changing the flags after ``--``). Each entry reads ``"setting: in the run -> now"``.
    A run with neither checkpoint nor probe result has nothing to keep (training.pretrain restarts it).
    """
    if not (point.run_dir / CHECKPOINT).is_file() and not (point.run_dir / RESULT).is_file():
        return []
    out = []
    try:
        saved = json.loads((point.run_dir / CONFIG).read_text())
    except (OSError, ValueError):
        saved = None
    if isinstance(saved, dict):
        now = dataclasses.asdict(pretrain_config(point, launch))
        out += changed_settings(saved, {k: v for k, v in now.items() if k in saved})
    try:
        row = json.loads((point.run_dir / RESULT).read_text())
    except (OSError, ValueError):
        row = None
    if isinstance(row, dict):
        want = {"probe_epochs": launch.probe_epochs or ProbeConfig(run="").epochs, "probe_seed": point.seed}
        out += [f"{k}: {row[k]!r} -> {v!r}" for k, v in want.items() if k in row and row[k] != v]
    return out


# ----------------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------------


def run_command(cmd: list[str], log: Path) -> int:
    """Run one command, its stdout and stderr appended to ``log``; returns the exit status."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"\n$ {shlex.join(cmd)}\n")
        f.flush()
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False).returncode


def _tail(log: Path, n: int = 3) -> str:
    try:
        lines = [l for l in log.read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return ""
    return "\n".join("    " + l for l in lines[-n:])


@dataclasses.dataclass
class Failure:
    """A point that did not finish: the step that failed, its exit status and where its output went."""

    point: Point
    step: str
    returncode: int
    log: Path
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.point.run_dir}: {self.step} failed (exit {self.returncode}); {self.detail or f'see {self.log}'}"


def run_point(point: Point, launch: Launch, runner: Callable[[list[str], Path], int] | None = None
              ) -> tuple[str, Failure | None]:
    """Run what one point still needs (skipping / resuming by :func:`status`, refusing a run made with other
    settings: :func:`conflicts`); returns a one-line account ("NAME: before -> after in N s, top-1 ...") and
    the failure, or None.

    ``runner(cmd, log) -> exit status`` runs one command of :func:`commands` (default :func:`run_command`: a
    subprocess with its output appended to ``log``); training.practice passes one that runs it in-process.
    """
    runner = run_command if runner is None else runner
    before = status(point.run_dir)
    start = time.perf_counter()
    log = launch.log(point)
    failed = None
    clash = conflicts(point, launch)
    if clash:
        failed = Failure(point, "settings check", 2, log, "the run was made with other settings (" + "; ".join(clash)
                         + "); delete it to redo it with these, or pass the old flags, or use another --root")
    for cmd in [] if clash else commands(point, launch, before):
        step = "probe" if "training.linear_eval" in cmd else "pretrain"
        rc = runner(cmd, log)
        if rc != 0:
            failed = Failure(point, step, rc, log)
            break
        if step == "pretrain" and launch.probes and status(point.run_dir) not in ("trained", "done"):
            # do not probe a half-trained network
            failed = Failure(point, step, rc, log, f"it exited 0 but {point.run_dir} holds no finished run; log {log}")
            break
    after = status(point.run_dir)
    head = f"{point.name}: {before}"
    if failed is not None:
        more = failed.detail or f"log {log}\n{_tail(log)}"
        msg = f"{head} -> FAILED at {failed.step} (exit {failed.returncode}); {more}"
    elif before == "done":
        msg = f"{head}, skipped"
    else:
        msg = f"{head} -> {after} in {time.perf_counter() - start:.0f} s"
        if after == "done":
            try:
                row = json.loads((point.run_dir / RESULT).read_text())
                msg += f", top-1 {row['top1']:.4f} top-5 {row['top5']:.4f}"
            except (OSError, ValueError, KeyError, TypeError):
                pass
    return msg.rstrip(), failed


def run_points(pts: Sequence[Point], launch: Launch, *, progress: bool = True) -> list[Failure]:
    """Run the points one after another (:func:`run_point`); returns the failures."""
    from tqdm.auto import tqdm

    from clop.util.progress import progress_bar

    failures: list[Failure] = []
    bar = progress_bar(pts, desc=f"sweep {pts[0].sweep}" if pts else "sweep", unit="point", enabled=progress)
    for i, point in enumerate(bar, 1):
        msg, failed = run_point(point, launch)
        if failed is not None:
            failures.append(failed)
        tqdm.write(f"[{i}/{len(pts)}] {msg}", file=sys.stderr)
    bar.close()
    return failures


def print_commands(pts: Sequence[Point], launch: Launch, file=None) -> tuple[int, list[str]]:
    """One shell line per unfinished point (``pretrain && probe`` or the probe alone) on ``file``.

    Returns how many lines, and the run directories left out because they hold a run made with other
    settings (:func:`conflicts`; one ``#`` line each on stderr)."""
    file = sys.stdout if file is None else file
    n, clashes = 0, []
    for point in pts:
        state = status(point.run_dir)
        clash = conflicts(point, launch)
        if clash:
            clashes.append(str(point.run_dir))
            print(f"# left out {point.run_dir}: made with other settings ({'; '.join(clash)})", file=sys.stderr)
            continue
        cmds = commands(point, launch, state)
        if cmds:
            print(" && ".join(shlex.join(c) for c in cmds), file=file)
            n += 1
    return n, clashes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.sweep",
        usage="python -m training.sweep NAME [options] [-- extra training.pretrain flags]",
        description="Run one of the CLOP paper's grids (Sec. 5: Figs. 6-7, Tables 1-3): pre-training + linear "
        "probe per point, finished points skipped, partial runs resumed. Flags after '--' go to every "
        "training.pretrain command and override the sweep's settings.",
        formatter_class=HelpFormatter,
        epilog="sweeps: " + "; ".join(f"{s.name}: {s.param} {[_fmt(v) for v in s.values]} ({s.source.split(':')[0]})"
                                      for s in SWEEPS.values()) + ". Variants: " + ", ".join(VARIANTS) + ".",
    )
    p.add_argument("name", metavar="NAME", choices=list(SWEEPS), help=f"sweep, one of {list(SWEEPS)}")
    p.add_argument("--dataset", choices=tdata.DATASETS, default=None,
                   help="dataset (default: cifar100; tiny-imagenet for augmentation, as in the paper)")
    p.add_argument("--data-root", default=None, help="dataset folder, passed to training.pretrain (default: its own)")
    p.add_argument("--root", default="runs/sweeps", help="runs go to ROOT/NAME/DATASET/<run>, results to ROOT/NAME/results.csv")
    p.add_argument("--variants", nargs="+", default=None, metavar="V",
                   help="only these variants (space or comma separated; default: all the sweep's)")
    p.add_argument("--values", nargs="+", default=None, metavar="X", help="only these grid values (default: the whole grid)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="S", help="one run per seed")
    p.add_argument("--launcher", choices=LAUNCHERS, default="local", help="run here, under torchrun, or print the commands")
    p.add_argument("--nproc-per-node", type=int, default=None, help="torchrun processes per node (default 1)")
    p.add_argument("--nnodes", type=int, default=None, help="torchrun nodes (several: start the sweep on each)")
    p.add_argument("--node-rank", type=int, default=None, help="this node's rank, 0 .. nnodes-1 (node 0 runs the probes)")
    p.add_argument("--rdzv-endpoint", default=None, help="host:port of node 0, for several nodes")
    p.add_argument("--rdzv-timeout", type=int, default=Launch.rdzv_timeout,
                   help="seconds the other nodes wait at a rendezvous (node 0 may be running a probe)")
    p.add_argument("--probe-epochs", type=int, default=None, help="linear-probe epochs (default: training.linear_eval's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar over the points")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = build_parser()
    args = parser.parse_args(own)
    split = lambda xs: None if xs is None else [x for s in xs for x in s.split(",") if x]  # noqa: E731
    try:
        pts = points(args.name, args.dataset, split(args.variants), args.seeds, values=split(args.values), root=args.root)
        launch = Launch(
            args.launcher, args.root, check_extra(extra), args.data_root, args.probe_epochs, args.nproc_per_node,
            args.nnodes, args.node_rank, args.rdzv_endpoint, args.rdzv_timeout,
        )
        for point in pts:  # training.pretrain's own checks, before anything runs
            pretrain_config(point, launch)
        if launch.launcher != "print":  # print only reads the run directories
            check_output_dir(args.root, "--root")
    except ValueError as exc:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    if launch.launcher == "print":
        n, clashes = print_commands(pts, launch)
        print(f"# {args.name}: {len(pts)} points, {n} to run, {len(clashes)} with other settings, "
              f"{len(pts) - n - len(clashes)} finished", file=sys.stderr)
        return 1 if clashes else 0
    failures = run_points(pts, launch, progress=not args.no_progress)
    if failures:
        print(f"{len(failures)} of {len(pts)} points failed:", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    done = "pre-trained (node 0 runs the probes)" if not launch.probes else "done"
    print(f"{args.name}: {len(pts)} points {done}; results in {Path(args.root) / args.name / 'results.csv'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
