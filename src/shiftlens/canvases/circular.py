"""Circular shifts: the whole canvas (the patch at (0, 0) on its background, and the background) rolls with
wrap-around by (y, x) instead of the patch moving over a fixed background.

Position (y, x) is `torch.roll(canvas, (y, x), dims=(rows, columns))`, so the patch's top-left corner lands at
(y mod canvas, x mod canvas) and a patch that reaches the edge continues on the other side. On a flat background,
positions with y, x <= canvas - p give exactly the paste protocol's image. Networks built for circular shifts
(adaptive polyphase sampling, models/aps.py) are invariant to these shifts by construction.
"""

from __future__ import annotations

import numpy as np
import torch

from shiftlens.canvases.background import Background
from shiftlens.canvases.normalisation import Normalisation
from shiftlens.canvases.paste import CanvasRenderer


class CircularRenderer:
    """Renders the rolled canvases of one patch, already normalised, as an NCHW channels_last tensor."""

    def __init__(
        self,
        rgba: np.ndarray,
        canvas: int = 224,
        background: "tuple[int, int, int] | list[int] | str | Background" = (255, 255, 255),
        normalisation: Normalisation | None = None,
        device: torch.device | str = "cpu",
        pool: dict | None = None,
    ) -> None:
        self.canvas = canvas
        self.device = torch.device(device)
        self.size = rgba.shape[0]
        self._pool = pool
        paste = CanvasRenderer(rgba, canvas, background, normalisation, self.device)
        self.base = paste.render(np.zeros(1, np.int64), np.zeros(1, np.int64))[0].permute(1, 2, 0).contiguous()  # HWC

    def render(self, ys: torch.Tensor | np.ndarray, xs: torch.Tensor | np.ndarray, reuse: bool = False) -> torch.Tensor:
        """The canvases rolled by each (y, x); with `reuse`, a view of a buffer the next reuse call overwrites."""
        ys_l = torch.as_tensor(ys).tolist()
        xs_l = torch.as_tensor(xs).tolist()
        b = len(ys_l)
        out = None
        if reuse:
            buf = (self._pool or {}).get("canvas")
            if buf is not None and buf.shape[0] >= b and buf.shape[1] == self.canvas and buf.device == self.device:
                out = buf[:b]
        if out is None:
            out = torch.empty((b, self.canvas, self.canvas, 3), dtype=self.base.dtype, device=self.device)
            if reuse and self._pool is not None:
                self._pool["canvas"] = out
        for i, (y, x) in enumerate(zip(ys_l, xs_l)):
            out[i] = torch.roll(self.base, shifts=(int(y), int(x)), dims=(0, 1))
        return out.permute(0, 3, 1, 2)
