"""The entry points of simulations/ and the benchmarks that use them: every flag of before the packages were
split is still there with its default, each script runs as a file and as a module, the L_class benchmark
refuses bad settings, and benchmarks/gpu_check.sh (runnable only on a GPU) does its bookkeeping.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO, no_compute

# Option strings and defaults of every entry point as they were before simulations/ was split into packages
# (from their --help output); the flags must stay exactly these, with these defaults.
OLD_OPTIONS = {
    "lr_bound": ["-h", "--help", "--ks", "--m", "--trials", "--steps", "--resolution", "--spectra-k", "--spectra-steps",
                 "--spectra-every", "--seed", "--device", "--out", "--threads"],
    "dimensional_collapse": ["-h", "--help", "--ks", "--m", "--eta", "--steps", "--trials", "--record-every", "--seed",
                             "--device", "--out", "--threads"],
    "synthetic_ffn": ["-h", "--help", "--seeds", "--seed", "--epochs", "--batch-size", "--lr", "--hidden", "--directions",
                      "--min-angle", "--magnitudes", "--losses", "--out", "--device", "--loss-mode", "--chunk",
                      "--threads", "--no-progress"],
    "table5_seeds": ["-h", "--help", "--pool", "--sizes", "--bootstrap", "--regimes", "--out", "--device", "--chunk",
                     "--threads", "--no-progress"],
    "bench_ffn": ["-h", "--help", "--seeds", "--epochs", "--chunks", "--losses", "--device", "--threads", "--no-retain"],
    "bench_lclass": ["-h", "--help", "--ks", "--m", "--etas", "--trials", "--steps", "--seed", "--device", "--threads",
                     "--skip-reduced-loop", "--skip-torch-engine", "--repeat"],
}
OLD_DEFAULTS = {
    "lr_bound": dict(ks=list(range(3, 101)), m=100, trials=5, steps=2000, resolution=1e-3, spectra_k=None,
                     spectra_steps=1000, spectra_every=20, seed=0, device=None, out="paper_figures", threads=1),
    "dimensional_collapse": dict(ks=[10, 30], m=100, eta=0.2, steps=300, trials=10, record_every=5, seed=0,
                                 device=None, out="paper_figures", threads=1),
    "synthetic_ffn": dict(seeds=100, seed=0, epochs=200, batch_size=100, lr=0.01, hidden=32, directions="random",
                          min_angle=45.0, magnitudes="uniform", losses=["infonce", "dcl", "vicreg", "barlowtwins"],
                          out="paper_figures", device=None, loss_mode="auto", chunk=None, threads=1, no_progress=False),
    "table5_seeds": dict(pool=400, sizes=[10, 20, 40, 60, 100, 200], bootstrap=2000,
                         regimes=["separable", "overlapping"], out="paper_figures", device=None, chunk=None, threads=1,
                         no_progress=False),
    "bench_ffn": dict(seeds=64, epochs=5, chunks=[8, 16, 32, 64], losses=["infonce", "vicreg"], device=None, threads=1,
                      no_retain=False),
    "bench_lclass": dict(ks=list(range(3, 101)), m=100, etas=[1.0, 2.0, 2.1, 2.5], trials=5, steps=200, seed=0,
                         device=None, threads=1, skip_reduced_loop=False, skip_torch_engine=False, repeat=1),
}
# Flags added since, after the old ones, with their defaults.
NEW_OPTIONS = {
    "synthetic_ffn": ["--engine", "--workers"],
    "bench_ffn": ["--engine", "--workers", "--rounds", "--regime-seeds", "--regime-epochs"],
    "bench_lclass": ["--kernel-threads", "--kernel-source"],
}
NEW_DEFAULTS = {  # and defaults changed since, on purpose
    # --seeds 100 -> 200: the seed study's rule, rerun on the native engine's pool (docs/simulations.md)
    "synthetic_ffn": dict(engine="auto", workers=None, seeds=200),
    "bench_ffn": dict(engine="auto", workers=None, rounds=3, regime_seeds=64, regime_epochs=5),
    "bench_lclass": dict(kernel_threads=None, kernel_source=None),
}
SCRIPTS = {"lr_bound": "simulations/lr_bound.py", "dimensional_collapse": "simulations/dimensional_collapse.py",
           "synthetic_ffn": "simulations/synthetic_ffn.py", "table5_seeds": "simulations/table5_seeds.py",
           "bench_ffn": "benchmarks/bench_ffn.py", "bench_lclass": "benchmarks/bench_lclass.py"}


def _module(name: str):
    """The entry point's module: simulations.<name>, or benchmarks/<name>.py imported from its folder."""
    if name.startswith("bench_"):
        sys.path.insert(0, str(REPO / "benchmarks"))
        try:
            return importlib.import_module(name)
        finally:
            sys.path.remove(str(REPO / "benchmarks"))
    return importlib.import_module(f"simulations.{name}")


def option_strings(help_text: str) -> list[str]:
    """The option strings listed under "options:" of an argparse --help text, in order."""
    opts = []
    for line in help_text.split("options:", 1)[1].splitlines():
        m = re.match(r"^  (-[^ ].*?)(?:  |$)", line)
        if m:
            opts += [part.split()[0] for part in m.group(1).split(", ")]
    return opts


def _help(*how: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *how, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_old_flag_is_still_there_with_its_default(name):
    parser = _module(name).build_parser()
    assert option_strings(parser.format_help()) == OLD_OPTIONS[name] + NEW_OPTIONS.get(name, [])
    assert vars(parser.parse_args([])) == {**OLD_DEFAULTS[name], **NEW_DEFAULTS.get(name, {})}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_scripts_run_as_files(name):
    out = _help(SCRIPTS[name])
    assert out.returncode == 0, out.stderr
    assert "usage" in out.stdout and option_strings(out.stdout) == OLD_OPTIONS[name] + NEW_OPTIONS.get(name, [])


@pytest.mark.parametrize("name", ["lr_bound", "dimensional_collapse", "synthetic_ffn", "table5_seeds"])
def test_scripts_run_as_modules(name):
    out = _help("-m", f"simulations.{name}")
    assert out.returncode == 0, out.stderr
    assert option_strings(out.stdout) == OLD_OPTIONS[name] + NEW_OPTIONS.get(name, [])


def test_benchmark_refuses_bad_settings_without_printing_a_speed_up(monkeypatch, capsys):
    bench_lclass = _module("bench_lclass")
    monkeypatch.setattr(bench_lclass, "sweep", no_compute)
    for argv, message in [(["--steps", "0"], "--steps must be an integer >= 1; got 0"),
                          (["--device", "nonsense"], "--device='nonsense'"),
                          (["--etas", "nan"], "--etas must be a finite number > 0; got nan"),
                          (["--trials", "1000000000"], "--trials 1000000000")]:
        with pytest.raises(SystemExit) as info:
            bench_lclass.main(argv)
        captured = capsys.readouterr()
        assert info.value.code == 2 and message in captured.err and "speed-up" not in captured.out


def test_benchmark_compares_another_kernel_source_bit_for_bit(tmp_path, capsys):
    """--kernel-source times a kernel built from another C file beside the packaged one: the packaged source
    itself agrees bit for bit (exit 0); a source whose dot products add their eight lanes in another order does
    not (exit 1), and a missing file is refused."""
    from simulations.lclass import native

    if not native.available():
        pytest.skip(f"the native kernel is not available: {native.status()}")
    bench_lclass = _module("bench_lclass")
    small = ["--ks", "3", "7", "20", "--m", "20", "--trials", "2", "--steps", "120", "--etas", "2.0", "3.5",
             "--skip-reduced-loop", "--skip-torch-engine"]
    same = tmp_path / "same.c"
    same.write_text(native.kernel_source())
    assert bench_lclass.main([*small, "--kernel-source", str(same)]) == 0
    assert "the same collapse steps and final states, bit for bit: True" in capsys.readouterr().out
    source = native.kernel_source()
    tree = "((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))"
    assert tree in source
    other = tmp_path / "other.c"
    other.write_text(source.replace(tree, "((((((a[0] + a[1]) + a[2]) + a[3]) + a[4]) + a[5]) + a[6]) + a[7]"))
    assert bench_lclass.main([*small, "--kernel-source", str(other)]) == 1
    assert "bit for bit: False" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        bench_lclass.main([*small, "--kernel-source", str(tmp_path / "missing.c")])
    assert info.value.code == 2 and "--kernel-source must name a C source file" in capsys.readouterr().err


def test_gpu_check_script_dry_run_and_failure_bookkeeping(tmp_path):
    script = REPO / "benchmarks" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    out = subprocess.run(["bash", str(script), "--dry-run", "--summary", str(tmp_path / "s.txt")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for step, piece in [("env", "torch.cuda.is_available()"), ("cuda_tests", "-m pytest"),
                        ("train_step", "bench_train_step.py --device cuda"),
                        ("loader", "bench_loader.py --device cuda --dataset synthetic"),
                        ("pretrain", "training.pretrain --smoke --image-size 32 --epochs 2 --device cuda"),
                        ("lr_bound", "simulations/lr_bound.py --device cuda"), ("ffn", "bench_ffn.py --device cuda"),
                        ("table5", "synthetic_ffn.py --device cuda")]:
        line = next(ln for ln in out.stdout.splitlines() if ln.startswith(f"[{step}]"))
        assert piece in line, line
    t5_line = next(ln for ln in out.stdout.splitlines() if ln.startswith("[table5]"))
    assert 'engine=\"fused\"' in t5_line and 'engine=\"autograd\"' in t5_line, "the fused path is checked on the GPU"
    lr_line = next(ln for ln in out.stdout.splitlines() if ln.startswith("[lr_bound]"))
    assert "lr_bound.py --device cpu" in lr_line and "max_lr" in lr_line, "on CUDA Figure 3 is compared with the CPU's"
    assert not (tmp_path / "s.txt").exists()  # a dry run runs nothing and writes nothing
    # every step runs and is recorded even when the ones before it fail; the exit status says so
    out = subprocess.run(["bash", str(script), "--device", "cpu", "--only", "env,lr_bound", "--python", "false",
                          "--summary", str(tmp_path / "s.txt"), "--work", str(tmp_path / "work")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    summary = (tmp_path / "s.txt").read_text().splitlines()
    assert [ln.split()[:3] for ln in summary[3:5]] == [["env", "FAIL", "rc=1"], ["lr_bound", "FAIL", "rc=1"]]
    assert summary[-1].startswith("total: 0 ok, 2 failed, 0 skipped")
    bad = subprocess.run(["bash", str(script), "--only", "nonsense"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown step" in bad.stderr
    bad = subprocess.run(["bash", str(script), "--dry-run", "--device", "tpu"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--device must be cuda, cuda:N or cpu; got tpu" in bad.stderr
