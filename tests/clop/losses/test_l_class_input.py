"""L_class (Eq. (3) of arXiv 2403.18699) refuses input it cannot compute on, naming the argument."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.parametrize("x, message", [
    (torch.ones(3, 4, dtype=torch.int64), "floating-point tensor; got dtype torch.int64"),
    (torch.zeros(0, 3), "x is empty"),
    (torch.zeros(3, 0), "x is empty"),
    (torch.zeros(0, 3, 4), "x is empty"),
    ([[1.0, 0.0], [0.0, 1.0]], "x must be a torch.Tensor"),
])
def test_l_class_refuses_integer_and_empty_input(x, message):
    from clop.losses import l_class

    with pytest.raises(ValueError, match=message):
        l_class(x)
