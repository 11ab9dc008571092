"""Objectives pushed up instead of matched, with the inversion's optimiser and priors: activation maximisation
(the image that drives one unit most) and caricatures (an image's own features, exaggerated)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from shiftlens.canvases import Normalisation
from shiftlens.errors import ShiftlensError
from shiftlens.inversion.network import FeatureNet
from shiftlens.inversion.objectives import Caricature, UnitActivation
from shiftlens.inversion.optimise import InversionSettings, Progress, optimise
from shiftlens.models import LayerSpec


@dataclass
class MaximisationResult:
    """`images` (N, 3, H, W) in [0, 1]; `value` (N,) the maximised quantity at the final image and `start_value`
    at the start image (a unit's value; for a caricature <phi(x), phi0+> / ||phi0+||^2, 1 at a start whose
    features are all positive)."""

    images: torch.Tensor
    value: torch.Tensor
    start_value: torch.Tensor
    settings: InversionSettings
    layer: str
    seconds: float

    @property
    def gain(self) -> torch.Tensor:
        """How far the quantity rose, in units of its start value's size: (value - start) / |start|."""
        return (self.value - self.start_value) / self.start_value.abs().clamp_min(1e-12)

    def to_uint8(self) -> np.ndarray:
        """(N, H, W, 3) uint8, for figures and PNGs."""
        return (self.images.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8).numpy()


def _net(model: nn.Module | FeatureNet, layer: LayerSpec | str | None, normalisation: Normalisation | None,
         device: torch.device | str) -> FeatureNet:
    if isinstance(model, FeatureNet):
        if layer is not None:
            raise ShiftlensError("a FeatureNet already names its layer; pass layer=None")
        return model
    if layer is None:
        raise ShiftlensError("give the layer (a LayerSpec or a module path)")
    return FeatureNet(model, layer, normalisation, device)


class SilentUnit(ShiftlensError):
    """A unit that is 0 at every start tried: rectified and not driven there, so it has no gradient to climb."""


def maximise_unit(model: nn.Module | FeatureNet, layer: LayerSpec | str | None, units: int | Sequence[int],
                  normalisation: Normalisation | None = None, *, settings: InversionSettings | None = None,
                  device: torch.device | str = "cpu", progress: Progress | None = None,
                  start: torch.Tensor | None = None, **overrides: Any) -> MaximisationResult:
    """For each unit index, the image that maximises that unit of `layer`, from the settings' seeded start image
    (the next seeds while it leaves a unit at exactly 0; `SilentUnit` if all do) or from `start` (1, 3, H, W) in
    [0, 1], e.g. a canvas that drives the unit.

    The objective is the unit's value divided by the layer's RMS at the start image, so that it starts near 1 in
    size and the prior weights keep the meaning they have for inversion.
    """
    s = InversionSettings.with_overrides(settings, **overrides)
    net = _net(model, layer, normalisation, device)
    units_t = torch.as_tensor([units] if isinstance(units, int) else list(units), dtype=torch.long)
    if start is not None:
        if start.ndim != 4 or start.shape[0] != 1 or start.shape[1] != 3:
            raise ShiftlensError(f"start must be one (1, 3, H, W) image in [0, 1], got {tuple(start.shape)}")
        start = start.float().clamp(0, 1)
    with torch.no_grad():
        start_feats = net(s.start_image() if start is None else start).cpu()
    dim = start_feats.shape[1]
    bad = [int(u) for u in units_t if not 0 <= int(u) < dim]
    if bad:
        raise ShiftlensError(f"unit {bad[0]} is out of range for layer {net.name}: it has units 0-{dim - 1}")
    if start is None:
        s, start_feats = _live_start(net, units_t, s, start_feats)
    scale = start_feats.square().mean().sqrt().clamp_min(1e-12)
    t0 = time.perf_counter()
    starts = None if start is None else start.expand(len(units_t), -1, -1, -1)
    images, obj = optimise(net, UnitActivation(units_t, scale), s, start=starts, progress=progress)
    start = start_feats[0, units_t]
    return MaximisationResult(images, -obj * scale, start, s, net.name, time.perf_counter() - t0)


LIVE_START_TRIES = 16


def _live_start(net: FeatureNet, units: torch.Tensor, s: InversionSettings,
                start_feats: torch.Tensor) -> tuple[InversionSettings, torch.Tensor]:
    """Settings whose start image drives every unit (value not 0), trying the next seeds in turn.

    A rectified unit (after a ReLU, or a pooled one) that is exactly 0 at the start image has no gradient there, so
    gradient ascent would return the start image unchanged; another seed's noise usually wakes it."""
    for k in range(LIVE_START_TRIES):
        if k:
            s = dataclasses.replace(s, seed=s.seed + 1)
            with torch.no_grad():
                start_feats = net(s.start_image()).cpu()
        if bool((start_feats[0, units] != 0).all()):
            return s, start_feats
    silent = [int(u) for u in units if start_feats[0, u] == 0]
    raise SilentUnit(f"unit {silent[0]} of {net.name} is 0 at the start image of {LIVE_START_TRIES} seeds (up to "
                     f"{s.seed}), so it has no gradient to climb: start from an image that drives it (start=)")


def caricature(model: nn.Module | FeatureNet, layer: LayerSpec | str | None, images: torch.Tensor,
               normalisation: Normalisation | None = None, *, settings: InversionSettings | None = None,
               device: torch.device | str = "cpu", progress: Progress | None = None,
               **overrides: Any) -> MaximisationResult:
    """Caricatures of `images` (N, 3, H, W) in [0, 1]: starting from each image, push its features further along
    their own positive part (Mahendran & Vedaldi), which exaggerates what the layer detects in it."""
    s = InversionSettings.with_overrides(settings, **overrides)
    net = _net(model, layer, normalisation, device)
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ShiftlensError(f"caricature images must be a (N, 3, H, W) tensor in [0, 1], got {shape}")
    with torch.no_grad():
        reference = net(images.float().clamp(0, 1)).cpu()
    objective = Caricature(reference)
    with torch.no_grad():
        start = -objective(reference, slice(None))
    t0 = time.perf_counter()
    out, obj = optimise(net, objective, s, start=images, progress=progress)
    return MaximisationResult(out, -obj, start, s, net.name, time.perf_counter() - t0)
