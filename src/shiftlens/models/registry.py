"""The model registry (after timm's): names to `ModelEntry`, prefixes to resolvers of prefixed specs.

A leaf of the models package: it imports no other models module. The built-in models (zoo.py) and the
`torchvision:` / `timm:` resolvers (external.py) register themselves when `shiftlens.models` is imported, which
every import of a models module does first. Spec strings are parsed in specs.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from shiftlens.canvases import Normalisation
from shiftlens.errors import ShiftlensError


@dataclass(frozen=True)
class LayerSpec:
    """A tap: the output (or input) of a module, optionally followed by a fixed function.

    `post` is "none" (pre-activation, as the paper) or "relu" (the post-ReLU variants).
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
    imagenet: Callable[[], tuple[dict, object]] | None = None
    """Returns (ImageNet state dict, its file Path); may download into the torch cache, raises ShiftlensError
    offline."""
    weights_source: str = ""
    logits_layer: str | None = None
    input_size: int = 224
    net_stride: int | None = None
    """Total stride in px: how far the input moves for the coarsest feature map to move one cell, the period of
    the similarity maps' grid pattern. Declared by built-ins, measured by models/stride.py otherwise; None when
    unknown, with the reason in `net_stride_note`."""
    net_stride_note: str = ""
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


@dataclass
class ModelSpec:
    """A parsed `--models` item: the entry and the layers asked for."""

    entry: ModelEntry
    layers: list[str]
    weights: str | None = None
    """The spec's own weights (`alexnet@random`, `alexnet@PATH`), else None: the run's `--weights`."""

    @property
    def key(self) -> str:
        """The model's name in tables, figures and files: with its weights when the spec carries them, so two
        checkpoints of one architecture stay apart."""
        return f"{self.entry.name}@{self.weights}" if self.weights else self.entry.name

    def weights_or(self, default: str) -> str:
        return self.weights or default


Resolver = Callable[[str, list[str]], ModelEntry]
"""A prefixed spec's resolver: (model name, layer names) -> the entry, e.g. ("resnet18", ["layer4"])."""

REGISTRY: dict[str, ModelEntry] = {}
SPEC_RESOLVERS: dict[str, Resolver] = {}


def register(entry: ModelEntry) -> ModelEntry:
    REGISTRY[entry.name] = entry
    return entry


def register_resolver(prefix: str, resolver: Resolver) -> Resolver:
    """Make `PREFIX:NAME:LAYER,...` specs resolve through `resolver`."""
    SPEC_RESOLVERS[prefix] = resolver
    return resolver
