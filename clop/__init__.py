"""Reusable core of the CLOP verification suite: losses, prototypes and collapse metrics.

Depends on torch and numpy only. Paper: "Preventing collapse in contrastive learning with
orthonormal prototypes" (CLOP), ../shared/papers/001_a0916c72eb7a88d5.txt.
"""

from clop import losses, metrics, prototypes
from clop._device import default_device

__all__ = ["losses", "metrics", "prototypes", "default_device"]
