"""Shifted canvases, rendered in batches on the compute device and never written to disk.

The background is uniform, so the pasted block `where(alpha, patch, background)` is the same at every position:
rendering a batch is filling a canvas with the background and writing that block at each (y, x). Both are
normalised once with the model's preprocessing (an affine map per channel commutes with pasting), and the batch
is written as NHWC memory, which is the channels_last layout the convolutions prefer.

The stream renders into one reused buffer (`render(..., reuse=True)`): only the block pasted at each slot's previous
position is put back to background before the new block goes in, so a batch costs two block copies per image instead
of filling and page-faulting a fresh (B, 224, 224, 3) tensor (the gain is in docs/performance.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from shiftlens.errors import ShiftlensError


def offsets(canvas: int, patch: int, stride: int) -> np.ndarray:
    """Top-left offsets along one axis: 0, stride, ... up to canvas - patch (n = 225 - p at stride 1)."""
    if stride < 1:
        raise ShiftlensError(f"stride {stride} is invalid: use 1 or more")
    if patch > canvas:
        raise ShiftlensError(f"patch size {patch} is larger than the {canvas}px canvas: use a smaller patch size")
    return np.arange(0, canvas - patch + 1, stride)


def grid(canvas: int, patch: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-major (y outer, x inner) top-left positions, as two flat arrays."""
    o = offsets(canvas, patch, stride)
    ys, xs = np.meshgrid(o, o, indexing="ij")
    return ys.ravel(), xs.ravel()


def composite(rgba: np.ndarray, y: int, x: int, canvas: int = 224, background=(255, 255, 255)) -> np.ndarray:
    """The image at one position as uint8 (canvas, canvas, 3): out = (1 - alpha) * background + alpha * patch."""
    p = rgba.shape[0]
    if y < 0 or x < 0 or y + p > canvas or x + rgba.shape[1] > canvas:
        raise ShiftlensError(f"position ({y}, {x}) puts the {p}px patch outside the {canvas}px canvas")
    out = np.empty((canvas, canvas, 3), np.uint8)
    out[:] = np.asarray(background, np.uint8)
    region = out[y : y + p, x : x + rgba.shape[1]]
    mask = rgba[..., 3:] > 0
    region[:] = np.where(mask, rgba[..., :3], region)
    return out


@dataclass
class Normalisation:
    """The model's input convention as an affine map per channel on RGB in [0, 1]: (x - mean) / std."""

    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., 3) channels-last values in [0, 1]."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device)
        return (x - mean) / std


class CanvasRenderer:
    """Renders batches of one patch at given positions, already normalised, as an NCHW channels_last tensor."""

    def __init__(
        self,
        rgba: np.ndarray,
        canvas: int = 224,
        background=(255, 255, 255),
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
        patch = torch.from_numpy(rgba).to(self.device)
        bg = torch.tensor(list(background), dtype=torch.uint8, device=self.device)
        block = torch.where(patch[..., 3:] > 0, patch[..., :3], bg)  # (p, p, 3) uint8, exact binary compositing
        self.block = norm(block.float() / 255.0)
        self.background = norm(bg.float() / 255.0)
        p = self.size
        self._dy = torch.arange(p, device=self.device).view(1, p, 1)
        self._dx = torch.arange(rgba.shape[1], device=self.device).view(1, 1, -1)

    def render(self, ys: torch.Tensor | np.ndarray, xs: torch.Tensor | np.ndarray, reuse: bool = False) -> torch.Tensor:
        """The batch at positions (ys, xs). With `reuse`, the result is a view of an internal buffer that the next
        `render(..., reuse=True)` call overwrites (the stream consumes each batch before rendering the next)."""
        ys = torch.as_tensor(ys, device=self.device).long()
        xs = torch.as_tensor(xs, device=self.device).long()
        b = ys.shape[0]
        if not reuse:
            out = self.background.expand(b, self.canvas, self.canvas, 3).clone()  # NHWC
            self._paste(out, ys, xs)
            return out.permute(0, 3, 1, 2)  # NCHW view of NHWC memory = channels_last
        buf = getattr(self, "_buf", None)
        if buf is None or buf.shape[0] < b:
            shared = (self._pool or {}).get("canvas")
            if shared is not None and shared.shape[0] >= b and shared.shape[1] == self.canvas and shared.device == self.device:
                buf = shared
                buf.copy_(self.background.expand_as(buf))  # another patch's blocks may be in it
            else:
                buf = self.background.expand(b, self.canvas, self.canvas, 3).clone()
                if self._pool is not None:
                    self._pool["canvas"] = buf
            self._buf = buf
            self._prev = None
        out = buf[:b]
        if self._prev is not None:
            py, px = self._prev
            k = min(b, py.shape[0])
            self._paste(buf[:k], py[:k], px[:k], self.background)
            # slots beyond b keep their old block; remember them so a later larger batch still cleans them
            ys_all = torch.cat([ys, py[b:]]) if py.shape[0] > b else ys
            xs_all = torch.cat([xs, px[b:]]) if px.shape[0] > b else xs
        else:
            ys_all, xs_all = ys, xs
        self._paste(out, ys, xs)
        self._prev = (ys_all, xs_all)
        return out.permute(0, 3, 1, 2)

    def _paste(self, out: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, value: torch.Tensor | None = None) -> None:
        """Writes the block (or `value`, broadcast) at each (y, x) of the NHWC batch `out`."""
        b = ys.shape[0]
        p, q = self._dy.shape[1], self._dx.shape[2]
        src = self.block if value is None else value
        if out.device.type == "cpu":
            # A slice copy per image moves only p*q*3 values; on a CPU that beats building index tensors.
            for i, (y, x) in enumerate(zip(ys.tolist(), xs.tolist())):
                out[i, y : y + p, x : x + q] = src
            return
        rows = (ys.view(b, 1, 1) + self._dy).expand(b, p, q)
        cols = (xs.view(b, 1, 1) + self._dx).expand_as(rows)
        batch = torch.arange(b, device=self.device).view(b, 1, 1).expand_as(rows)
        out[batch, rows, cols] = src if value is None else src.expand(b, p, q, 3)
