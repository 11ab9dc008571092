"""The crop protocol: a canvas-sized window slides over a larger image (the paper demo's "plane" set).

The image's centred square is resized to p x p (p is a `sizes` entry, larger than the canvas); position (y, x) is the
window's top-left corner, 0, s, 2s, ... up to p - canvas, so there are (p - canvas) // s + 1 positions per axis, the
mirror of pasting. `--patches images` uses the bundled photographs (`canvases/images/`, CC0 / public domain),
`--patches image:PATH` one image file or a folder of them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from shiftlens.canvases.background import square_resized
from shiftlens.canvases.normalisation import Normalisation
from shiftlens.errors import ShiftlensError
from shiftlens.patches.patch import Patch, read_image

IMAGES_DIR = Path(__file__).parent / "images"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _as_patch(rgb: np.ndarray, pid: str, category: str, source: str, licence: str, provenance: dict, canvas: int):
    h, w = rgb.shape[:2]
    if min(h, w) < canvas:
        raise ShiftlensError(f"image {provenance.get('file', pid)} is {w}x{h}, smaller than the {canvas}px canvas: "
                             f"--protocol crop needs images of at least {canvas}x{canvas}")
    square = square_resized(rgb, min(h, w))
    rgba = np.concatenate([square, np.full(square.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return Patch(id=pid, category=category, rgba=rgba, source=source, licence=licence, provenance=provenance)


def load_images(spec: str, canvas: int, limit: int | None = None) -> list:
    """The crop protocol's images as `Patch`es with a full alpha (their centred square): `images` (bundled) or
    `image:PATH` (a file, or a folder whose image files are taken in name order; category = the file stem up to its
    last `_`)."""
    kind, _, rest = spec.partition(":")
    out = []
    if spec == "images":
        manifest = json.loads((IMAGES_DIR / "manifest.json").read_text(encoding="utf-8"))
        for entry in manifest["images"][:limit]:
            path = IMAGES_DIR / entry["file"]
            prov = {k: v for k, v in entry.items() if k not in ("id", "category", "licence")} | {"file": str(path)}
            out.append(_as_patch(read_image(path, "RGB"), entry["id"], entry["category"], "images", entry["licence"],
                                 prov, canvas))
        return out
    if kind != "image" or not rest:
        raise ShiftlensError(f"--patches {spec!r} does not work with --protocol crop: use images (bundled) or "
                             "image:PATH (an image file or a folder of them)")
    path = Path(rest)
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if not files:
            raise ShiftlensError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)}): give image:FILE or a "
                                 "folder of images")
    elif path.is_file():
        files = [path]
    else:
        raise ShiftlensError(f"image {path} does not exist: give image:PATH with an image file or a folder of images")
    for f in files[:limit]:
        stem = f.stem
        category = stem.rsplit("_", 1)[0] if "_" in stem else stem
        out.append(_as_patch(read_image(f, "RGB"), stem, category, f"image:{path}", "unknown", {"file": str(f)}, canvas))
    return out


class CropRenderer:
    """Renders the canvas-sized windows of one resized image, already normalised, as an NCHW channels_last tensor."""

    def __init__(
        self,
        rgba: np.ndarray,
        canvas: int = 224,
        normalisation: Normalisation | None = None,
        device: torch.device | str = "cpu",
        pool: dict | None = None,
    ) -> None:
        if rgba.shape[0] < canvas or rgba.shape[1] < canvas:
            raise ShiftlensError(f"image size {rgba.shape[1]}x{rgba.shape[0]} is smaller than the {canvas}px canvas: "
                                 f"use crop sizes above {canvas}")
        self.canvas = canvas
        self.device = torch.device(device)
        self.size = rgba.shape[0]
        self._pool = pool
        norm = normalisation or Normalisation()
        self.image = norm(torch.from_numpy(np.ascontiguousarray(rgba[..., :3])).to(self.device).float() / 255.0)

    def render(self, ys: torch.Tensor | np.ndarray, xs: torch.Tensor | np.ndarray, reuse: bool = False) -> torch.Tensor:
        """The windows at top-left corners (ys, xs); with `reuse`, a view of a buffer the next reuse call overwrites."""
        ys_l = torch.as_tensor(ys).tolist()
        xs_l = torch.as_tensor(xs).tolist()
        b, c = len(ys_l), self.canvas
        out = None
        if reuse:
            buf = (self._pool or {}).get("canvas")
            if buf is not None and buf.shape[0] >= b and buf.shape[1] == c and buf.device == self.device:
                out = buf[:b]
        if out is None:
            out = torch.empty((b, c, c, 3), dtype=self.image.dtype, device=self.device)
            if reuse and self._pool is not None:
                self._pool["canvas"] = out
        for i, (y, x) in enumerate(zip(ys_l, xs_l)):
            if y < 0 or x < 0 or y + c > self.size or x + c > self.size:
                raise ShiftlensError(f"window ({y}, {x}) leaves the {self.size}px image")
            out[i] = self.image[y : y + c, x : x + c]
        return out.permute(0, 3, 1, 2)
