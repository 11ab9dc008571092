"""Architectures on shapes alone: built on the meta device and run on inputs without data, for module paths,
feature sizes and the network's stride without weights, memory or downloads."""

from __future__ import annotations

from typing import Callable, TypeVar

import torch
from torch import nn

T = TypeVar("T")


def build_for_shapes(build: Callable[..., nn.Module], **kwargs) -> nn.Module:
    """The architecture on the meta device (no memory, no init cost), or on the CPU when its constructor computes
    with tensor values (torchvision's RegNets)."""
    try:
        with torch.device("meta"):
            return build(**kwargs)
    except NotImplementedError:  # "Cannot copy out of meta tensor": the constructor read a value
        return build(**kwargs)


def call_on_shapes(fn: Callable[[torch.Tensor], T], model: nn.Module, size: int) -> T:
    """`fn` (the model, or taps on it) on a (1, 3, size, size) input, computing shapes only: on the meta device
    when the model is there, else under fake tensors (a module with real weights is neither copied nor run)."""
    param = next(model.parameters(), None)
    with torch.no_grad():
        if param is not None and param.is_meta:
            return fn(torch.zeros(1, 3, size, size, device="meta"))
        from torch._subclasses.fake_tensor import FakeTensorMode

        with FakeTensorMode(allow_non_fake_inputs=True):
            return fn(torch.zeros(1, 3, size, size, device=param.device if param is not None else "cpu"))
