"""Taps: forward hooks that copy a layer's value during one forward pass, before any activation.

The copy matters: torchvision's AlexNet follows each Linear with `ReLU(inplace=True)`, which would overwrite an
un-copied output with its rectified version (docs/protocol.md, "Models and layers").

The feature stream taps detached values under inference mode; the inversion (inversion/network.py) taps one layer
with its graph (`grad=True`) and ends the forward pass once it is reached (`stop=True`).
"""

from __future__ import annotations

import torch
from torch import nn

from shiftlens.errors import ShiftlensError
from shiftlens.models.registry import LayerSpec


def get_module(model: nn.Module, path: str) -> nn.Module:
    if path == "":
        return model
    try:
        return model.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n][:40]
        raise ShiftlensError(
            f"module {path!r} does not exist in {model.__class__.__name__}: module paths include {', '.join(names)}"
        ) from None


class _AllTapped(Exception):
    """Raised by the last hook of a `stop=True` Taps to end the forward pass: the layers after it play no part."""


class Taps:
    """All requested layers of one model from one forward pass: `taps(x)` returns {layer: (B, D) float32}.

    `grad`: the values keep their graph (else detached). `stop`: the forward pass ends once every layer has its
    value. `name`: the model's name in the error of a layer the forward pass did not reach.
    """

    def __init__(self, model: nn.Module, layers: list[LayerSpec], grad: bool = False, stop: bool = False,
                 name: str = "") -> None:
        self.model = model
        self.layers = layers
        self.grad, self.stop, self.name = grad, stop, name
        self._values: dict[str, torch.Tensor] = {}
        self._handles = []
        for spec in layers:
            module = get_module(model, spec.module)
            if spec.capture == "input":
                self._handles.append(module.register_forward_pre_hook(self._pre_hook(spec)))
            else:
                self._handles.append(module.register_forward_hook(self._hook(spec)))

    def _store(self, spec: LayerSpec, value: torch.Tensor) -> None:
        value = (value if self.grad else value.detach()).flatten(1)
        value = value.clone() if value.dtype == torch.float32 else value.float()  # a copy either way
        if spec.post == "relu":
            value = torch.relu(value)
        self._values[spec.name] = value
        if self.stop and len(self._values) == len(self.layers):
            raise _AllTapped

    def _hook(self, spec: LayerSpec):
        def hook(module, inputs, output):
            self._store(spec, output[0] if isinstance(output, (tuple, list)) else output)

        return hook

    def _pre_hook(self, spec: LayerSpec):
        def hook(module, inputs):
            self._store(spec, inputs[0])

        return hook

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._values = {}
        if not self.stop:  # the stream's (compiled) forward pass: no exception handling in its graph
            self.model(x)
        else:
            try:
                self.model(x)
            except _AllTapped:
                pass
        missing = [s for s in self.layers if s.name not in self._values]
        if missing:
            of = f" of {self.name}" if self.name else ""
            raise ShiftlensError(f"layer {missing[0].name!r} ({missing[0].module}) was not reached by the forward "
                                 f"pass{of}: choose another module")
        return self._values

    def close(self) -> None:
        """Remove the hooks (again: nothing)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> "Taps":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
