"""Model spec strings, split and parsed in this one place.

A spec is `NAME` (the model's default layers), `NAME:LAYER,LAYER`, or a prefixed `PREFIX:NAME:LAYER,LAYER`
(`torchvision:`, `timm:`) whose layers are module paths, optionally followed by its own weights, `@random`,
`@imagenet` or `@PATH` (a path without spaces, ',', ';' or '@'), so that two checkpoints of one architecture run
side by side (`alexnet@random alexnet@flip.pth`). Several specs are separated by ';' or spaces, and in a comma list
a token that names a model (or has a ':') starts a new spec: `alexnet:fc6,fc7,resnet50` is two.
"""

from __future__ import annotations

from typing import Iterable

from shiftlens.errors import ShiftlensError
from shiftlens.models.registry import REGISTRY, SPEC_RESOLVERS, ModelSpec

CLASS_LAYER = "class"


def split_list(text: str) -> list[str]:
    """`a, b,,c` -> [a, b, c]: the one splitter of comma lists (layers)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def split_specs(items: str | Iterable[str]) -> list[str]:
    """`--models` values (one string or several) -> one string per spec."""
    specs: list[str] = []
    for item in [items] if isinstance(items, str) else items:
        for chunk in item.replace(";", " ").split():
            for token in split_list(chunk):
                head = token.split("@", 1)[0]
                if ":" in head or head in REGISTRY or not specs:
                    specs.append(token)
                else:
                    specs[-1] += ("," if ":" in specs[-1] else ":") + token
    return specs


def _refuse_class_layer(spec: str, layers: list[str], prefixed: bool) -> None:
    """The `class` layer became the `class` analysis (it reads the logits tap): say so instead of "unknown layer"."""
    if CLASS_LAYER not in layers:
        return
    kept = ",".join(l for l in layers if l != CLASS_LAYER)
    model = spec.rsplit(":", 1)[0]
    instead = f"{model}:{kept}" if kept else (f"{model}:MODULE" if prefixed else model)
    raise ShiftlensError(f"model spec {spec!r}: 'class' is no longer a layer, class probability is an analysis now: "
                         f"use {instead} and add class to the analyses (e.g. --analyses similarity,class)")


def parse_spec(spec: str) -> ModelSpec:
    """One spec -> the entry and the layers asked for; ShiftlensError naming the choices when it does not fit."""
    spec, at, weights = spec.strip().partition("@")
    if at:
        return _with_weights(spec, weights)
    head, sep, rest = spec.partition(":")
    if sep and head in SPEC_RESOLVERS:
        name, _, layers_text = rest.partition(":")
        layers = split_list(layers_text)
        _refuse_class_layer(spec, layers, prefixed=True)
        return ModelSpec(SPEC_RESOLVERS[head](name.strip(), layers), layers)
    if head not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        hint = f"; or use {' / '.join(p + ':NAME:LAYER' for p in SPEC_RESOLVERS)}" if SPEC_RESOLVERS else ""
        raise ShiftlensError(f"unknown model {head!r}: choose one of {known}{hint}")
    entry = REGISTRY[head]
    layers = split_list(rest) or list(entry.default_layers)
    _refuse_class_layer(spec, layers, prefixed=False)
    for layer in layers:
        entry.layer(layer)
    return ModelSpec(entry, layers)


def _with_weights(spec: str, weights: str) -> ModelSpec:
    """`SPEC@WEIGHTS`: the spec with its own weights (random, imagenet or a checkpoint path)."""
    if not weights or "@" in weights:
        raise ShiftlensError(f"model spec {spec + '@' + weights!r}: give one '@' followed by random, imagenet or a "
                             "checkpoint path, e.g. alexnet@random or alexnet:fc6@weights/flip.pth")
    parsed = parse_spec(spec)
    parsed.weights = weights
    return parsed
