"""Where the content sits in each image of a protocol's grid: offsets along one axis, row-major grids.

paste/move: the patch's top-left corner on the fixed canvas, 0, s, 2s, ... up to canvas - p (n = 225 - p at s = 1).
paste/circular: the canvas is rolled by (y, x) with wrap-around, every stride step over the full period 0 .. canvas-1;
    the patch starts at (0, 0), so (y, x) is again where its top-left corner lands (mod canvas).
crop/move: the canvas-sized window's top-left corner on the image resized to p x p, 0, s, ... up to p - canvas.
"""

from __future__ import annotations

import numpy as np

from shiftlens.errors import ShiftlensError

PROTOCOLS = ("paste", "crop")
SHIFTS = ("move", "circular")


def offsets(canvas: int, patch: int, stride: int) -> np.ndarray:
    """Top-left offsets along one axis: 0, stride, ... up to canvas - patch (n = 225 - p at stride 1)."""
    if stride < 1:
        raise ShiftlensError(f"stride {stride} is invalid: use 1 or more")
    if patch > canvas:
        raise ShiftlensError(f"patch size {patch} is larger than the {canvas}px canvas: use a smaller patch size")
    return np.arange(0, canvas - patch + 1, stride)


def axis_positions(canvas: int, size: int, stride: int, protocol: str = "paste", shift: str = "move") -> np.ndarray:
    """The offsets along one axis for a protocol (see the module docstring); `size` is the patch side for paste and
    the side the image is resized to for crop."""
    if protocol == "crop":
        if shift != "move":
            raise ShiftlensError("--shift circular is for the paste protocol: use --shift move with --protocol crop")
        if size < canvas:
            raise ShiftlensError(f"crop size {size} is smaller than the {canvas}px canvas: for --protocol crop, sizes "
                                 f"are the side the image is resized to, e.g. --sizes {canvas + 64}")
        return offsets(size, canvas, stride)
    if protocol != "paste":
        raise ShiftlensError(f"unknown protocol {protocol!r}: use {' or '.join(PROTOCOLS)}")
    if shift == "circular":
        if stride < 1:
            raise ShiftlensError(f"stride {stride} is invalid: use 1 or more")
        offsets(canvas, size, stride)  # the patch must fit on the canvas
        return np.arange(0, canvas, stride)
    if shift != "move":
        raise ShiftlensError(f"unknown shift {shift!r}: use {' or '.join(SHIFTS)}")
    return offsets(canvas, size, stride)


def grid(canvas: int, patch: int, stride: int, protocol: str = "paste", shift: str = "move") -> tuple[np.ndarray, np.ndarray]:
    """Row-major (y outer, x inner) positions, as two flat arrays."""
    o = axis_positions(canvas, patch, stride, protocol, shift)
    ys, xs = np.meshgrid(o, o, indexing="ij")
    return ys.ravel(), xs.ravel()
