"""Gradient descent on the image, with the priors of natural pre-images (Mahendran & Vedaldi 2015/2016).

`optimise` is the engine: it minimises, per image, `objective + tv_weight * TV_beta + alpha_weight * R_alpha` over
RGB images kept in [0, 1], with a random jitter at every step and a cosine-decaying learning rate. `invert` uses
it with the feature-matching objective; activation maximisation and caricatures (maximise.py) with theirs.
Defaults and measured results are in docs/inversion.md.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from shiftlens.canvases import Normalisation
from shiftlens.errors import ShiftlensError
from shiftlens.inversion.network import FeatureNet
from shiftlens.inversion.objectives import FeatureMatch, Objective
from shiftlens.inversion.priors import alpha_norm, jitter, total_variation
from shiftlens.models import LayerSpec

Progress = Callable[[int, int, float], None]
"""`progress(steps done, steps in all, mean objective of the current chunk)`, called after every step."""

OPTIMISERS = ("adam", "sgd")


@dataclass(frozen=True)
class InversionSettings:
    """Everything that decides the result (with the network and the targets). docs/inversion.md says why each
    default is what it is."""

    steps: int = 200
    lr: float = 0.05
    """Initial learning rate, in pixel units of [0, 1]; it decays along a cosine to `lr * lr_end`."""
    lr_end: float = 0.1
    optimiser: str = "adam"
    """`adam`, or `sgd` (with `momentum`, as the paper)."""
    momentum: float = 0.9
    tv_weight: float = 15.0
    tv_beta: float = 2.0
    alpha: float = 6.0
    alpha_weight: float = 0.01
    jitter: int = 4
    """Largest random shift in pixels, drawn anew for every step."""
    seed: int = 0
    size: int = 224
    """Side of the square image when no start image is given."""
    start_value: float = 0.5
    start_noise: float = 0.05
    """The start image: `start_value` plus Gaussian noise of this std (the same seeded image for every target)."""
    batch_size: int = 8
    """Targets optimised together; more are done in chunks with the same random stream, so a result does not
    depend on which chunk a target falls in."""

    def __post_init__(self) -> None:
        checks = [
            (self.steps >= 1, "steps", "use 1 or more"),
            (self.lr > 0, "lr", "use a positive learning rate"),
            (0 < self.lr_end <= 1, "lr_end", "use a fraction in (0, 1]"),
            (self.optimiser in OPTIMISERS, "optimiser", f"use one of {', '.join(OPTIMISERS)}"),
            (0 <= self.momentum < 1, "momentum", "use a value in [0, 1)"),
            (self.tv_weight >= 0, "tv_weight", "use 0 or more"),
            (self.tv_beta >= 1, "tv_beta", "use 1 or more (1 keeps edges, 2 smooths)"),
            (self.alpha >= 1, "alpha", "use 1 or more (6 is the paper's)"),
            (self.alpha_weight >= 0, "alpha_weight", "use 0 or more"),
            (self.jitter >= 0, "jitter", "use 0 or more pixels"),
            (self.size >= 8, "size", "use 8 pixels or more"),
            (0 <= self.start_value <= 1, "start_value", "use a value in [0, 1]"),
            (self.start_noise >= 0, "start_noise", "use 0 or more"),
            (self.batch_size >= 1, "batch_size", "use 1 or more"),
        ]
        for ok, name, fix in checks:
            if not ok:
                raise ShiftlensError(f"inversion setting {name}={getattr(self, name)!r} is invalid: {fix}")

    @classmethod
    def with_overrides(cls, base: "InversionSettings | None" = None, **overrides: Any) -> "InversionSettings":
        """`base` (or the defaults) with some fields replaced; an unknown name is one line naming the valid ones."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in overrides if k not in names]
        if unknown:
            raise ShiftlensError(f"unknown inversion setting {unknown[0]!r}: valid settings are {', '.join(names)}")
        return dataclasses.replace(base or cls(), **overrides)

    def start_image(self) -> torch.Tensor:
        """The seeded start image, (1, 3, size, size) on the CPU."""
        g = torch.Generator().manual_seed(self.seed)
        noise = torch.randn(1, 3, self.size, self.size, generator=g)
        return (self.start_value + self.start_noise * noise).clamp(0, 1)


@dataclass
class InversionResult:
    """`images` (N, 3, H, W) RGB in [0, 1] on the CPU; `feature_loss` (N,) the normalised feature loss
    ||phi(x) - phi0||^2 / ||phi0||^2 of each final image (for other objectives: the objective's final value)."""

    images: torch.Tensor
    feature_loss: torch.Tensor
    settings: InversionSettings
    layer: str
    seconds: float

    def to_uint8(self) -> np.ndarray:
        """(N, H, W, 3) uint8, for figures and PNGs."""
        return (self.images.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8).numpy()


def _make_optimiser(x: torch.Tensor, s: InversionSettings) -> torch.optim.Optimizer:
    if s.optimiser == "adam":
        return torch.optim.Adam([x], lr=s.lr)
    return torch.optim.SGD([x], lr=s.lr, momentum=s.momentum)


def _lr_at(step: int, s: InversionSettings) -> float:
    """Cosine decay from lr to lr * lr_end over the steps."""
    t = step / max(1, s.steps - 1)
    return s.lr * (s.lr_end + (1 - s.lr_end) * 0.5 * (1 + math.cos(math.pi * t)))


def _check_dim(objective: Objective, features: torch.Tensor, net: FeatureNet) -> None:
    if objective.dim is not None and features.shape[1] != objective.dim:
        raise ShiftlensError(f"targets have {objective.dim} values per row but layer {net.name} gives "
                             f"{features.shape[1]}: pass features of that layer")


def optimise(net: FeatureNet, objective: Objective, settings: InversionSettings | None = None,
             start: torch.Tensor | None = None, progress: Progress | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, H, W) in [0, 1] that minimise `objective` under the priors, and the objective's final value
    per image (on the un-jittered image). `start`: (N, 3, H, W) images in [0, 1] to start from (caricatures);
    default the settings' seeded start image for every target."""
    s = settings or InversionSettings()
    n = objective.n
    if start is not None:
        if start.ndim != 4 or start.shape[0] != n or start.shape[1] != 3:
            raise ShiftlensError(f"start images must have shape ({n}, 3, H, W), got {tuple(start.shape)}")
        start = start.detach().float().clamp(0, 1)
    else:
        start = s.start_image().expand(n, -1, -1, -1)
    chunks = [slice(i, min(i + s.batch_size, n)) for i in range(0, n, s.batch_size)]
    total = s.steps * len(chunks)
    images, values = [], []
    for c, rows in enumerate(chunks):
        g = torch.Generator().manual_seed(s.seed + 1)  # jitter stream, the same for every chunk
        with torch.inference_mode(False):
            x = start[rows].clone().to(net.device).requires_grad_(True)
        opt = _make_optimiser(x, s)
        for step in range(s.steps):
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, s)
            dy, dx = (torch.randint(-s.jitter, s.jitter + 1, (2,), generator=g).tolist() if s.jitter else (0, 0))
            with torch.inference_mode(False), torch.enable_grad():  # also when called under inference_mode
                feats = net(jitter(x, dy, dx))
                if c == 0 and step == 0:
                    _check_dim(objective, feats, net)
                obj = objective(feats, rows)
                loss = obj + s.tv_weight * total_variation(x, s.tv_beta) + s.alpha_weight * alpha_norm(x, s.alpha)
                (grad,) = torch.autograd.grad(loss.sum(), x)
            x.grad = grad
            opt.step()
            with torch.no_grad():
                x.clamp_(0, 1)
            if progress is not None:
                progress(c * s.steps + step + 1, total, float(obj.detach().mean()))
        with torch.no_grad():
            values.append(objective(net(x), rows).cpu())
        images.append(x.detach().cpu())
    return torch.cat(images), torch.cat(values)


def invert(model: nn.Module | FeatureNet, layer: LayerSpec | str | None, targets: torch.Tensor,
           normalisation: Normalisation | None = None, *, settings: InversionSettings | None = None,
           device: torch.device | str = "cpu", progress: Progress | None = None, **overrides: Any) -> InversionResult:
    """Natural pre-images: for each row of `targets` (N, D), an image whose `layer` features match it.

    `model` is any module with `layer` (a LayerSpec from the registry, or a module path) and its input
    `normalisation` (the registry entry's); or a FeatureNet, with `layer` None. Settings come from `settings`
    (default InversionSettings()) with `overrides` by name, e.g. `steps=100, tv_weight=1.0`.
    """
    s = InversionSettings.with_overrides(settings, **overrides)
    if isinstance(model, FeatureNet):
        if layer is not None:
            raise ShiftlensError("invert: a FeatureNet already names its layer; pass layer=None")
        net = model
    else:
        if layer is None:
            raise ShiftlensError("invert: give the layer to invert (a LayerSpec or a module path)")
        net = FeatureNet(model, layer, normalisation, device)
    objective = FeatureMatch(targets)
    t0 = time.perf_counter()
    images, loss = optimise(net, objective, s, progress=progress)
    return InversionResult(images, loss, s, net.name, time.perf_counter() - t0)
