"""Tests of training.sweep: the paper's grids as points, the commands, skip/resume logic and one real point.

The grids below are typed from the CLOP paper's text (Sec. 5, Tables 1-3; the lr grid is the sweep's
documented choice) and the point settings are read back through training.pretrain's own parser, so a
wrong flag or a wrong lr rule shows up as a mismatch. Only the last test launches real subprocesses
(ResNet-18 smoke run + probe on generated data, about 20 s on a 2-core CPU).
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
from pathlib import Path

import pandas as pd
import pytest

from training import sweep
from training.config import config_from_args
from training.sweeps.grid import VARIANTS, points
from training.sweeps.launch import Launch, commands, conflicts
from training.sweeps.state import status

# Independent expectations (paper Sec. 5 and Tables 1-3).
GRID = {
    "batch-size": [32, 64, 128, 256, 512, 1024, 2048],   # Sec. 5 / Fig. 6
    "lr": [0.1, 0.3, 1.0, 3.0, 10.0],                      # Fig. 7 "from 0.1 to 10" (grid: the sweep's choice)
    "lambda": [0.1, 0.5, 1.0, 1.5],                        # Table 1
    "similarity": ["cosine", "euclidean", "manhattan"],    # Table 2
    "augmentation": ["randaugment", "autoaugment", "simclr"],  # Table 3
}
# variant -> (loss, label fraction, clop lambda, prototypes or None when CLOP is off)
SIX = {
    "infonce10": ("infonce", 0.1, 0.0, None),
    "infonce10-clop": ("infonce", 0.1, 1.0, "orthonormal"),
    "infonce10-clop-etf": ("infonce", 0.1, 1.0, "etf"),
    "supcon100": ("supcon", 1.0, 0.0, None),
    "supcon100-clop": ("supcon", 1.0, 1.0, "orthonormal"),
    "supcon100-clop-etf": ("supcon", 1.0, 1.0, "etf"),
}
VARIANTS_OF = {"batch-size": list(SIX), "lr": list(SIX), "lambda": ["infonce10-clop", "supcon100-clop"],
               "similarity": ["infonce10-clop", "supcon100-clop"], "augmentation": ["infonce10-clop", "supcon100-clop"]}
DEFAULT_DATASET = {"batch-size": "cifar100", "lr": "cifar100", "lambda": "cifar100", "similarity": "cifar100",
                   "augmentation": "tiny-imagenet"}


def _cfg(point, tmp_path):
    cfg, _ = config_from_args([*point.args, "--out", str(tmp_path / "x")])
    return cfg.resolved()


# ------------------------------------------------------------------------------------ points


@pytest.mark.parametrize("name", list(GRID))
def test_points_cover_the_grid_times_the_variants_with_the_paper_settings(name, tmp_path):
    seeds = (0, 3)
    pts = points(name, seeds=seeds, root=tmp_path / "r")
    assert len(pts) == len(GRID[name]) * len(VARIANTS_OF[name]) * len(seeds)
    combos = {(p.value, p.variant, p.seed) for p in pts}
    assert combos == {(v, n, s) for v in GRID[name] for n in VARIANTS_OF[name] for s in seeds}
    assert len({p.run_dir for p in pts}) == len(pts)  # unique run dirs
    assert len({p.name for p in pts}) == len(pts)
    for p in pts:
        assert p.run_dir.parent == tmp_path / "r" / name / DEFAULT_DATASET[name]
        cfg = _cfg(p, tmp_path)
        loss, fraction, lam, protos = SIX[p.variant]
        assert (cfg.dataset, cfg.loss, cfg.label_fraction, cfg.seed) == (DEFAULT_DATASET[name], loss, fraction, p.seed)
        if protos is not None:
            assert cfg.prototypes == protos
        expected_lam = p.value if name == "lambda" else lam
        assert cfg.clop_lambda == pytest.approx(expected_lam)
        assert cfg.similarity == (p.value if name == "similarity" else "cosine")
        assert cfg.augmentation == (p.value if name == "augmentation" else "simclr")
        if name == "batch-size":
            assert cfg.batch_size == p.value
            assert cfg.lr == pytest.approx(0.3 * p.value / 256)  # Sec. 5: lr = 0.3 x batch / 256
        elif name == "lr":
            assert cfg.batch_size == 1024
            assert cfg.base_lr == pytest.approx(p.value * 256 / 1024)
            assert cfg.lr == pytest.approx(p.value)
        else:
            assert (cfg.batch_size, cfg.lr) == (1024, pytest.approx(0.3 * 1024 / 256))
        # the paper's tables used SupCon + CLOP; its figures all six
        assert p.in_paper == (name in ("batch-size", "lr") or p.variant == "supcon100-clop")


def test_the_six_variants_are_distinct_methods():
    methods = {(v.loss, v.label_fraction, v.clop_lambda > 0, v.prototypes if v.clop_lambda > 0 else None)
               for v in VARIANTS.values()}
    assert methods == {(l, f, lam > 0, p) for l, f, lam, p in SIX.values()}
    assert len(methods) == 6


def test_filters_select_variants_values_and_dataset(tmp_path):
    pts = points("lr", "tiny-imagenet", ["supcon100", "infonce10-clop-etf"], seeds=[1], values=["1", "10"], root=tmp_path)
    assert [(p.value, p.variant) for p in pts] == [(1.0, "infonce10-clop-etf"), (1.0, "supcon100"),
                                                   (10.0, "infonce10-clop-etf"), (10.0, "supcon100")]
    assert all(p.dataset == "tiny-imagenet" and p.run_dir.parent == tmp_path / "lr" / "tiny-imagenet" for p in pts)
    assert [p.value for p in points("similarity", values=["Manhattan"])] == ["manhattan"] * 2


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"name": "batchsize"}, "name='batchsize'"),
        ({"name": "lr", "dataset": "mnist"}, "dataset='mnist'"),
        ({"name": "lambda", "variants": ["supcon100"]}, "variants=['supcon100']"),
        ({"name": "lr", "values": [0.2]}, "values=[0.2]"),
        ({"name": "lr", "seeds": [0, 0]}, "seeds"),
        ({"name": "lr", "seeds": [-1]}, "seeds"),
    ],
)
def test_bad_arguments_name_themselves_and_the_accepted_values(kwargs, needle):
    with pytest.raises(ValueError) as info:
        points(**kwargs)
    assert needle in str(info.value)


def test_cli_rejects_bad_names_and_values_with_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        sweep.main(["learning-rate", "--launcher", "print"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "NAME" in err and "batch-size" in err and "augmentation" in err
    assert sweep.main(["lambda", "--variants", "infonce10", "--launcher", "print"]) == 2
    err = capsys.readouterr().err
    assert "variants" in err and "supcon100-clop" in err
    assert sweep.main(["lr", "--launcher", "print", "--", "--out", "x"]) == 2
    assert "--out" in capsys.readouterr().err
    assert sweep.main(["lr", "--launcher", "print", "--", "--no-such-flag"]) == 2
    assert "--no-such-flag" in capsys.readouterr().err
    assert sweep.main(["lr", "--nproc-per-node", "2"]) == 2  # torchrun option with the local launcher
    assert "launcher" in capsys.readouterr().err
    assert sweep.main(["lr", "--launcher", "print", "--", "--epochs", "5"]) == 2  # pretrain's own check: warm-up 10 > 5
    assert "warmup_epochs" in capsys.readouterr().err
    # a flag after -- may not set what the points set: every point would train the same run under its own name
    for argv, flag in ((["lr", "--", "--base-lr", "5"], "--base-lr"), (["batch-size", "--", "--batch-size", "16"],
                       "--batch-size"), (["lambda", "--", "--clop-lambda", "3"], "--clop-lambda")):
        assert sweep.main([argv[0], "--launcher", "print", *argv[1:]]) == 2
        assert f"{flag} may not follow '--'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ commands


def _split_line(line):
    return [shlex.split(part) for part in line.split(" && ")]


def test_print_launcher_prints_one_pretrain_and_probe_line_per_point(tmp_path, capsys):
    root = tmp_path / "sweeps"
    rc = sweep.main(["lambda", "--root", str(root), "--seeds", "0", "1", "--probe-epochs", "7", "--data-root", "D",
                     "--launcher", "print", "--", "--arch", "resnet18", "--epochs", "30"])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    pts = points("lambda", seeds=(0, 1), root=root)
    assert len(lines) == len(pts) == 4 * 2 * 2
    for line, p in zip(lines, pts):
        pre, probe = _split_line(line)
        assert pre[:3] == [sys.executable, "-m", "training.pretrain"]
        assert pre[-4:] == ["--arch", "resnet18", "--epochs", "30"]  # extra flags last: they win
        assert pre[pre.index("--out") + 1] == str(p.run_dir) and "--resume" in pre
        assert pre[pre.index("--data-root") + 1] == "D"
        assert float(pre[pre.index("--clop-lambda") + 1]) == p.value
        assert probe[:3] == [sys.executable, "-m", "training.linear_eval"]
        assert probe[probe.index("--run") + 1] == str(p.run_dir)
        assert probe[probe.index("--results") + 1] == str(root / "lambda" / "results.csv")
        assert probe[probe.index("--epochs") + 1] == "7"
        assert not (p.run_dir.exists() or p.run_dir.parent.exists())  # print runs nothing


def test_torchrun_commands_single_and_multi_node(tmp_path):
    p = points("batch-size", variants=["supcon100"], values=[64], root=tmp_path)[0]
    one = Launch("torchrun", tmp_path, extra=("--epochs", "1"), nproc_per_node=4)
    pre, probe = commands(p, one, "new")
    assert Path(pre[0]).name == "torchrun"
    assert pre[1:5] == ["--nproc-per-node", "4", "-m", "training.pretrain"]
    assert pre[5:] == [*p.args, "--out", str(p.run_dir), "--no-progress", "--resume", "--epochs", "1"]
    assert probe[:3] == [sys.executable, "-m", "training.linear_eval"]  # the probe is one process

    multi = Launch("torchrun", tmp_path, nproc_per_node=8, nnodes=2, node_rank=0, rdzv_endpoint="gpu-a:29500")
    pre, probe = commands(p, multi, "partial")
    assert pre[1:13] == ["--nproc-per-node", "8", "--nnodes", "2", "--node-rank", "0", "--rdzv-endpoint", "gpu-a:29500",
                         "--rdzv-conf", "timeout=3600", "-m", "training.pretrain"]
    assert "training.linear_eval" in probe
    other = Launch("torchrun", tmp_path, nproc_per_node=8, nnodes=2, node_rank=1, rdzv_endpoint="gpu-a:29500")
    (pre,) = commands(p, other, "new")  # node 1 trains, node 0 probes
    assert pre[pre.index("--node-rank") + 1] == "1"
    assert commands(p, other, "trained") == []

    # print with a torchrun option prints torchrun lines
    assert Path(commands(p, Launch("print", nproc_per_node=2), "new")[0][0]).name == "torchrun"
    assert commands(p, Launch("print"), "new")[0][0] == sys.executable


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"launcher": "slurm"}, "launcher='slurm'"),
        ({"launcher": "torchrun", "nnodes": 2}, "rdzv_endpoint"),
        ({"launcher": "torchrun", "nnodes": 2, "node_rank": 2, "rdzv_endpoint": "h:1"}, "node_rank"),
        ({"launcher": "torchrun", "nproc_per_node": 0}, "nproc_per_node"),
        ({"launcher": "torchrun", "nnodes": 2, "rdzv_endpoint": "nohost"}, "rdzv_endpoint"),
        ({"launcher": "local", "nnodes": 1}, "nnodes"),
        ({"probe_epochs": 0}, "probe_epochs"),
        ({"launcher": "torchrun", "rdzv_timeout": 0}, "rdzv_timeout"),
    ],
)
def test_bad_launch_settings_fail_naming_the_setting(kwargs, needle):
    with pytest.raises(ValueError) as info:
        Launch(**kwargs)
    assert needle in str(info.value)


# ------------------------------------------------------------------------------------ run states


def _write_trained(run: Path, epochs: int = 2, rows: int | None = None) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps({"epochs": epochs}))
    rows = epochs if rows is None else rows
    (run / "metrics.csv").write_text("epoch,loss\n" + "".join(f"{e},{1.0 / e}\n" for e in range(1, rows + 1)))
    (run / "checkpoint.pt").write_bytes(b"fake")


def _write_done(run: Path) -> None:
    _write_trained(run)
    (run / "linear_eval.json").write_text(json.dumps({"top1": 0.5, "top5": 0.9}))


def test_status_of_fake_run_directories(tmp_path):
    assert status(tmp_path / "missing") == "new"
    (tmp_path / "empty").mkdir()
    assert status(tmp_path / "empty") == "new"
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text(json.dumps({"epochs": 2}))
    assert status(tmp_path / "cfg") == "partial"
    _write_trained(tmp_path / "half", epochs=3, rows=2)
    assert status(tmp_path / "half") == "partial"
    _write_trained(tmp_path / "nockpt")
    (tmp_path / "nockpt" / "checkpoint.pt").unlink()
    assert status(tmp_path / "nockpt") == "partial"
    _write_trained(tmp_path / "full", epochs=3)
    assert status(tmp_path / "full") == "trained"
    # killed between the last metrics row and the last checkpoint: the checkpoint is older than the rows
    ckpt, metrics = tmp_path / "full" / "checkpoint.pt", tmp_path / "full" / "metrics.csv"
    os.utime(ckpt, ns=(metrics.stat().st_mtime_ns - 10**9,) * 2)
    assert status(tmp_path / "full") == "partial"
    os.utime(ckpt, ns=(metrics.stat().st_mtime_ns + 10**9,) * 2)
    assert status(tmp_path / "full") == "trained"
    _write_done(tmp_path / "done")
    assert status(tmp_path / "done") == "done"


class Recorder:
    """Stands in for training.sweeps.launch.run_command (the runner of sweep.main): records the commands, fakes their effect, fails where told."""

    def __init__(self, fail: dict[tuple[str, str], int] | None = None, finish: bool = True):
        self.calls: list[tuple[str, str, list[str]]] = []
        self.fail = fail or {}
        self.finish = finish

    def __call__(self, cmd, log):
        step = "probe" if "training.linear_eval" in cmd else "pretrain"
        run = Path(cmd[cmd.index("--out" if step == "pretrain" else "--run") + 1])
        self.calls.append((run.name, step, cmd))
        rc = self.fail.get((run.name, step), 0)
        if rc == 0 and step == "pretrain" and self.finish:
            _write_trained(run)
        if rc == 0 and step == "probe":
            (run / "linear_eval.json").write_text(json.dumps({"top1": 0.25, "top5": 0.5}))
        return rc


def _four_points(root: Path):
    pts = points("similarity", values=["cosine", "euclidean"], root=root)
    assert len(pts) == 4
    _write_done(pts[0].run_dir)
    _write_trained(pts[1].run_dir)
    _write_trained(pts[2].run_dir, epochs=2, rows=1)  # partial
    return pts  # pts[3]: new


def test_skip_logic_runs_only_what_each_point_needs(tmp_path, capsys):
    root = tmp_path / "sw"
    pts = _four_points(root)
    rec = Recorder()
    argv = ["similarity", "--values", "cosine,euclidean", "--root", str(root), "--no-progress",
            "--", "--epochs", "2", "--warmup-epochs", "0"]
    assert sweep.main(argv, runner=rec) == 0
    assert [(n, s) for n, s, _ in rec.calls] == [
        (pts[1].name, "probe"),
        (pts[2].name, "pretrain"), (pts[2].name, "probe"),
        (pts[3].name, "pretrain"), (pts[3].name, "probe"),
    ]
    for _, step, cmd in rec.calls:
        assert cmd[0] == sys.executable
        assert ("--resume" in cmd) == (step == "pretrain")
    err = capsys.readouterr().err
    assert "skipped" in err and "top-1 0.2500" in err
    assert all(status(p.run_dir) == "done" for p in pts)

    rec2 = Recorder()  # everything done now: nothing runs
    assert sweep.main(argv, runner=rec2) == 0
    assert rec2.calls == []


def test_print_skips_finished_points_and_probes_trained_ones(tmp_path, capsys):
    root = tmp_path / "sw"
    pts = _four_points(root)
    assert sweep.main(["similarity", "--values", "cosine", "euclidean", "--root", str(root), "--launcher", "print",
                       "--", "--epochs", "2", "--warmup-epochs", "0"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    parts = [[c[2] for c in _split_line(line)] for line in lines]
    assert parts == [["training.linear_eval"], ["training.pretrain", "training.linear_eval"],
                     ["training.pretrain", "training.linear_eval"]]
    assert str(pts[0].run_dir) not in "".join(lines)


def test_failures_are_collected_and_the_sweep_goes_on(tmp_path, capsys):
    root = tmp_path / "sw"
    pts = points("augmentation", root=root)
    bad_pre, bad_probe = pts[1].name, pts[4].name
    rec = Recorder(fail={(bad_pre, "pretrain"): 3, (bad_probe, "probe"): 1})
    assert sweep.main(["augmentation", "--root", str(root), "--no-progress", "--", "--epochs", "2", "--warmup-epochs", "0"],
                      runner=rec) == 1
    steps = [(n, s) for n, s, _ in rec.calls]
    assert (bad_pre, "probe") not in steps  # no probe after a failed pre-training
    assert [n for n, s in steps if s == "pretrain"] == [p.name for p in pts]  # every point was tried
    err = capsys.readouterr().err
    assert "2 of 6 points failed" in err
    assert f"{bad_pre}: pretrain failed (exit 3)" in err and f"{bad_probe}: probe failed (exit 1)" in err


def test_a_pretrain_that_exits_0_without_finishing_is_a_failure(tmp_path, capsys):
    root = tmp_path / "sw"
    rec = Recorder(finish=False)
    assert sweep.main(["lambda", "--values", "0.5", "--variants", "supcon100-clop", "--root", str(root), "--no-progress",
                       "--", "--epochs", "2", "--warmup-epochs", "0"], runner=rec) == 1
    assert [s for _, s, _ in rec.calls] == ["pretrain"]
    assert "pretrain failed (exit 0); it exited 0 but" in capsys.readouterr().err


def test_runs_made_with_other_settings_are_reported_not_skipped(tmp_path, capsys):
    root = tmp_path / "sw"
    pts = points("lambda", variants=["supcon100-clop"], values=[0.1, 0.5, 1.0], root=root)
    _write_trained(pts[0].run_dir)
    cfg = json.loads((pts[0].run_dir / "config.json").read_text())
    (pts[0].run_dir / "config.json").write_text(json.dumps({**cfg, "batch_size": 64, "workers": 3}))
    _write_done(pts[1].run_dir)
    (pts[1].run_dir / "linear_eval.json").write_text(json.dumps({"top1": 0.5, "probe_epochs": 5, "probe_seed": 0}))
    _write_trained(pts[2].run_dir)
    (pts[2].run_dir / "config.json").write_text(json.dumps({**cfg, "workers": 3, "data_root": "elsewhere"}))
    rec = Recorder()
    argv = ["lambda", "--values", "0.1", "0.5", "1", "--variants", "supcon100-clop", "--root", str(root),
            "--probe-epochs", "7", "--no-progress", "--", "--epochs", "2", "--warmup-epochs", "0"]
    assert sweep.main(argv, runner=rec) == 1
    # workers and data_root do not change the numbers: the third run is only probed
    assert [(n, s) for n, s, _ in rec.calls] == [(pts[2].name, "probe")]
    err = capsys.readouterr().err
    assert "batch_size: 64 -> 1024" in err and "workers" not in err.split("2 of 3")[1]
    assert "probe_epochs: 5 -> 7" in err and "2 of 3 points failed" in err
    assert sweep.main(["--launcher", "print", *argv]) == 1  # print leaves them out and says so
    out, err = capsys.readouterr()
    assert out == "" and err.count("# left out") == 2


def test_a_run_without_checkpoint_is_no_conflict_and_settings_that_keep_the_numbers_are_none(tmp_path):
    (p,) = points("similarity", variants=["infonce10-clop"], values=["cosine"], root=tmp_path)
    launch = Launch(extra=("--epochs", "2", "--warmup-epochs", "0"))
    p.run_dir.mkdir(parents=True)
    (p.run_dir / "config.json").write_text(json.dumps({"epochs": 9, "loss": "dcl"}))
    assert conflicts(p, launch) == []  # killed before its first checkpoint: pretrain restarts it
    (p.run_dir / "checkpoint.pt").write_bytes(b"fake")
    assert sorted(conflicts(p, launch)) == ["epochs: 9 -> 2", "loss: 'dcl' -> 'infonce'"]
    (p.run_dir / "config.json").write_text(json.dumps({"epochs": 2, "loss": "infonce", "workers": 99, "device": "cuda:3"}))
    assert conflicts(p, launch) == []


# ------------------------------------------------------------------------------------ one real point


@pytest.mark.slow
def test_one_real_point_end_to_end_then_skipped(tmp_path, monkeypatch, capsys):
    # one thread in the subprocesses: on a shared 2-core CPU the small convolutions run faster that way
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    root, data = tmp_path / "sweeps", tmp_path / "data"
    argv = ["batch-size", "--dataset", "synthetic", "--data-root", str(data), "--root", str(root),
            "--variants", "supcon100-clop", "--values", "32", "--probe-epochs", "5", "--no-progress",
            "--", "--smoke", "--arch", "resnet18", "--epochs", "1", "--warmup-epochs", "0", "--steps-per-epoch", "2",
            "--device", "cpu"]
    (point,) = points("batch-size", "synthetic", ["supcon100-clop"], values=[32], root=root)
    rc = sweep.main(argv)
    log = point.run_dir.with_name(point.name + ".log")
    assert rc == 0, log.read_text() if log.exists() else "no log"
    assert status(point.run_dir) == "done"
    results = pd.read_csv(root / "batch-size" / "results.csv")
    assert len(results) == 1
    row = results.iloc[0]
    assert (row["dataset"], row["loss"], row["arch"]) == ("synthetic", "supcon", "resnet18")
    assert (row["batch_size"], row["epochs"]) == (32, 1)
    assert (row["clop_lambda"], row["label_fraction"], row["prototypes"], row["probe_epochs"]) == (1.0, 1.0, "orthonormal", 5)
    assert math.isclose(row["base_lr"], 0.3) and 0.0 <= row["top1"] <= row["top5"] <= 1.0

    assert sweep.main(argv) == 0  # relaunch: the point is skipped
    assert len(pd.read_csv(root / "batch-size" / "results.csv")) == 1
    assert sweep.main([*argv, "--epochs", "2"]) == 1  # other settings: reported, nothing run
    assert "epochs: 1 -> 2" in capsys.readouterr().err
    assert len(pd.read_csv(root / "batch-size" / "results.csv")) == 1
