"""What the canvas shows where the patch is transparent: a flat colour, an image, or a bundled texture.

`--background` takes white (the default), black, gray, mean (the ImageNet mean pixel, round(255 x (0.485, 0.456, 0.406)) =
(124, 116, 104)), #RRGGBB, image:PATH or texture:NAME (`canvases/textures/`, CC0, listed in its manifest.json). An
image or texture is centre-cropped to a square and resized (bilinear) to the canvas; it stays where it is while the
object moves over it (or rolls with the canvas under --shift circular).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from shiftlens.errors import ShiftlensError, path_error
from shiftlens.patches.patch import read_image  # one-line errors for missing, corrupt or oversized files

TEXTURES_DIR = Path(__file__).parent / "textures"
FLAT = {"white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128), "grey": (128, 128, 128), "mean": (124, 116, 104)}
_HEX = re.compile(r"^#([0-9a-fA-F]{6})$")


@dataclass(frozen=True, eq=False)
class Background:
    """A parsed `--background`: `rgb` for a flat colour, else `image` (canvas, canvas, 3) uint8."""

    spec: str
    rgb: tuple[int, int, int] | None = None
    image: np.ndarray | None = None

    @property
    def flat(self) -> bool:
        return self.rgb is not None

    def pixels(self, canvas: int) -> np.ndarray:
        """The background as a (canvas, canvas, 3) uint8 image."""
        if self.image is not None:
            return self.image
        out = np.empty((canvas, canvas, 3), np.uint8)
        out[:] = np.asarray(self.rgb, np.uint8)
        return out


def texture_names() -> list[str]:
    return sorted(t["name"] for t in _manifest()["textures"])


@functools.cache
def _manifest() -> dict:
    return json.loads((TEXTURES_DIR / "manifest.json").read_text(encoding="utf-8"))


def square_resized(rgb: np.ndarray, size: int) -> np.ndarray:
    """The centred square of the largest side that fits, resized bilinearly to (size, size, 3) uint8."""
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = np.ascontiguousarray(rgb[top : top + side, left : left + side, :3])
    if side == size:
        return square
    return np.asarray(Image.fromarray(square).resize((size, size), Image.BILINEAR))


def _image(path: Path, canvas: int) -> np.ndarray:
    return square_resized(read_image(path, "RGB"), canvas)


@functools.lru_cache(maxsize=8)
def _texture(name: str, canvas: int) -> np.ndarray:
    """A bundled texture at the canvas size (cached: the stream asks once per patch; image:PATH is read each time so
    an edited file is seen)."""
    entry = next(t for t in _manifest()["textures"] if t["name"] == name)
    image = _image(TEXTURES_DIR / entry["file"], canvas)
    image.flags.writeable = False
    return image


def _parse(spec: str, canvas: int) -> Background:
    text = spec.strip()
    if text.lower() in FLAT:
        return Background(text.lower(), rgb=FLAT[text.lower()])
    found = _HEX.match(text)
    if found:
        h = found.group(1)
        return Background(text.lower(), rgb=(int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)))
    if text.startswith("#"):
        raise ShiftlensError(f"background {spec!r} is not a colour: give #RRGGBB with six hex digits, e.g. #808080")
    kind, sep, rest = text.partition(":")
    if sep and kind == "image":
        if not rest:
            raise ShiftlensError("--background image: needs a file, e.g. image:backgrounds/street.jpg")
        if not Path(rest).is_file():
            raise path_error(Path(rest), "background image", "give image:PATH of an image file, e.g. "
                                                             "image:backgrounds/street.jpg")
        return Background(text, image=_image(Path(rest), canvas))
    if sep and kind == "texture":
        names = texture_names()
        if rest not in names:
            raise ShiftlensError(f"unknown texture {rest!r}: use one of {', '.join(names)} (texture:NAME), or image:PATH")
        return Background(text, image=_texture(rest, canvas))
    raise ShiftlensError(f"background {spec!r} is unknown: use white, gray, mean, #RRGGBB, image:PATH or texture:NAME "
                         f"({', '.join(texture_names())})")


def parse_background(spec: "str | list[int] | tuple[int, ...] | Background", canvas: int = 224) -> Background:
    """A `--background` value as a `Background`; a list of three 0-255 values (the older config form) is a flat
    colour."""
    if isinstance(spec, Background):
        return spec
    if isinstance(spec, str):
        return _parse(spec, canvas)
    values = [int(v) for v in spec]
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        raise ShiftlensError(f"background {list(spec)} is invalid: give three values 0-255, e.g. [255, 255, 255], or "
                             "a name such as white")
    return Background(f"#{values[0]:02x}{values[1]:02x}{values[2]:02x}", rgb=(values[0], values[1], values[2]))
