"""What `shiftlens models` shows: each model's layers with their feature sizes, from one forward pass of a
224 image on the meta device (shapes only: no weights, no memory, no download)."""

from __future__ import annotations

import torch

from shiftlens.models.registry import ModelEntry
from shiftlens.models.taps import Taps


def feature_sizes(entry: ModelEntry, size: int = 224) -> dict[str, int | None]:
    """{layer: feature dimension}; None for every layer when the model cannot run on the meta device."""
    try:
        with torch.device("meta"):
            model = entry.build().eval()
        taps = Taps(model, list(entry.layers.values()))
        with torch.no_grad():
            values = taps(torch.zeros(1, 3, size, size, device="meta"))
        taps.close()
        return {name: int(v.shape[1]) for name, v in values.items()}
    except Exception:  # a model with data-dependent code paths; sizes are informational only
        return {name: None for name in entry.layers}
