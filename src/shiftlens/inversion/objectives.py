"""What the optimiser minimises besides the priors, one value per image: matching a target feature (inversion),
or pushing a unit or a direction up (activation maximisation, caricature).

An objective sees the features of a chunk of images and the chunk's rows (`rows`, indices into its own targets),
so that the optimiser can process many targets in chunks.
"""

from __future__ import annotations

from typing import Protocol

import torch

from shiftlens.errors import ShiftlensError

NORM_EPS = 1e-12
"""Floor of a target's squared norm: a zero target (all units silent) gives the plain squared error."""


class Objective(Protocol):
    """`objective(features (B, D), rows) -> (B,)` values to minimise; `n` rows in all; `dim` = D or None (any)."""

    n: int
    dim: int | None

    def __call__(self, features: torch.Tensor, rows: slice) -> torch.Tensor: ...


def _rows(values: torch.Tensor, name: str, ndim: int) -> torch.Tensor:
    if not isinstance(values, torch.Tensor):
        raise ShiftlensError(f"{name} must be a torch.Tensor, got {type(values).__name__}")
    if values.ndim != ndim or values.shape[0] == 0:
        shape = "(N, D)" if ndim == 2 else "(N,)"
        raise ShiftlensError(f"{name} must have shape {shape} with N >= 1, got {tuple(values.shape)}")
    if values.is_floating_point() and not torch.isfinite(values).all():
        raise ShiftlensError(f"{name} contain NaN or infinite values: pass finite features")
    return values


def _plain(values: torch.Tensor) -> torch.Tensor:
    """A detached float32 copy outside inference mode: features taken under torch.inference_mode (as the feature
    stream does) can then take part in the optimiser's autograd graph."""
    with torch.inference_mode(False):
        return values.detach().float().clone()


class FeatureMatch:
    """Inversion: ||phi(x) - phi0||^2 / ||phi0||^2. Normalising by the target's norm makes one set of prior weights
    fit layers of very different scales."""

    def __init__(self, targets: torch.Tensor) -> None:
        self.targets = _plain(_rows(targets, "targets", 2))
        self.n, self.dim = self.targets.shape
        with torch.inference_mode(False):
            self._norms = self.targets.square().sum(1).clamp_min(NORM_EPS)

    def __call__(self, features: torch.Tensor, rows: slice) -> torch.Tensor:
        t = self.targets[rows].to(features.device)
        return (features - t).square().sum(1) / self._norms[rows].to(features.device)


class UnitActivation:
    """Activation maximisation: minus unit k's value, divided by `scale` (the layer's typical magnitude) so that the
    prior weights mean the same as for inversion."""

    def __init__(self, units: torch.Tensor, scale: torch.Tensor | float = 1.0) -> None:
        units = _rows(torch.as_tensor(units), "units", 1)
        with torch.inference_mode(False):  # gather keeps the index for backward
            self.units = units.long().clone()
        self.n, self.dim = self.units.shape[0], None
        self.scale = _plain(torch.as_tensor(scale, dtype=torch.float32).expand(self.n))

    def __call__(self, features: torch.Tensor, rows: slice) -> torch.Tensor:
        units = self.units[rows].to(features.device)
        if int(units.max()) >= features.shape[1] or int(units.min()) < 0:
            bad = int(units.max()) if int(units.max()) >= features.shape[1] else int(units.min())
            raise ShiftlensError(f"unit {bad} is out of range: the layer has units 0-{features.shape[1] - 1}")
        value = features.gather(1, units[:, None])[:, 0]
        return -value / self.scale[rows].to(features.device)


class Caricature:
    """Caricature: minus <phi(x), phi0+> / ||phi0+||^2, phi0+ the positive part of the reference image's features:
    starting from that image, the optimiser exaggerates what the layer detects in it."""

    def __init__(self, reference: torch.Tensor) -> None:
        with torch.inference_mode(False):
            ref = _plain(_rows(reference, "reference features", 2)).clamp_min(0)
        self.direction = ref
        self.n, self.dim = ref.shape
        with torch.inference_mode(False):
            self._norms = ref.square().sum(1).clamp_min(NORM_EPS)

    def __call__(self, features: torch.Tensor, rows: slice) -> torch.Tensor:
        d = self.direction[rows].to(features.device)
        return -(features * d).sum(1) / self._norms[rows].to(features.device)
