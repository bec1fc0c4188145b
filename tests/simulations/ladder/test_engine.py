"""Rung 1's engine and searches (simulations.rungs.free, engine, search) on small cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simulations.rungs.engine import run
from simulations.rungs.free import FreeEmbeddings, batch_indices, initial_views
from simulations.rungs.linearise import fixed_point
from simulations.rungs.problem import Problem
from simulations.rungs.search import critical_steps
from simulations.rungs.summary import mid
from theory import linearisation as lin

pytestmark = pytest.mark.usefixtures("one_thread")


def test_starts_are_unit_seeded_and_shared_across_losses():
    a = initial_views(Problem.make("infonce", 3, 2, d=7), 1)
    b = initial_views(Problem.make("supcon", 3, 2, d=7), 1)
    assert torch.equal(a, b) and torch.allclose(a.norm(dim=-1), torch.ones(2, 6, dtype=torch.float64))
    assert not torch.equal(a, initial_views(Problem.make("infonce", 3, 2, d=7), 2))


def test_minibatches_cover_every_instance_once_per_epoch_and_only_the_batch_moves():
    p = Problem.make("infonce", 3, 2, d=7, batch=2)
    seen = torch.cat([batch_indices(p, 0, t) for t in range(3)])
    assert sorted(seen.tolist()) == list(range(6))
    rung = FreeEmbeddings(p)
    state = rung.init([0])
    new = rung.step(state, torch.tensor([1.0], dtype=torch.float64), 0)
    moved = (new["z"] - state["z"]).abs().amax(dim=(0, 1, 3)) > 1e-12  # others: only round-off of the renormalisation
    assert moved.nonzero().reshape(-1).tolist() == sorted(batch_indices(p, 0, 0).tolist())


def test_embedding_step_equals_lr_over_the_renormalisation_for_small_steps():
    p = Problem.make("infonce", 3, 1, tau=0.5)
    rec = run(FreeEmbeddings(p), [0], [1e-3], 1, loss_opt=0.0, rank_opt=2)
    assert rec["eta_emb0"][0] == pytest.approx(1e-3, rel=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("loss,tau,from_optimum", [("lclass", None, False), ("infonce", 0.5, True)])
def test_prediction_matches_simulation_within_the_finite_horizon_excess(loss, tau, from_optimum):
    """Small cases: the measured onset at T steps lies within (the excess measured by doubling T) + resolution
    of the linearisation's critical step, and the excess shrinks with the horizon. L_class from random starts;
    InfoNCE from its optimum (from random starts it can fail earlier: see test_infonce_random_starts...)."""
    p = Problem.make(loss, 3, 1, tau=tau)
    fp = fixed_point(p)
    pred = lin.lclass_critical_step(6) if loss == "lclass" else lin.simplex_critical_step(3, 2, tau)[0]
    res = 0.01
    mids = {}
    for steps in (300, 600):
        rung = FreeEmbeddings(p, start=fp.z if from_optimum else None)
        _, ev = critical_steps(rung, [0, 1], pred, steps=steps, loss_opt=fp.loss, rank_opt=fp.rank,
                               resolution=res)
        fail = [e for e in ev if e["event"] == "failure"]
        assert all(e["status"] == "bracketed" for e in fail)
        mids[steps] = np.median(mid([e["lo"] for e in fail], [e["hi"] for e in fail]))
    excess = max(0.0, mids[300] / mids[600] - 1.0)
    assert abs(math.log(mids[300] / pred)) <= math.log1p(excess) + 2 * math.log1p(res)
    assert abs(math.log(mids[600] / pred)) <= abs(math.log(mids[300] / pred)) + math.log1p(res)


def test_lclass_collapses_above_and_trains_below_the_critical_step():
    p = Problem.make("lclass", 3, 1)
    crit = lin.lclass_critical_step(6)
    rec = run(FreeEmbeddings(p), [0, 0], [0.8 * crit, 1.5 * crit], 400, loss_opt=-6.0, rank_opt=5)
    assert rec["end_state"].tolist() == ["converged", "complete_collapse"]
    assert rec["failed"].tolist() == [False, True] and rec["collapse_step"][1] > 0


def test_infonce_never_collapses_but_oscillates_above_the_critical_step():
    p = Problem.make("infonce", 3, 1, tau=0.5)
    crit, _ = lin.simplex_critical_step(3, 2, 0.5)
    fp = fixed_point(p)
    rec = run(FreeEmbeddings(p), [0, 0, 0], [0.8 * crit, 1.2 * crit, 100 * crit], 400, loss_opt=fp.loss,
              rank_opt=fp.rank)
    assert rec["end_state"][0] == "converged"
    assert set(rec["end_state"][1:]) <= {"periodic", "wandering"} and not rec["collapsed"].any()


def test_search_reports_none_when_the_event_never_happens():
    p = Problem.make("infonce", 3, 1, tau=0.5)
    fp = fixed_point(p)
    runs, ev = critical_steps(FreeEmbeddings(p), [0], 4.0, steps=60, loss_opt=fp.loss, rank_opt=fp.rank,
                              resolution=0.2, grid=(0.25, 8.0))
    coll = [e for e in ev if e["event"] == "collapse"][0]
    assert coll["status"] == "none" and math.isinf(coll["hi"]) and coll["lo"] == pytest.approx(32.0)
    assert len(runs["lr"]) >= 2


def test_bad_scale_refused():
    p = Problem.make("infonce", 3, 1)
    with pytest.raises(ValueError, match="scale"):
        critical_steps(FreeEmbeddings(p), [0], -1.0, steps=10, loss_opt=0.0, rank_opt=2)


def test_infonce_random_starts_can_fail_below_the_optimums_critical_step():
    """N = 3 instances: from a random start training fails already at 0.85 x the optimum's critical step (the
    large first steps land on another attractor), while from the optimum it stays."""
    p = Problem.make("infonce", 3, 1, tau=0.5)
    fp = fixed_point(p)
    crit, _ = lin.simplex_critical_step(3, 2, 0.5)
    rand = run(FreeEmbeddings(p), [0, 1], [0.85 * crit] * 2, 400, loss_opt=fp.loss, rank_opt=fp.rank)
    local = run(FreeEmbeddings(p, start=fp.z), [0, 1], [0.85 * crit] * 2, 400, loss_opt=fp.loss, rank_opt=fp.rank)
    assert rand["failed"].any() and not local["failed"].any()
