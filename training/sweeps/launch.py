"""How the points of a sweep run: locally one after another, under torchrun, or printed as shell lines.

Launchers (:data:`LAUNCHERS`):

* ``local``: the points one after another, each as ``python -m training.pretrain ... --resume`` then
  ``python -m training.linear_eval --run RUN --results ROOT/NAME/results.csv``. A point whose probe result exists
  is skipped, one whose pre-training finished only gets its probe, a partial run is resumed
  (:func:`training.sweeps.state.status`). A failing point is reported and the sweep goes on. A run directory
  that holds a run made with other settings is reported as failed and left alone, rather than skipped as
  finished (:func:`conflicts`).
* ``torchrun``: the same, with pre-training under ``torchrun --nproc-per-node N -m training.pretrain`` (the
  probe stays one process); several machines run the same sweep, torchrun's static rendezvous at
  ``rdzv_endpoint`` joining them for each pre-training, node 0 running the probes.
* ``print``: one shell line per unfinished point (``pretrain && linear_eval``, or the probe alone) for a cluster
  scheduler; nothing runs. Given any torchrun option, the lines use torchrun.

Each point's console output goes to ``<run>.log`` beside its run directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from clop.util.progress import progress_bar
from training.config import (
    PretrainConfig,
    ProbeConfig,
    changed_settings,
    config_from_args,
    parse_pretrain_args,
)
from training.engine.rundir import CHECKPOINT, CONFIG, PROBE_RESULT
from training.sweeps.grid import Point
from training.sweeps.state import STATES, status

__all__ = ["LAUNCHERS", "FORBIDDEN_EXTRA", "Runner", "Launch", "commands", "check_extra", "check_extra_against_points",
           "pretrain_config", "conflicts", "run_command", "Failure", "run_point", "run_points", "print_commands"]

LAUNCHERS = ("local", "torchrun", "print")
FORBIDDEN_EXTRA = {"out": "the sweep names the run directories", "seed": "use the sweep's --seeds",
                   "dataset": "use the sweep's --dataset", "data_root": "use the sweep's --data-root",
                   "overwrite": "delete the run directory to start a point again"}
"""training.pretrain flags that may not follow ``--``: they would break the run-directory layout or the resume."""
Runner = Callable[[list[str], Path], int]
"""Runs one command of a point, its output appended to the log file; returns the exit status."""


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
    try:
        _, given, unknown = parse_pretrain_args(list(extra), known=True, exit_on_error=False)
    except (argparse.ArgumentError, SystemExit) as exc:
        raise ValueError(f"extra pretrain flags {list(extra)!r}: {exc}") from None
    if unknown:
        raise ValueError(
            f"extra pretrain flags: {unknown!r} are not training.pretrain flags (see python -m training.pretrain --help)"
        )
    for dest in sorted(given, key=lambda d: _position(extra, d)):  # the first one given is named
        if dest in FORBIDDEN_EXTRA:
            raise ValueError(f"extra pretrain flags: --{dest.replace('_', '-')} may not follow '--' ({FORBIDDEN_EXTRA[dest]})")
    return extra


def check_extra_against_points(extra: Sequence[str], pts: Sequence[Point]) -> None:
    """ValueError when a flag after ``--`` sets what a point of the sweep sets itself (the swept value, or a
    setting of the variant): it would override that value on every point, so the points would all train the
    same run under different names."""
    if not extra:
        return
    _, given, _ = parse_pretrain_args(list(extra), known=True, exit_on_error=False)
    owned = set().union(*(parse_pretrain_args(list(p.args), known=True, exit_on_error=False)[1] for p in pts))
    clash = sorted(given & owned, key=lambda d: _position(extra, d))
    if clash:
        flag = "--" + clash[0].replace("_", "-")
        raise ValueError(f"extra pretrain flags: {flag} may not follow '--': the sweep's points set it themselves "
                         "(the swept value or the variant's setting)")


def _position(argv: Sequence[str], dest: str) -> int:
    """Where the flag of ``dest`` (or an abbreviation of it) first appears in ``argv``."""
    flag = "--" + dest.replace("_", "-")
    hits = [i for i, a in enumerate(argv) if len(a.split("=")[0]) > 2 and flag.startswith(a.split("=")[0])]
    return hits[0] if hits else len(argv)


def pretrain_config(point: Point, launch: Launch) -> PretrainConfig:
    """The resolved :class:`training.config.PretrainConfig` that the point's pretrain command would run;
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
    if not (point.run_dir / CHECKPOINT).is_file() and not (point.run_dir / PROBE_RESULT).is_file():
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
        row = json.loads((point.run_dir / PROBE_RESULT).read_text())
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


def run_point(point: Point, launch: Launch, runner: Runner | None = None) -> tuple[str, Failure | None]:
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
                row = json.loads((point.run_dir / PROBE_RESULT).read_text())
                msg += f", top-1 {row['top1']:.4f} top-5 {row['top5']:.4f}"
            except (OSError, ValueError, KeyError, TypeError):
                pass
    return msg.rstrip(), failed


def run_points(pts: Sequence[Point], launch: Launch, *, progress: bool = True, runner: Runner | None = None
               ) -> list[Failure]:
    """Run the points one after another (:func:`run_point` with ``runner``); returns the failures."""
    failures: list[Failure] = []
    bar = progress_bar(pts, desc=f"sweep {pts[0].sweep}" if pts else "sweep", unit="point", enabled=progress)
    for i, point in enumerate(bar, 1):
        msg, failed = run_point(point, launch, runner)
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
