"""Rung 2: a linear encoder or a 2-layer MLP on fixed inputs, trained by GD, heavy-ball momentum or LARS.

The inputs are fixed views ``X: (2N, p)`` (view 1 of every instance, then view 2; :mod:`simulations.rungs.data`);
the embeddings are ``z = normalise(f_theta(x))`` and the problem's loss is that of rung 1 on them. So the
normalisation is part of the forward pass here, as in a network, and the parameters are not renormalised:
every loss (L_class included) is scale-invariant in the encoder's output.

Models (R runs batched; float64):

* ``linear``: y = W x, W: (R, D, p);
* ``mlp``: y = W2 relu(W1 x + b1) + b2, W1: (R, H, p), W2: (R, D, H).

Starts: trial t draws every weight from N(0, 1/fan_in) (biases 0) with a generator seeded by
(seed, model, p, D, H, t).

Optimisers (:data:`OPTIMISERS`), full batch:

* ``gd``: theta <- theta - lr g;
* ``momentum``: heavy ball as in ``torch.optim.SGD``: v <- beta v + g, theta <- theta - lr v (beta = 0.9);
* ``lars``: SimCLR's LARS (You, Gitman & Ginsburg 2017; Chen et al. 2020): for every weight matrix the trust
  ratio eta ||w|| / ||g|| (eta = :data:`LARS_ETA` = 0.001, no weight decay), v <- beta v + lr trust g,
  w <- w - v; biases skip the trust ratio. Each weight thus moves by about lr eta ||w|| / (1 - beta) per step
  while the gradient keeps its sign, whatever the gradient's size.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from simulations.rungs.engine import BatchedLoss
from simulations.rungs.problem import Problem

__all__ = ["MODELS", "OPTIMISERS", "MOMENTUM", "LARS_ETA", "Encoder"]

MODELS = ("linear", "mlp")
OPTIMISERS = ("gd", "momentum", "lars")
MOMENTUM = 0.9
LARS_ETA = 1e-3


def _generator(*key: int) -> torch.Generator:
    state = np.random.SeedSequence([int(v) for v in key]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class Encoder:
    """Rung 2 (module docstring): ``init``, ``step`` and ``embeddings`` of :class:`simulations.rungs.engine.Rung`.

    Args:
        problem: the loss, k, n, embedding dimension d (= D) and seed; its ``batch`` must be None.
        inputs: (2N, p) float64 fixed views, view 1 of instances 0..N-1 then view 2.
        model: one of :data:`MODELS`. optimiser: one of :data:`OPTIMISERS`. hidden: H of the MLP.
    """

    def __init__(self, problem: Problem, inputs: torch.Tensor, model: str = "linear", optimiser: str = "gd",
                 hidden: int = 32, device: str | torch.device = "cpu"):
        if model not in MODELS:
            raise ValueError(f"model={model!r} is not supported; expected one of {list(MODELS)}")
        if optimiser not in OPTIMISERS:
            raise ValueError(f"optimiser={optimiser!r} is not supported; expected one of {list(OPTIMISERS)}")
        if problem.batch is not None:
            raise ValueError("the encoder rung trains full batch; make the problem with batch=None")
        if inputs.shape[0] != 2 * problem.instances:
            raise ValueError(f"inputs must have 2N = {2 * problem.instances} rows; got shape {tuple(inputs.shape)}")
        self.problem, self.model, self.optimiser, self.hidden = problem, model, optimiser, hidden
        self.name = f"{model}-{optimiser}"
        self.device = torch.device(device)
        self.x = inputs.to(self.device, torch.float64)
        self.loss = BatchedLoss(problem, torch.float64, self.device)
        self.labels = problem.labels().to(self.device)

    # parameters -------------------------------------------------------------------------------
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of one run's parameters."""
        p, d, h = self.x.shape[1], self.problem.d, self.hidden
        if self.model == "linear":
            return {"W": (d, p)}
        return {"W1": (h, p), "b1": (h,), "W2": (d, h), "b2": (d,)}

    def init_params(self, trial: int) -> dict[str, torch.Tensor]:
        """One run's start (module docstring)."""
        g = _generator(self.problem.seed, MODELS.index(self.model), self.x.shape[1], self.problem.d, self.hidden,
                       trial)
        out = {}
        for name, shape in self.shapes().items():
            if name.startswith("b"):
                out[name] = torch.zeros(shape, dtype=torch.float64)
            else:
                out[name] = torch.randn(shape, generator=g, dtype=torch.float64) / shape[1] ** 0.5
        return {k: v.to(self.device) for k, v in out.items()}

    def init(self, trials: Sequence[int]) -> dict[str, torch.Tensor]:
        runs = [self.init_params(t) for t in trials]
        state = {k: torch.stack([r[k] for r in runs]) for k in runs[0]}
        for k in list(state):
            state["v_" + k] = torch.zeros_like(state[k])
        return state

    # forward ----------------------------------------------------------------------------------
    def outputs(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Unnormalised outputs y: (R, 2N, D)."""
        if self.model == "linear":
            return torch.einsum("np,rdp->rnd", self.x, params["W"])
        hid = torch.relu(torch.einsum("np,rhp->rnh", self.x, params["W1"]) + params["b1"][:, None, :])
        return torch.einsum("rnh,rdh->rnd", hid, params["W2"]) + params["b2"][:, None, :]

    def embeddings(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        y = self.outputs(state)
        z = torch.nn.functional.normalize(y, dim=-1)
        return z.reshape(z.shape[0], 2, self.problem.instances, z.shape[-1])

    def diagnostics(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per run: log10 of the weights' total norm, and for the MLP the fraction of hidden units dead on every
        input and ``bias_share`` = ||b2|| / mean ||y|| (near 1: every output is the shared bias, i.e. collapsed onto it)."""
        params = self.params(state)
        norm = torch.sqrt(sum((v * v).sum(dim=tuple(range(1, v.dim()))) for k, v in params.items()
                              if not k.startswith("b")))
        out = {"log10_weight_norm": torch.log10(norm.clamp_min(1e-300))}
        if self.model == "mlp":
            hid = torch.relu(torch.einsum("np,rhp->rnh", self.x, params["W1"]) + params["b1"][:, None, :])
            out["dead_fraction"] = (hid.amax(1) <= 0).to(torch.float64).mean(1)
            y = self.outputs(params)
            out["bias_share"] = torch.linalg.vector_norm(params["b2"], dim=-1) / torch.linalg.vector_norm(
                y, dim=-1).mean(1).clamp_min(1e-300)
        else:
            out["dead_fraction"] = torch.zeros_like(norm)
            out["bias_share"] = torch.zeros_like(norm)
        return out

    def params(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v for k, v in state.items() if not k.startswith("v_")}

    def gradients(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Gradients of every run's loss w.r.t. its own parameters (the runs are independent)."""
        leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        z = self.embeddings(leaves)
        total = self.loss.value(z, self.labels).sum()
        grads = torch.autograd.grad(total, list(leaves.values()))
        return dict(zip(leaves, grads))

    # update -----------------------------------------------------------------------------------
    def step(self, state: dict[str, torch.Tensor], lrs: torch.Tensor, t: int) -> dict[str, torch.Tensor]:
        params = self.params(state)
        grads = self.gradients(params)
        new = {}
        for k, w in params.items():
            g = grads[k]
            lr = lrs.reshape((-1,) + (1,) * (w.dim() - 1))
            if self.optimiser == "gd":
                new[k], new["v_" + k] = w - lr * g, state["v_" + k]
                continue
            if self.optimiser == "momentum":
                v = MOMENTUM * state["v_" + k] + g
                new[k], new["v_" + k] = w - lr * v, v
                continue
            scaled = lr * g
            if not k.startswith("b"):
                dims = tuple(range(1, w.dim()))
                wn = torch.linalg.vector_norm(w, dim=dims, keepdim=True)
                gn = torch.linalg.vector_norm(g, dim=dims, keepdim=True)
                trust = torch.where((wn > 0) & (gn > 0), LARS_ETA * wn / gn.clamp_min(1e-300), torch.ones_like(wn))
                scaled = scaled * trust
            v = MOMENTUM * state["v_" + k] + scaled
            new[k], new["v_" + k] = w - v, v
        return new
