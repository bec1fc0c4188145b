"""The pre-training network: an encoder (torchvision's ResNet, or a small CNN) and SimCLR's projection head.

The CLOP paper (Sec. 5) trains "using the SimCLR (Chen et al. 2020a) framework with ResNet-50
(He et al. 2016)": an encoder f (ResNet-50 without its classifier, 2048-d output h) followed by a
projection head g, z = g(h), on which the contrastive loss and the CLOP term act. The linear probe
reads h.

Small images (CIFAR-100 at 32 px, Tiny-ImageNet at 64 px) use the usual small-image stem of SimCLR's
CIFAR experiments (Chen et al. 2020a, App. B.9): the first 7x7 stride-2 convolution becomes 3x3
stride 1, and the max-pool is removed. ImageNet at 224 px keeps the original stem.

``arch="small"`` (:class:`SmallConvNet`, ours, not the paper's) is a three-layer CNN for the 8x8 digits
(``training.data``, ``--dataset digits``) and for quick CPU runs on any dataset: 93,472 parameters, a
128-d feature h, 0.65 M multiply-adds per image at 8x8 and 10.3 M at 32x32 (a ResNet-18 with the
small-image stem: 11.2 M parameters, 0.56 G multiply-adds at 32x32). The projection head follows the
encoder's feature size (``ContrastiveModel.feature_dim``: 2048 ResNet-50, 512 ResNet-18, 128 small).
``head_factory`` replaces SimCLR's head by another one built from that size (CPLearn's projector with its
fixed codes, :class:`clop.losses.CPLearnProjector`, for ``--loss cplearn``: z is then its code logits).

``arch="small-nobn"`` (ours) is the same network without any BatchNorm, in the encoder and in the projection
head (:data:`NO_BATCHNORM`): every convolution and the head's first linear layer get a bias (zero at the
start) instead. BatchNorm makes the weight of the layer before it scale-invariant (the loss does not change
when that weight is multiplied by a positive number), so the two archs tell apart what that invariance does
to training at a large learning rate (the ladder's rung 3, docs/ladder.md).

>>> model = ContrastiveModel(arch="resnet18", small_images=True, projection_dim=16, hidden_dim=32)
>>> h, z = model(torch.zeros(2, 3, 16, 16))
>>> tuple(h.shape), tuple(z.shape)
((2, 512), (2, 16))
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from clop.util.checks import check_choice, check_size

ARCHS = ("resnet50", "resnet18", "small", "small-nobn")
"""resnet50 is the paper's model; resnet18 is a cheaper stand-in for quick experiments; small is
:class:`SmallConvNet`, for the 8x8 digits and CPU runs; small-nobn the same without BatchNorm."""
NO_BATCHNORM = ("small-nobn",)
"""The archs without BatchNorm, in the encoder and in the projection head."""


class SmallConvNet(nn.Sequential):
    """Three 3x3 convolutions with BatchNorm and ReLU, then a global average pool; x: (N, C, S, S) -> (N, 128).

    Ours (not in the paper): the encoder for the 8x8 digits and for quick CPU runs on any dataset. Layers
    (output at S = 8; parameters; multiply-adds per image at S = 8 and S = 32):

    * conv 3x3, C -> 32, stride 1 (32 x 8 x 8):  864 + BatchNorm 64;  55,296 and 884,736
    * conv 3x3, 32 -> 64, stride 2 (64 x 4 x 4):  18,432 + BatchNorm 128;  294,912 and 4,718,592
    * conv 3x3, 64 -> 128, stride 2 (128 x 2 x 2):  73,728 + BatchNorm 256;  294,912 and 4,718,592
    * global average pool -> 128 features

    With C = 3 (every dataset of ``training.data`` gives three channels; the grey digits are replicated):
    **93,472 parameters**, **645,120 multiply-adds per image at 8x8 and 10,321,920 at 32x32** (the
    convolutions, counted by forward hooks in the tests; BatchNorm, ReLU and the pool add a few operations
    per activation, 3,584 activations at 8x8). For any S the convolutions cost
    ``864 S^2 + 18,432 ceil(S/2)^2 + 73,728 ceil(S/4)^2`` multiply-adds. The convolutions have no bias
    (BatchNorm follows each). The two stride-2 layers keep the cost low at 32 px while an 8x8 digit still
    ends on 2x2 positions; any S >= 1 runs (``--image-size`` accepts S >= 8).

    ``batchnorm=False`` (``--arch small-nobn``): no BatchNorm; each convolution has a bias instead, zero at the
    start (93,248 parameters).
    """

    feature_dim = 128
    widths = (32, 64, 128)
    strides = (1, 2, 2)

    def __init__(self, in_channels: int = 3, batchnorm: bool = True) -> None:
        in_channels = check_size("in_channels", in_channels)
        layers: list[nn.Module] = []
        c_in = in_channels
        for c_out, stride in zip(self.widths, self.strides):
            conv = nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=not batchnorm)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # as torchvision's ResNets
            if batchnorm:
                layers += [conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            else:  # small-nobn: a bias, zero at the start, in place of BatchNorm's shift
                nn.init.zeros_(conv.bias)
                layers += [conv, nn.ReLU(inplace=True)]
            c_in = c_out
        super().__init__(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(1))


def build_encoder(arch: str = "resnet50", *, small_images: bool = False) -> tuple[nn.Module, int]:
    """The encoder f of ``arch`` and its feature dim: (encoder, F); encoder(x: (N, 3, S, S)) -> (N, F).

    ``small_images`` selects the ResNets' small-image stem; :class:`SmallConvNet` has no stem to change.
    """
    arch = check_choice("arch", arch, ARCHS)
    if arch in ("small", "small-nobn"):
        return SmallConvNet(batchnorm=arch not in NO_BATCHNORM), SmallConvNet.feature_dim
    return resnet_encoder(arch, small_images=small_images)


def resnet_encoder(arch: str = "resnet50", *, small_images: bool = False) -> tuple[nn.Module, int]:
    """A torchvision ResNet without its classifier: (encoder, feature dim); encoder(x: (N, 3, S, S)) -> (N, F).

    Randomly initialised (``weights=None``: pre-training starts from scratch, and nothing is downloaded).
    ``small_images=True`` swaps in the 3x3 stride-1 stem and drops the max-pool (see the module doc).
    """
    import torchvision  # the training extra; imported here so that `import training.engine.model` stays light

    arch = check_choice("arch", arch, ("resnet50", "resnet18"))
    net = getattr(torchvision.models, arch)(weights=None)
    if small_images:
        net.conv1 = nn.Conv2d(3, net.conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision's init
        net.maxpool = nn.Identity()
    features = net.fc.in_features
    net.fc = nn.Identity()
    return net, features


class ProjectionHead(nn.Sequential):
    """SimCLR's 2-layer MLP g: Linear(F, H) - BatchNorm - ReLU - Linear(H, P); x: (N, F) -> (N, P).

    Chen et al. 2020a, Sec. 2.1 ("a MLP with one hidden layer"), with the BatchNorm of their released
    implementation; P = 128 in their experiments. ``batchnorm=False`` (``--arch small-nobn``):
    Linear(F, H) with a bias (zero at the start) - ReLU - Linear(H, P).
    """

    def __init__(self, in_dim: int, hidden_dim: int = 2048, out_dim: int = 128, batchnorm: bool = True) -> None:
        in_dim, hidden_dim, out_dim = (check_size(n, v) for n, v in
                                       (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)))
        first = nn.Linear(in_dim, hidden_dim, bias=not batchnorm)
        if not batchnorm:
            nn.init.zeros_(first.bias)
        norm = [nn.BatchNorm1d(hidden_dim)] if batchnorm else []
        super().__init__(first, *norm, nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))


class ContrastiveModel(nn.Module):
    """Encoder f and projection head g; ``forward(x: (N, 3, S, S)) -> (h: (N, F), z: (N, P))``.

    Args:
        arch: one of :data:`ARCHS` (paper: resnet50).
        small_images: the ResNets' 3x3 stride-1 stem without max-pool, for 32 px and 64 px inputs (no
            effect on ``"small"``).
        projection_dim: P, the dimension of z (where the losses act; the CLOP prototypes live there).
        hidden_dim: H, the hidden width of the projection head.
        head_factory: None (SimCLR's :class:`ProjectionHead`), or a function of the feature size F returning
            the head module, (N, F) -> (N, P') (``projection_dim`` and ``hidden_dim`` are then not used).
    """

    def __init__(
        self, arch: str = "resnet50", *, small_images: bool = False, projection_dim: int = 128,
        hidden_dim: int = 2048, head_factory: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.encoder, self.feature_dim = build_encoder(arch, small_images=small_images)
        if head_factory is None:
            self.head = ProjectionHead(self.feature_dim, hidden_dim, projection_dim,
                                       batchnorm=arch not in NO_BATCHNORM)
        else:
            self.head = head_factory(self.feature_dim)
            if not isinstance(self.head, nn.Module):
                raise ValueError(f"head_factory must return an nn.Module; got {type(self.head).__name__}")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return h, self.head(h)
