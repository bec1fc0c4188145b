"""Tests of simulations.lclass.engine: the two engines (the native CPU kernel and the batched torch engine)
decide alike and like the per-vector reference, the drift guard, and the fallback to torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from simulations import native_build
from simulations.lclass import native
from simulations.lclass.engine import (
    CHECK_EVERY,
    CPU_CHUNK_BYTES,
    RENORM_EVERY,
    STABLE_MEAN,
    STABLE_REACH,
    Batch,
    decide,
    engine_name,
)
from simulations.lclass.model import COLLAPSE_TOL, initial_embeddings, reduce_coordinates
from simulations.lclass.search import sweep
from tests.helpers import REPO
from tests.simulations.lclass.helpers import (
    native_or_skip,
    reference_run,
    shrinking_rows_case,
    threshold_etas,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("engine", ["native", "torch"])
def test_each_engine_equals_the_per_vector_reference(engine):
    """Both engines against the per-vector loop; the ks cover padding to 4 rows / 8 columns and K < 16."""
    if engine == "native":
        native_or_skip()
    ks, m, steps = [3, 4, 7, 9], 12, 150
    cs = sweep(ks, m, [1.0, 2.7, 4.5], trials=2, steps=steps, seed=4, device="cpu", engine=engine)
    for a, k in enumerate(ks):
        x0 = initial_embeddings(k, m, 2, seed=4)
        for t in range(2):
            for j, eta in enumerate([1.0, 2.7, 4.5]):
                _, norms = reference_run(x0[t].numpy(), eta, steps)
                hits = [s for s, v in enumerate(norms) if v >= 1 - COLLAPSE_TOL]
                assert cs[a, t, j] == (hits[0] if hits else -1), (engine, k, t, eta)
    assert (cs >= 0).any() and (cs < 0).any()


@pytest.mark.parametrize("engine", ["native", "torch"])
def test_engines_equal_the_reference_where_rows_keep_shrinking(engine):
    """Tracked row norms are renormalised before their error can grow (DRIFT_R): without that, both engines
    reported runs collapsed here that the per-vector reference (and a 60-digit computation) does not collapse."""
    if engine == "native":
        native_or_skip()
    _, expected = shrinking_rows_case()
    cs = sweep([3], 2, [2.5], trials=40, steps=400, seed=1, device="cpu", engine=engine)[0, :, 0]
    np.testing.assert_array_equal(cs, expected)


def test_tracked_norm_error_stays_bounded_with_the_drift_guard_and_explodes_without():
    """The mechanism, on the torch engine's state: the relative error of the tracked norms, max over rows and
    steps |(||z_i|| / r_i) - 1| within the first 25 steps (before the periodic renormalisation at 32),
    grows by ~1/f ~ 5 a step without the guard (round-off of 1e-16 reaches order 1e-1 by step 20, whatever
    its first bits) and stays near round-off / DRIFT_R^2 with it."""

    def worst_error(drift_r: float) -> float:
        x0 = initial_embeddings(3, 2, 40, seed=1).double()
        b = Batch(x0, torch.full((40,), 3.0, dtype=torch.float64), torch.full((40,), 2.5, dtype=torch.float64),
                  torch.arange(40), drift_r=drift_r)
        worst = 0.0
        for _ in range(25):
            mu = b.mean()
            b.step(mu, (mu * mu).sum(-1))
            worst = max(worst, float((torch.linalg.vector_norm(b.z, dim=-1) / b.r - 1).abs().max()))
        return worst

    assert worst_error(native.DRIFT_R) < 1e-8
    assert worst_error(0.0) > 1e-2  # the guard switched off


def test_renormalising_no_row_leaves_the_state_bit_identical():
    """On CUDA the torch engine calls renormalise_rows at every step (no host sync), so with no row flagged it
    must change nothing; with one row flagged, only that row (now unit, r = 1)."""
    x0 = initial_embeddings(5, 7, 3, seed=2).double()
    b = Batch(x0, torch.full((3,), 5.0, dtype=torch.float64), torch.full((3,), 1.7, dtype=torch.float64),
              torch.arange(3))
    for _ in range(3):
        mu = b.mean()
        b.step(mu, (mu * mu).sum(-1))
    z, r = b.z.clone(), b.r.clone()
    b.renormalise_rows(torch.zeros_like(r, dtype=torch.bool))
    assert torch.equal(b.z, z) and torch.equal(b.r, r)
    flag = torch.zeros_like(r, dtype=torch.bool)
    flag[1, 2] = True
    b.renormalise_rows(flag)
    assert torch.equal(b.z[~flag], z[~flag]) and torch.equal(b.r[~flag], r[~flag])
    assert b.r[1, 2] == 1.0 and abs(float(torch.linalg.vector_norm(b.z[1, 2])) - 1.0) < 1e-15


def test_native_and_torch_engines_make_the_same_decisions():
    """Same collapse step and same decision step (early exit) for every run, across the threshold."""
    native_or_skip()
    ks = [3, 4, 5, 8, 12, 15, 16, 17, 31, 33, 40]
    inits, kk, ee = [], [], []
    for k in ks:
        c0, _ = reduce_coordinates(initial_embeddings(k, 40, 2, seed=7))
        for t in range(2):
            for eta in threshold_etas(k):
                inits.append(c0[t])
                kk.append(k)
                ee.append(eta)
    for early_exit in (True, False):
        kw = dict(steps=700, tol=COLLAPSE_TOL, dev=torch.device("cpu"), chunk_bytes=CPU_CHUNK_BYTES,
                  early_exit=early_exit)
        nat = decide(inits, kk, ee, engine="native", **kw)
        tor = decide(inits, kk, ee, engine="torch", **kw)
        np.testing.assert_array_equal(nat[0], tor[0])  # first collapse step
        np.testing.assert_array_equal(nat[1], tor[1])  # step at which the run was decided
        assert (nat[0] >= 0).sum() > len(inits) // 4 and (nat[0] < 0).sum() > len(inits) // 4
        if early_exit:
            assert (nat[1] < 700).any()  # some runs were decided early, by both engines alike
    # several threads, small groups of runs: the same answers (each run is independent of the others)
    par = native.decide(inits, kk, ee, steps=700, tol=COLLAPSE_TOL, early_exit=True, check_every=CHECK_EVERY,
                        renorm_every=RENORM_EVERY, stable_mean=STABLE_MEAN, stable_reach=STABLE_REACH,
                        group_bytes=4096, threads=3)
    seq = decide(inits, kk, ee, engine="native", steps=700, tol=COLLAPSE_TOL, dev=torch.device("cpu"),
                 chunk_bytes=CPU_CHUNK_BYTES, early_exit=True)
    np.testing.assert_array_equal(par[0], seq[0])
    np.testing.assert_array_equal(par[1], seq[1])


_NO_COMPILER = """
import json
from simulations.lclass import native
from simulations.lclass.engine import engine_name
from simulations.lclass.search import sweep
assert not native.available()
assert "no C compiler" in engine_name("cpu"), engine_name("cpu")
try:
    sweep([3], 10, [1.0], steps=5, device="cpu", engine="native")
except RuntimeError as exc:
    assert "engine='native'" in str(exc), exc
else:
    raise AssertionError("engine='native' without a compiler did not raise")
print(json.dumps(sweep([3, 6], 10, [1.0, 3.0], trials=2, steps=120, device="cpu").tolist()))
"""


def test_engine_falls_back_to_torch_without_a_compiler(monkeypatch, tmp_path):
    """A fresh process whose $CC does not exist uses the torch engine and gives its answers; the environment
    switch does the same in this process."""
    expected = sweep([3, 6], 10, [1.0, 3.0], trials=2, steps=120, device="cpu", engine="torch")
    env = {**os.environ, "CC": "/nonexistent/cc", native_build.ENV_CACHE: str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", _NO_COMPILER], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == expected.tolist()
    monkeypatch.setenv(native.ENV_SWITCH, "0")  # switched off by the environment
    assert engine_name("cpu").startswith("torch (native kernel switched off")
    np.testing.assert_array_equal(sweep([3, 6], 10, [1.0, 3.0], trials=2, steps=120, device="cpu"), expected)
    with pytest.raises(ValueError, match="engine"):
        sweep([3], 10, [1.0], steps=5, device="cpu", engine="fast")
