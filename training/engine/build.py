"""What a pre-training run is made of: the network, the objective and the optimiser of a resolved config.

The pre-training loop (:mod:`training.engine.loop`) calls these; the probe (:mod:`training.eval.linear`)
rebuilds a run's network with :func:`build_model` and its prototypes with :func:`build_objective`.

Optimisers (``--optimizer``):

* ``"lars"`` (default): :class:`training.optim.LARS` with SimCLR's settings, the optimiser of the framework
  the CLOP paper (arXiv 2403.18699, Sec. 5) says it uses.
* ``"sgd"`` (ours): ``torch.optim.SGD`` with the same learning rate, momentum (dampening 0, no Nesterov),
  weight decay and parameter groups (:func:`training.optim.param_groups`: no decay on biases and
  normalisation parameters) and the same warm-up + cosine schedule. The two then differ only by LARS's
  trust ratio ``eta ||p|| / ||g + wd p||`` on the adapted tensors: SGD steps by the raw (decayed)
  gradient, LARS rescales each layer's step (docs/training.md, "LARS and SGD").

With ``--hold-weight-norms`` either optimiser puts every scale-invariant weight back to its initial norm after
each step (:mod:`training.engine.norms`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from clop.losses.clop_objective import CLOPLoss, CLOPObjective
from clop.losses.cplearn_loss import CPLearnProjector
from clop.losses.registry import make_loss
from training.data.catalog import DATASET_INFO
from training.engine.model import ContrastiveModel
from training.engine.norms import hold_norms, scale_invariant_weights
from training.optim import LARS, OPTIMIZERS, param_groups

if TYPE_CHECKING:  # pragma: no cover
    from training.config import PretrainConfig

__all__ = ["build_model", "loss_settings", "build_objective", "build_optimizer"]


def build_model(cfg: PretrainConfig) -> ContrastiveModel:
    """The network of a resolved config (the ResNets' small-image stem for inputs of 64 px or less); its
    projection head takes the encoder's feature size (2048 ResNet-50, 512 ResNet-18, 128 small).

    ``--loss cplearn``: the head is CPLearn's projector (:class:`clop.losses.CPLearnProjector`, arXiv 2410.04959)
    with f = ``cplearn_f``, c = ``cplearn_c``, its codes drawn from the run's seed and tau fixed by the global
    batch ``batch_size`` (the batch its loss sees per view), so z is the (N, c) code logits."""
    head_factory = None
    if cfg.loss == "cplearn":
        def head_factory(features: int) -> CPLearnProjector:
            return CPLearnProjector(features, cfg.cplearn_f, cfg.cplearn_c, n=cfg.batch_size, seed=cfg.seed)
    return ContrastiveModel(
        cfg.arch, small_images=cfg.image_size <= 64, projection_dim=cfg.projection_dim, hidden_dim=cfg.hidden_dim,
        head_factory=head_factory,
    )


def loss_settings(cfg: PretrainConfig) -> dict:
    """The keyword arguments of ``clop.losses.make_loss(cfg.loss, ...)``: the temperature where one is given, and
    alpha / convention of ``ssem``, beta of ``cplearn``."""
    kwargs = {} if cfg.temperature is None else {"temperature": cfg.temperature}
    if cfg.loss == "ssem":
        kwargs.update(alpha=cfg.ssem_alpha, convention=cfg.ssem_convention)
    elif cfg.loss == "cplearn":
        kwargs["beta"] = cfg.cplearn_beta
    return kwargs


def build_objective(cfg: PretrainConfig, device: torch.device) -> CLOPObjective:
    """The loss of the config plus, when clop_lambda > 0, the CLOP term of Eq. (4)."""
    base = make_loss(cfg.loss, **loss_settings(cfg))
    clop = None
    if cfg.clop_lambda > 0:
        clop = CLOPLoss(
            DATASET_INFO[cfg.dataset].num_classes, cfg.projection_dim, lam=cfg.clop_lambda,
            similarity=cfg.similarity, prototypes=cfg.prototypes, reduction=cfg.clop_reduction, seed=cfg.seed,
            device=device,
        )
    return CLOPObjective(base, clop)


def build_optimizer(cfg: PretrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """``cfg.optimizer`` over ``model``'s parameters, at ``cfg.lr`` (the schedule scales it), with the config's
    momentum and weight decay; LARS also takes ``cfg.trust_coefficient``. See the module docstring."""
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "lars":
        opt = LARS(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                   trust_coefficient=cfg.trust_coefficient)
    elif cfg.optimizer == "sgd":
        plain = [{k: v for k, v in g.items() if k != "lars_adaptation"} for g in groups]
        opt = torch.optim.SGD(plain, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        raise ValueError(f"optimizer={cfg.optimizer!r} is not supported; expected one of {list(OPTIMIZERS)}")
    if cfg.hold_weight_norms:  # the norms of the model as built: its initialisation (build() seeds it)
        hold_norms(opt, [p for _, p in scale_invariant_weights(model)])
    return opt
