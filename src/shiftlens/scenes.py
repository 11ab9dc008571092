"""Multi-object scenes: several patches, each with its own size and top-left (y, x), pasted in order on the canvas.

A scene is written as a compact string (`cat_01@10,20 cup_01:125@120,40`: patch id, optional `:SIZE`, `@Y,X`) or
as TOML (`[[scenes.NAME.objects]]` with `patch`, `size`, `y`, `x`). Compositing is the single-patch canvases' own
(binary alpha over the background, normalised with the model's preprocessing, rendered on the device), so a
one-object scene is exactly `CanvasRenderer.render` of that patch at that position.

Pixel-space arithmetic treats scenes as multisets of objects: `A - B + C` is A's objects, less B's, plus C's; B must
be in A (plus what came before it), else the object that is not there is named. One scene holds an object (patch,
size and place) at most once; copies that an expression stacks at one place are pasted once.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import torch

from shiftlens.canvases import Normalisation
from shiftlens.errors import ShiftlensError
from shiftlens.patches import Patch


@dataclass(frozen=True)
class SceneObject:
    """One pasted patch: its id, side in px and top-left corner."""

    patch: str
    size: int
    y: int
    x: int

    def __str__(self) -> str:
        """The compact form; an id that form cannot hold (spaces, ':', '@', '"') is written JSON-quoted, which
        `parse_scene` reads back, so a TOML scene survives the config's compact strings."""
        patch = self.patch if _PLAIN_ID.fullmatch(self.patch) else json.dumps(self.patch)
        return f"{patch}:{self.size}@{self.y},{self.x}"

    def at(self, y: int, x: int) -> "SceneObject":
        return SceneObject(self.patch, self.size, int(y), int(x))


@dataclass(frozen=True)
class Scene:
    """Objects in paste order (later ones cover earlier ones where they overlap)."""

    objects: tuple[SceneObject, ...]

    def __str__(self) -> str:
        return " ".join(str(o) for o in self.objects) or "(blank)"

    def replaced(self, index: int, obj: SceneObject) -> "Scene":
        objs = list(self.objects)
        objs[index] = obj
        return Scene(tuple(objs))


BLANK = Scene(())

_PLAIN_ID = re.compile(r'[^@:\s"]+')
_OBJECT = re.compile(r'(?P<patch>"(?:[^"\\]|\\.)*"|[^@:\s"]+)(?::(?P<size>-?\d+))?@(?P<y>-?\d+),(?P<x>-?\d+)(?=\s|$)')


def parse_scene(text: str, default_size: int) -> Scene:
    """`cat_01@10,20 cup_01:125@120,40` -> a Scene; an object without `:SIZE` gets `default_size`."""
    objects = []
    pos, text = 0, text.strip()
    while pos < len(text):
        m = _OBJECT.match(text, pos)
        if m is not None and m["patch"].startswith('"'):
            try:
                patch = json.loads(m["patch"])
            except json.JSONDecodeError:
                m = None
        elif m is not None:
            patch = m["patch"]
        if m is None:
            token = text[pos:].split()[0]
            raise ShiftlensError(f"scene object {token!r} is not PATCH[:SIZE]@Y,X: write e.g. cat_01@10,20 or "
                                 "cat_01:125@10,20 (top-left y, x in px); for a patch id with spaces, ':' or '@' "
                                 "give the scene as TOML [[scenes.NAME.objects]] tables (patch, size, y, x)")
        size = int(m["size"]) if m["size"] is not None else default_size
        objects.append(SceneObject(patch, size, int(m["y"]), int(m["x"])))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    if not objects:
        raise ShiftlensError(f"scene {text!r} has no objects: write e.g. cat_01@10,20")
    return Scene(tuple(objects))


def scene_from_toml(name: str, value: Any, default_size: int) -> Scene:
    """A TOML scene: `{objects = [{patch, size, y, x}, ...]}` (size optional), or a compact string."""
    if isinstance(value, str):
        return parse_scene(value, default_size)
    objects = value.get("objects") if isinstance(value, Mapping) else None
    if not isinstance(objects, list) or not objects:
        raise ShiftlensError(f"scene {name!r}: give [[scenes.{name}.objects]] tables with patch, size, y, x")
    out = []
    for i, obj in enumerate(objects):
        if not isinstance(obj, Mapping) or not {"patch", "y", "x"} <= set(obj) or set(obj) - {"patch", "size", "y", "x"}:
            raise ShiftlensError(f"scene {name!r} object {i + 1}: give exactly patch, y, x and optionally size, "
                                 f"got {sorted(obj) if isinstance(obj, Mapping) else obj!r}")
        size = obj.get("size", default_size)
        if not isinstance(obj["patch"], str) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                        for v in (size, obj["y"], obj["x"])):
            raise ShiftlensError(f"scene {name!r} object {i + 1}: patch is a string, size, y and x are integers")
        out.append(SceneObject(obj["patch"], size, obj["y"], obj["x"]))
    return Scene(tuple(out))


def validate_scene(name: str, scene: Scene, patch_ids: Iterable[str], canvas: int) -> None:
    """Unknown patch, size below 1 or above the canvas, an object reaching outside the canvas, the same object
    twice at one place (pixels would show it once): one line naming the object."""
    known = list(patch_ids)
    for obj in scene.objects:
        if obj.patch not in known:
            raise ShiftlensError(f"scene {name!r}: object {obj} names patch {obj.patch!r}, which is not in the patch set: "
                                 f"choose one of {', '.join(known[:12])}{', ...' if len(known) > 12 else ''}")
        if obj.size < 1:
            raise ShiftlensError(f"scene {name!r}: object {obj} has size {obj.size}: give a size of 1 px or more")
        if obj.size > canvas:
            raise ShiftlensError(f"scene {name!r}: object {obj} has size {obj.size}, larger than the {canvas}px "
                                 f"canvas: give a size of at most {canvas}")
        if obj.y < 0 or obj.x < 0 or obj.y + obj.size > canvas or obj.x + obj.size > canvas:
            raise ShiftlensError(f"scene {name!r}: object {obj} reaches outside the {canvas}px canvas: keep 0 <= y, x "
                                 f"<= {canvas - obj.size} for a {obj.size}px object")
    twice = [o for o, n in Counter(scene.objects).items() if n > 1]
    if twice:
        raise ShiftlensError(f"scene {name!r}: object {twice[0]} is in it twice at the same place, which the pixels "
                             "show once: remove the copy (or move it)")


def _counts(terms: list[tuple[int, Scene, str]]) -> tuple[list[SceneObject], Counter[SceneObject]]:
    """Each object's count after the terms, applied left to right, and the objects in first-appearance order;
    removing an object that is not there names it and the operand."""
    counts: Counter[SceneObject] = Counter()
    for coef, scene, label in terms:
        for obj in scene.objects:
            if coef < 0 and counts[obj] < -coef:
                raise ShiftlensError(f"{label} subtracts object {obj}, which the scene so far does not contain: "
                                     "subtract only objects (same patch, size and position) that an earlier operand adds")
            counts[obj] += coef
    order = list(dict.fromkeys(o for _, scene, _ in terms for o in scene.objects))
    return order, counts


def combine(terms: list[tuple[int, Scene, str]]) -> Scene:
    """Pixel-space arithmetic on scenes as multisets: `[(+1, A, 'A'), (-1, B, 'B'), ...]` -> the expected scene.

    Terms are applied left to right; removing an object that is not there names it and the operand. An object the
    multiset holds more than once (`s + s`) is pasted once: copies at one place are one object in the pixels."""
    order, counts = _counts(terms)
    return Scene(tuple(o for o in order if counts[o] > 0))


def multiplicities(terms: list[tuple[int, Scene, str]]) -> dict[SceneObject, int]:
    """How many times the expected scene's multiset holds each of its objects (more than 1: stacked copies)."""
    order, counts = _counts(terms)
    return {o: counts[o] for o in order if counts[o] > 0}


class SceneRenderer:
    """Renders batches of scenes, normalised, as an NCHW channels_last tensor on the device.

    Each object's pixels go where its alpha is set and leave what is under them elsewhere; for one object that is
    the single-patch renderer's block paste, value for value (both normalise the same uint8 pixels)."""

    def __init__(self, patches: Mapping[str, Patch], canvas: int = 224, background=(255, 255, 255),
                 normalisation: Normalisation | None = None, device: torch.device | str = "cpu",
                 keep_aspect: bool = False) -> None:
        self.patches = patches
        self.canvas = canvas
        self.device = torch.device(device)
        self.keep_aspect = keep_aspect
        self.norm = normalisation or Normalisation()
        bg = torch.tensor(list(background), dtype=torch.uint8, device=self.device)
        self.background = self.norm(bg.float() / 255.0)
        self._blocks: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def block(self, patch: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised pixels (p, p, 3), mask (p, p, 1)) of a patch at a size, resized once."""
        key = (patch, size)
        if key not in self._blocks:
            rgba = torch.from_numpy(self.patches[patch].resized(size, self.keep_aspect)).to(self.device)
            self._blocks[key] = (self.norm(rgba[..., :3].float() / 255.0), rgba[..., 3:] > 0)
        return self._blocks[key]

    def render(self, scenes: list[Scene]) -> torch.Tensor:
        out = self.background.expand(len(scenes), self.canvas, self.canvas, 3).clone()  # NHWC
        for i, scene in enumerate(scenes):
            for obj in scene.objects:
                pix, mask = self.block(obj.patch, obj.size)
                region = out[i, obj.y : obj.y + obj.size, obj.x : obj.x + obj.size]
                region.copy_(torch.where(mask, pix, region))
        return out.permute(0, 3, 1, 2)

    def render_uint8(self, scene: Scene, background=(255, 255, 255)) -> np.ndarray:
        """The scene as an (H, W, 3) uint8 image, for figures."""
        img = np.empty((self.canvas, self.canvas, 3), np.uint8)
        img[:] = np.asarray(background, np.uint8)
        for obj in scene.objects:
            rgba = self.patches[obj.patch].resized(obj.size, self.keep_aspect)
            region = img[obj.y : obj.y + obj.size, obj.x : obj.x + obj.size]
            region[:] = np.where(rgba[..., 3:] > 0, rgba[..., :3], region)
        return img
