"""A patch: an RGBA object cut-out with its provenance, and how it is resized to the study's square sides."""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from shiftlens.errors import ShiftlensError


@dataclass
class Patch:
    """An object cut-out. `rgba` is uint8 (H, W, 4) with a binary alpha (0 or 255)."""

    id: str
    category: str
    rgba: np.ndarray
    source: str
    licence: str = "unknown"
    provenance: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rgba.ndim != 3 or self.rgba.shape[2] != 4 or self.rgba.dtype != np.uint8:
            raise ShiftlensError(f"patch {self.id}: expected an RGBA uint8 image, got shape {self.rgba.shape}")
        if not (self.rgba[..., 3] > 0).any():
            raise ShiftlensError(f"patch {self.id} ({self.source}): its mask is empty; give an object with a non-empty mask")

    def digest(self) -> str:
        """A short hash of the pixels (shape and RGBA bytes): a part whose patch image changed under the same id
        can be recognised and recomputed."""
        h = hashlib.sha256(repr(self.rgba.shape).encode())
        h.update(np.ascontiguousarray(self.rgba).tobytes())
        return h.hexdigest()[:16]

    def resized(self, size: int, keep_aspect: bool = False) -> np.ndarray:
        """The patch as a (size, size, 4) uint8 array with binary alpha.

        The paper stretches every patch to a square (aspect ratio not kept); `keep_aspect` instead fits the
        longer side and pads with transparent pixels, so the object keeps its shape and the positions stay the same.
        """
        h, w = self.rgba.shape[:2]
        if keep_aspect:
            scale = size / max(h, w)
            th, tw = max(1, round(h * scale)), max(1, round(w * scale))
        else:
            th, tw = size, size
        rgb = Image.fromarray(np.ascontiguousarray(self.rgba[..., :3])).resize((tw, th), Image.BILINEAR)
        alpha = Image.fromarray(np.ascontiguousarray(self.rgba[..., 3])).resize((tw, th), Image.BILINEAR)
        out = np.zeros((size, size, 4), np.uint8)
        top, left = (size - th) // 2, (size - tw) // 2
        out[top : top + th, left : left + tw, :3] = np.asarray(rgb)
        out[top : top + th, left : left + tw, 3] = np.where(np.asarray(alpha) >= 128, 255, 0)
        if not out[..., 3].any():
            raise ShiftlensError(f"patch {self.id}: its mask vanishes at size {size}; use a larger patch size")
        return out

    def to_png(self, path: Path, size: int | None = None, keep_aspect: bool = False) -> None:
        arr = self.rgba if size is None else self.resized(size, keep_aspect)
        Image.fromarray(arr, "RGBA").save(path)


_16BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_PREMULTIPLIED = ("La", "RGBa")


def _as_8bit(im: Image.Image, path: Path, mask: bool = False) -> Image.Image:
    """The image in an 8-bit mode. Pillow's convert() clips 16- and 32-bit grey to 255 and truncates floats to 0
    (a 16-bit 40000 became white, a float 0.5 black), so these are scaled here: 16-bit by 255/65535 (also a 16-bit
    PNG that a Pillow opens as 32-bit "I"), floats from 0-1; 32-bit integers and anything else are refused.
    A `mask` keeps its meaning instead (any non-zero value is the object; a 16-bit label 1 must not round to 0)."""
    if im.mode in _PREMULTIPLIED:
        raise ShiftlensError(f"image {path} has premultiplied alpha (mode {im.mode}), which shiftlens cannot read: "
                             "save it as an 8-bit RGBA PNG")
    if im.mode not in _16BIT + ("I", "F"):
        return im
    values = np.asarray(im)
    if mask:
        return Image.fromarray(np.where(values != 0, 255, 0).astype(np.uint8), "L")
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if im.mode == "F":
        if not np.isfinite(values).all() or lo < 0 or hi > 1:
            raise ShiftlensError(f"image {path} holds floating-point values from {lo:g} to {hi:g}; shiftlens reads "
                                 "float images as 0 (black) to 1 (white): scale it to 0-1 or save it as an 8-bit image")
        scaled = values.astype(np.float64) * 255
    else:
        if (im.mode == "I" and im.format != "PNG") or lo < 0 or hi > 65535:  # a PNG's depth stops at 16 bits
            raise ShiftlensError(f"image {path} holds 32-bit integers ({lo:g} to {hi:g}), which have no one scale to "
                                 "8 bits: save it as an 8- or 16-bit image")
        scaled = values.astype(np.float64) * (255 / 65535)
    grey = np.round(scaled).astype(np.uint8)
    key = im.info.get("transparency")
    if isinstance(key, int) and im.mode != "F":  # a 16-bit grey colour key (PNG tRNS) becomes an alpha channel
        alpha = np.where(values == key, 0, 255).astype(np.uint8)
        return Image.merge("LA", (Image.fromarray(grey, "L"), Image.fromarray(alpha, "L")))
    return Image.fromarray(grey, "L")


def _load(path: Path, mode: str | None = None, mask: bool = False) -> Image.Image:
    """Open and decode an image file (converted to `mode` if given; any bit depth in an 8-bit mode), turning every
    failure into one clear error. Every image shiftlens reads comes through here."""
    if not path.is_file():
        raise ShiftlensError(f"image {path} does not exist: check the path")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice it; either way the file is refused before decoding.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                im = _as_8bit(im, path, mask)
                return im if mode is None else im.convert(mode)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else str(exc)
        raise ShiftlensError(
            f"image {path} is too large to read safely ({size}, over Pillow's limit of {Image.MAX_IMAGE_PIXELS:,}): "
            "downscale it or crop it to the object first"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ShiftlensError(f"image {path} cannot be read ({exc.__class__.__name__}): replace or remove the file") from None


def read_image(path: Path, mode: str | None = None) -> np.ndarray:
    """Read an image file, turning a missing, corrupt or oversized file into one clear error."""
    return np.asarray(_load(path, mode))


def read_mask(path: Path) -> np.ndarray:
    """A mask file as (H, W) uint8 grey, any non-zero value of any bit depth staying non-zero."""
    return np.asarray(_load(path, "L", mask=True))


def has_transparency(im: Image.Image) -> bool:
    """An alpha channel, or a transparent colour (a PNG tRNS chunk: palette, grey or RGB colour key)."""
    return im.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in im.info


def read_rgba(path: Path) -> np.ndarray | None:
    """The image as RGBA if the file carries transparency in any form, else None (the caller needs a mask)."""
    im = _load(path)
    if not has_transparency(im):
        return None
    try:
        return np.asarray(im.convert("RGBA"))
    except ValueError as exc:  # a mode Pillow cannot convert, e.g. 16-bit grey with a tRNS chunk
        raise ShiftlensError(f"image {path} cannot be converted to RGBA ({exc}): save it as an 8-bit RGBA PNG") from None


ALPHA_OBJECT = 128
"""A pixel whose alpha is at least this belongs to the object: a soft edge is cut at its half-way point."""


def alpha_cutout(rgba: np.ndarray, name: str) -> np.ndarray:
    """The object of an image with transparency: alpha >= ALPHA_OBJECT, cropped to the mask's box (`rgba_from`)."""
    return rgba_from(rgba[..., :3], rgba[..., 3] >= ALPHA_OBJECT, name)


def rgba_from(rgb: np.ndarray, mask: np.ndarray, name: str) -> np.ndarray:
    """Combine an RGB image and a mask (any non-zero value = object) into an RGBA array cropped to the mask."""
    if rgb.shape[:2] != mask.shape[:2]:
        raise ShiftlensError(f"{name}: image {rgb.shape[1]}x{rgb.shape[0]} and mask {mask.shape[1]}x{mask.shape[0]} differ in size")
    if mask.ndim == 3:
        mask = mask[..., -1] if mask.shape[2] in (2, 4) else mask.max(axis=2)
    binary = mask > 0
    if not binary.any():
        raise ShiftlensError(f"{name}: the mask is empty; give a mask with the object's pixels non-zero")
    ys, xs = np.nonzero(binary)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    out = np.zeros((y1 - y0, x1 - x0, 4), np.uint8)
    out[..., :3] = rgb[y0:y1, x0:x1, :3]
    out[..., 3] = np.where(binary[y0:y1, x0:x1], 255, 0)
    return out
