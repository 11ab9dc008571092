"""What `shiftlens models` shows: each model's layers with their feature sizes, from one forward pass of a
224 image on shapes alone (shapes.py: no weights, no memory, no download)."""

from __future__ import annotations

from shiftlens.models.registry import ModelEntry
from shiftlens.models.shapes import build_for_shapes, call_on_shapes
from shiftlens.models.taps import Taps


def feature_sizes(entry: ModelEntry, size: int = 224) -> dict[str, int | None]:
    """{layer: feature dimension}; None for every layer when the model cannot run on shapes alone."""
    try:
        model = build_for_shapes(entry.build)
    except Exception:  # sizes are informational only
        return {name: None for name in entry.layers}
    training = model.training
    try:
        with Taps(model.eval(), list(entry.layers.values())) as taps:
            values = call_on_shapes(taps, model, size)
        return {name: int(v.shape[1]) for name, v in values.items()}
    except Exception:  # a model with data-dependent code paths, or ops without a meta kernel
        return {name: None for name in entry.layers}
    finally:
        model.train(training)  # a given module (custom()) comes back in the mode it came in
