"""The pre-training network: torchvision's ResNet encoder and SimCLR's projection head.

The CLOP paper (Sec. 5) trains "using the SimCLR (Chen et al. 2020a) framework with ResNet-50
(He et al. 2016)": an encoder f (ResNet-50 without its classifier, 2048-d output h) followed by a
projection head g, z = g(h), on which the contrastive loss and the CLOP term act. The linear probe
reads h.

Small images (CIFAR-100 at 32 px, Tiny-ImageNet at 64 px) use the usual small-image stem of SimCLR's
CIFAR experiments (Chen et al. 2020a, App. B.9): the first 7x7 stride-2 convolution becomes 3x3
stride 1, and the max-pool is removed. ImageNet at 224 px keeps the original stem.

>>> model = ContrastiveModel(arch="resnet18", small_images=True, projection_dim=16, hidden_dim=32)
>>> h, z = model(torch.zeros(2, 3, 16, 16))
>>> tuple(h.shape), tuple(z.shape)
((2, 512), (2, 16))
"""

from __future__ import annotations

import torch
from torch import nn

from clop._checks import check_choice, check_size

ARCHS = ("resnet50", "resnet18")
"""resnet50 is the paper's model; resnet18 is a cheaper stand-in for quick experiments."""


def resnet_encoder(arch: str = "resnet50", *, small_images: bool = False) -> tuple[nn.Module, int]:
    """A torchvision ResNet without its classifier: (encoder, feature dim); encoder(x: (N, 3, S, S)) -> (N, F).

    Randomly initialised (``weights=None``: pre-training starts from scratch, and nothing is downloaded).
    ``small_images=True`` swaps in the 3x3 stride-1 stem and drops the max-pool (see the module doc).
    """
    import torchvision  # the training extra; imported here so that `import training.model` stays light

    arch = check_choice("arch", arch, ARCHS)
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
    implementation; P = 128 in their experiments.
    """

    def __init__(self, in_dim: int, hidden_dim: int = 2048, out_dim: int = 128) -> None:
        in_dim, hidden_dim, out_dim = (check_size(n, v) for n, v in
                                       (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)))
        super().__init__(
            nn.Linear(in_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )


class ContrastiveModel(nn.Module):
    """Encoder f and projection head g; ``forward(x: (N, 3, S, S)) -> (h: (N, F), z: (N, P))``.

    Args:
        arch: one of :data:`ARCHS` (paper: resnet50).
        small_images: the 3x3 stride-1 stem without max-pool, for 32 px and 64 px inputs.
        projection_dim: P, the dimension of z (where the losses act; the CLOP prototypes live there).
        hidden_dim: H, the hidden width of the projection head.
    """

    def __init__(
        self, arch: str = "resnet50", *, small_images: bool = False, projection_dim: int = 128,
        hidden_dim: int = 2048,
    ) -> None:
        super().__init__()
        self.encoder, self.feature_dim = resnet_encoder(arch, small_images=small_images)
        self.head = ProjectionHead(self.feature_dim, hidden_dim, projection_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return h, self.head(h)
