"""A registry that turns a name into a model, its preprocessing and its named layers (after timm's registry).

A spec string is `NAME` (the model's default layers) or `NAME:LAYER,LAYER`. Prefixed specs such as
`torchvision:NAME:LAYER` are resolved by functions registered in `SPEC_RESOLVERS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from shiftlens.canvases import Normalisation
from shiftlens.errors import ShiftlensError


@dataclass(frozen=True)
class LayerSpec:
    """A tap: the output (or input) of a module, optionally followed by a fixed function.

    `post` is "none" (pre-activation, as the paper), "relu" (the post-ReLU variants) or "softmax".
    """

    name: str
    module: str
    description: str
    capture: str = "output"
    post: str = "none"


@dataclass
class ModelEntry:
    name: str
    description: str
    build: Callable[[], nn.Module]
    normalisation: Normalisation
    layers: dict[str, LayerSpec]
    default_layers: tuple[str, ...]
    imagenet: Callable[[], dict] | None = None
    """Returns the ImageNet state dict (may download into the torch cache; raises ShiftlensError offline)."""
    weights_source: str = ""
    logits_layer: str | None = None
    input_size: int = 224
    extra: dict = field(default_factory=dict)
    auto_batch: dict[str, int] = field(default_factory=dict)
    """Batch size for `--batch-size 0` (auto) per device type where this network measured faster than the default
    (stream.AUTO_BATCH)."""

    def layer(self, name: str) -> LayerSpec:
        if name not in self.layers:
            raise ShiftlensError(
                f"unknown layer {name!r} for model {self.name}: valid layers are {', '.join(self.layers)}"
            )
        return self.layers[name]


REGISTRY: dict[str, ModelEntry] = {}
SPEC_RESOLVERS: dict[str, Callable[[str], tuple[ModelEntry, list[str]]]] = {}


def register(entry: ModelEntry) -> ModelEntry:
    REGISTRY[entry.name] = entry
    return entry


@dataclass
class ModelSpec:
    """A parsed `--models` item: the entry and the layers asked for."""

    entry: ModelEntry
    layers: list[str]

    @property
    def key(self) -> str:
        return self.entry.name


def _ensure_builtins() -> None:
    from shiftlens.models import external, zoo  # noqa: F401  (register the built-in models and spec resolvers)


def parse_spec(spec: str) -> ModelSpec:
    _ensure_builtins()
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in SPEC_RESOLVERS:
        entry, layers = SPEC_RESOLVERS[prefix](rest)
        return ModelSpec(entry, layers)
    name, layers_text = prefix, rest
    if name not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        hint = f"; or use {' / '.join(p + ':NAME:LAYER' for p in SPEC_RESOLVERS)}" if SPEC_RESOLVERS else ""
        raise ShiftlensError(f"unknown model {name!r}: choose one of {known}{hint}")
    entry = REGISTRY[name]
    layers = [l.strip() for l in layers_text.split(",") if l.strip()] if layers_text else list(entry.default_layers)
    for layer in layers:
        entry.layer(layer)
    return ModelSpec(entry, layers)


def split_specs(items: list[str]) -> list[str]:
    """Split `--models` values: specs are separated by ';' or spaces, and a comma-separated token that names a
    model (or has a ':') starts a new spec, so `alexnet:fc6,fc7,resnet50` is two models."""
    _ensure_builtins()
    specs: list[str] = []
    for item in items:
        for chunk in item.replace(";", " ").split():
            for token in chunk.split(","):
                token = token.strip()
                if not token:
                    continue
                starts_new = ":" in token or token in REGISTRY or not specs
                if starts_new:
                    specs.append(token)
                else:
                    specs[-1] += ("," if ":" in specs[-1] else ":") + token
    return specs


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ShiftlensError("--device cuda: no CUDA device is available here; use --device auto or cpu")
    return torch.device(device)
