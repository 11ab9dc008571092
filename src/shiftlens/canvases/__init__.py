"""Shifted canvases, rendered in batches on the compute device and never written to disk.

One module per idea: `positions` (the grid of each protocol), `background` (flat colours, images, textures),
`paste` (a patch over a fixed background: the paper's protocol), `circular` (the canvas rolls with wrap-around),
`crop` (a window slides over a larger image). `make_renderer` picks the renderer of a run's protocol and shift.
"""

from __future__ import annotations

import numpy as np
import torch

from shiftlens.canvases.background import FLAT, Background, parse_background, square_resized, texture_names
from shiftlens.canvases.circular import CircularRenderer
from shiftlens.canvases.crop import CropRenderer, load_images
from shiftlens.canvases.normalisation import Normalisation
from shiftlens.canvases.paste import CanvasRenderer, composite
from shiftlens.canvases.positions import PROTOCOLS, SHIFTS, axis_positions, grid, offsets

Renderer = CanvasRenderer | CircularRenderer | CropRenderer


def make_renderer(rgba: np.ndarray, canvas: int, background, normalisation: Normalisation,
                  device: torch.device | str = "cpu", pool: dict | None = None, protocol: str = "paste",
                  shift: str = "move") -> Renderer:
    """The renderer of one patch (or, for crop, one resized image) for the run's protocol and shift."""
    if protocol == "crop":
        return CropRenderer(rgba, canvas, normalisation, device, pool)
    if shift == "circular":
        return CircularRenderer(rgba, canvas, background, normalisation, device, pool)
    return CanvasRenderer(rgba, canvas, background, normalisation, device, pool)


__all__ = ["FLAT", "PROTOCOLS", "SHIFTS", "Background", "CanvasRenderer", "CircularRenderer", "CropRenderer",
           "Normalisation", "Renderer", "axis_positions", "composite", "grid", "load_images", "make_renderer",
           "offsets", "parse_background", "square_resized", "texture_names"]
