"""The paste protocol: one patch on a fixed background at every position, rendered in batches on the compute device.

With a flat background the pasted block `where(alpha, patch, background)` is the same at every position: rendering a
batch is filling a canvas with the background and writing that block at each (y, x). With an image background the
block is composed at each position from the patch and the background under it (binary alpha, so still exact). Both
are normalised once with the model's preprocessing (an affine map per channel commutes with pasting), and the batch
is written as NHWC memory, which is the channels_last layout the convolutions prefer.

The stream renders into one reused buffer (`render(..., reuse=True)`): only the block pasted at each slot's previous
position is put back to background before the new block goes in, so a batch costs two block copies per image instead
of filling and page-faulting a fresh (B, 224, 224, 3) tensor (the gain is in docs/performance.md).
"""

from __future__ import annotations

import numpy as np
import torch

from shiftlens.canvases.background import Background, parse_background
from shiftlens.canvases.normalisation import Normalisation
from shiftlens.errors import ShiftlensError


def composite(rgba: np.ndarray, y: int, x: int, canvas: int = 224,
              background: "tuple[int, int, int] | list[int] | str | Background" = (255, 255, 255)) -> np.ndarray:
    """The image at one position as uint8 (canvas, canvas, 3): out = (1 - alpha) * background + alpha * patch."""
    p = rgba.shape[0]
    if y < 0 or x < 0 or y + p > canvas or x + rgba.shape[1] > canvas:
        raise ShiftlensError(f"position ({y}, {x}) puts the {p}px patch outside the {canvas}px canvas")
    out = parse_background(background, canvas).pixels(canvas).copy()
    region = out[y : y + p, x : x + rgba.shape[1]]
    mask = rgba[..., 3:] > 0
    region[:] = np.where(mask, rgba[..., :3], region)
    return out


class CanvasRenderer:
    """Renders batches of one patch at given positions, already normalised, as an NCHW channels_last tensor."""

    def __init__(
        self,
        rgba: np.ndarray,
        canvas: int = 224,
        background: "tuple[int, int, int] | list[int] | str | Background" = (255, 255, 255),
        normalisation: Normalisation | None = None,
        device: torch.device | str = "cpu",
        pool: dict | None = None,
    ) -> None:
        """`pool`: a dict shared by renderers used one after another (the extractor's), so that `reuse` renders
        recycle one buffer instead of page-faulting a fresh one for every patch."""
        self._pool = pool
        if rgba.shape[0] > canvas or rgba.shape[1] > canvas:
            raise ShiftlensError(f"patch size {rgba.shape[0]} is larger than the {canvas}px canvas: use a smaller patch size")
        self.canvas = canvas
        self.device = torch.device(device)
        self.size = rgba.shape[0]
        norm = normalisation or Normalisation()
        bg = parse_background(background, canvas)
        patch = torch.tensor(rgba, device=self.device)  # a copy: cached patches are read-only arrays
        self._image: torch.Tensor | None = None
        if bg.flat:
            colour = torch.tensor(list(bg.rgb), dtype=torch.uint8, device=self.device)
            block = torch.where(patch[..., 3:] > 0, patch[..., :3], colour)  # (p, p, 3) uint8, exact binary compositing
            self.block = norm(block.float() / 255.0)
            self.background = norm(colour.float() / 255.0)
        else:
            # The block differs per position (the background under it changes): keep the patch, its mask and the
            # normalised background image, and compose each block from them.
            self.block = norm(patch[..., :3].float() / 255.0)
            self._mask = patch[..., 3:] > 0
            self._image = norm(torch.from_numpy(bg.image.copy()).to(self.device).float() / 255.0)
            self.background = self._image
        p = self.size
        self._dy = torch.arange(p, device=self.device).view(1, p, 1)
        self._dx = torch.arange(rgba.shape[1], device=self.device).view(1, 1, -1)

    def _fresh(self, b: int) -> torch.Tensor:
        if self._image is None:
            return self.background.expand(b, self.canvas, self.canvas, 3).clone()
        return self._image.expand(b, self.canvas, self.canvas, 3).clone()

    def render(self, ys: torch.Tensor | np.ndarray, xs: torch.Tensor | np.ndarray, reuse: bool = False) -> torch.Tensor:
        """The batch at positions (ys, xs). With `reuse`, the result is a view of an internal buffer that the next
        `render(..., reuse=True)` call overwrites (the stream consumes each batch before rendering the next)."""
        ys = torch.as_tensor(ys, device=self.device).long()
        xs = torch.as_tensor(xs, device=self.device).long()
        b = ys.shape[0]
        if not reuse:
            out = self._fresh(b)  # NHWC
            self._paste(out, ys, xs)
            return out.permute(0, 3, 1, 2)  # NCHW view of NHWC memory = channels_last
        buf = getattr(self, "_buf", None)
        if buf is None or buf.shape[0] < b:
            shared = (self._pool or {}).get("canvas")
            if shared is not None and shared.shape[0] >= b and shared.shape[1] == self.canvas and shared.device == self.device:
                buf = shared
                buf.copy_(self.background.expand_as(buf))  # another patch's blocks may be in it
            else:
                buf = self._fresh(b)
                if self._pool is not None:
                    self._pool["canvas"] = buf
            self._buf = buf
            self._prev = None
        out = buf[:b]
        if self._prev is not None:
            py, px = self._prev
            k = min(b, py.shape[0])
            self._paste(buf[:k], py[:k], px[:k], restore=True)
            # slots beyond b keep their old block; remember them so a later larger batch still cleans them
            ys_all = torch.cat([ys, py[b:]]) if py.shape[0] > b else ys
            xs_all = torch.cat([xs, px[b:]]) if px.shape[0] > b else xs
        else:
            ys_all, xs_all = ys, xs
        self._paste(out, ys, xs)
        self._prev = (ys_all, xs_all)
        return out.permute(0, 3, 1, 2)

    def _paste(self, out: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, restore: bool = False) -> None:
        """Writes the block at each (y, x) of the NHWC batch `out`, or with `restore` the background there."""
        if out.device.type == "cpu":
            self._paste_slices(out, ys, xs, restore)  # a slice copy per image beats building index tensors on a CPU
        else:
            self._paste_indexed(out, ys, xs, restore)  # one indexed write for the whole batch on a GPU

    def _paste_slices(self, out: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, restore: bool) -> None:
        p, q = self._dy.shape[1], self._dx.shape[2]
        image = self._image
        for i, (y, x) in enumerate(zip(ys.tolist(), xs.tolist())):
            if image is None:
                out[i, y : y + p, x : x + q] = self.background if restore else self.block
            else:
                under = image[y : y + p, x : x + q]
                out[i, y : y + p, x : x + q] = under if restore else torch.where(self._mask, self.block, under)

    def _paste_indexed(self, out: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, restore: bool) -> None:
        b = ys.shape[0]
        p, q = self._dy.shape[1], self._dx.shape[2]
        image = self._image
        rows = (ys.view(b, 1, 1) + self._dy).expand(b, p, q)
        cols = (xs.view(b, 1, 1) + self._dx).expand_as(rows)
        batch = torch.arange(b, device=self.device).view(b, 1, 1).expand_as(rows)
        if image is None:
            out[batch, rows, cols] = self.background.expand(b, p, q, 3) if restore else self.block
        else:
            under = image[rows, cols]
            out[batch, rows, cols] = under if restore else torch.where(self._mask, self.block, under)
