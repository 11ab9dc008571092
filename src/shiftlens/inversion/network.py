"""One tapped layer of a network as a differentiable function of an RGB image in [0, 1].

The feature stream (stream.py) runs under inference_mode, folds batch norms and copies its taps detached, so it
cannot give gradients; this is the small forward the optimiser needs: the model in eval mode, the model's input
normalisation in front, and the stream's `Taps` on the one layer, keeping the graph and ending the forward pass once
the layer is reached (the layers after it cost time and play no part).
"""

from __future__ import annotations

import torch
from torch import nn

from shiftlens.canvases import Normalisation
from shiftlens.errors import ShiftlensError
from shiftlens.models import LayerSpec, build_with_weights, parse_spec
from shiftlens.models.taps import Taps, get_module


class FeatureNet:
    """`net(images)` -> (B, D) float32 features of `layer`, with gradients to the images (RGB [0, 1], NCHW).

    The model is put in eval mode (batch norms use their running statistics, so images in a batch do not
    interact); its parameters are left as they are, gradients are only taken with respect to the images.
    """

    def __init__(self, model: nn.Module, layer: LayerSpec | str, normalisation: Normalisation | None = None,
                 device: torch.device | str = "cpu", name: str = "") -> None:
        if not isinstance(model, nn.Module):
            raise ShiftlensError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(layer, str):
            layer = LayerSpec(layer, layer, f"output of module {layer}")
        if not isinstance(layer, LayerSpec):
            raise ShiftlensError(f"layer must be a LayerSpec or a module path, got {type(layer).__name__}")
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.layer = layer
        self.name = name or f"{type(model).__name__}:{layer.name}"
        norm = normalisation or Normalisation()
        with torch.inference_mode(False):  # kept for backward, so never inference tensors
            self._mean = torch.tensor(norm.mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
            self._std = torch.tensor(norm.std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.normalisation = norm
        get_module(model, layer.module)  # a module the model lacks is refused here, before any work

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        # hooked for this call only: the model is the caller's and is left without hooks
        with Taps(self.model, [self.layer], grad=True, stop=True, name=self.name) as taps:
            return taps((images.to(self.device) - self._mean) / self._std)[self.layer.name]


def load_feature_net(spec: str, weights: str = "imagenet", device: torch.device | str = "cpu",
                     seed: int = 0) -> FeatureNet:
    """A FeatureNet from a `--models`-style spec with exactly one layer, e.g. `efficientnet_lite0:pool`."""
    parsed = parse_spec(spec)
    if len(parsed.layers) != 1:
        raise ShiftlensError(f"model spec {spec!r} names {len(parsed.layers)} layers ({', '.join(parsed.layers)}): "
                             f"an inversion needs one, e.g. {parsed.entry.name}:{parsed.layers[0]}")
    entry = parsed.entry
    model, _ = build_with_weights(entry, weights, seed)
    return FeatureNet(model, entry.layer(parsed.layers[0]), entry.normalisation, device,
                      name=f"{entry.name}:{parsed.layers[0]}")
