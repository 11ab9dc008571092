"""A decoder's training objects: several patch sources at once, their licences, and an in-memory bank.

`--patches openclipart+sample` names several sources joined by `+`. Each object's key is `SOURCE/ID` (the source's
name: `sample`, `openclipart`, `tuxpaint`, `coco`, `folder:DIRNAME`), so ids of two sources never collide and a
decoder file says where each of its objects came from. `SourceRecord` is what a decoder file keeps of a source: its
spec, how many objects it gave and held out, and its licence from the patches' provenance (a Debian package's name,
version and licence; the bundled sample's LICENCES.md; a folder's or COCO's per-object licences).

`ObjectBank` decodes and resizes every training object once, into one uint8 array (objects x side x side x RGBA)
at the largest training size, and renders scenes from it with a (cheap) downsampling per pasted object: no PNG is
read after the start and the memory does not grow with the number of sizes drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import json

import numpy as np
import torch
import torch.nn.functional as F

from shiftlens.errors import ShiftlensError
from shiftlens.patches import Patch

SAMPLE_LICENCES = "shiftlens/patches/sample/LICENCES.md"
COPYLEFT = ("GPL",)
"""A licence naming one of these makes a decoder trained on it a derivative under the same terms: evaluation
material, never a shipped file."""


def split_sources(spec: str) -> list[str]:
    """`a+b+c` -> ["a", "b", "c"]; an empty item or a source given twice is one line."""
    parts = [p.strip() for p in str(spec).split("+")]
    if not all(parts):
        raise ShiftlensError(f"--patches {spec!r}: an empty source between '+': give SOURCE[+SOURCE...], "
                             "e.g. openclipart+sample")
    names = [source_name(p) for p in parts]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ShiftlensError(f"--patches {spec!r} names the source {twice[0]} twice: give each source once "
                             "(list categories in one item, e.g. openclipart:animals,food)")
    return parts


def source_name(spec: str) -> str:
    """The name of a source in object keys: its kind, a folder's own name for `folder:DIR`."""
    kind, _, rest = str(spec).partition(":")
    if kind == "folder":
        return f"folder:{Path(rest.rstrip('/')).name or rest}"
    return kind


def object_key(patch: Patch, qualified: bool = True) -> str:
    """`SOURCE/ID` (decoder files of format 2), or the bare id (format 1, one source)."""
    return f"{source_name(patch.source)}/{patch.id}" if qualified else patch.id


@dataclass
class Source:
    """One `--patches` item and the patches it gave."""

    spec: str
    patches: list[Patch]
    checked: bool = False
    """Its patches are already the usable ones (read from an object cache): `usable` keeps them all."""
    skipped: int = 0
    """Objects dropped before (by the cache's `usable` check)."""

    @property
    def name(self) -> str:
        return source_name(self.spec)

    def keys(self) -> list[str]:
        return [f"{self.name}/{p.id}" for p in self.patches]

    def usable(self, sizes: tuple[int, int]) -> tuple[list[str], list[Patch]]:
        """(keys, patches) of the objects whose mask survives resizing to the smallest and the largest of `sizes`
        (a drawing of thin lines may vanish): only these are trained on or held out."""
        keys, kept = [], []
        for key, p in zip(self.keys(), self.patches):
            if not self.checked and not survives(p, sizes):
                continue
            keys.append(key)
            kept.append(p)
        return keys, kept


def survives(patch: Patch, sizes: tuple[int, int]) -> bool:
    """Whether the patch's mask survives resizing to both sizes."""
    try:
        for size in sizes:
            patch.resized(size)
    except ShiftlensError:
        return False
    return True


def load_sources(spec: str, per_category: int = 20, min_size: float = 37.5) -> list[Source]:
    """Every source of `spec` (`+`-joined), loaded once; an unknown or missing one is one line naming it."""
    from shiftlens.config import RunConfig
    from shiftlens.patches import load_patches

    if per_category < 1:
        raise ShiftlensError(f"--per-category {per_category}: use 1 or more")
    return [Source(item, load_patches(RunConfig(patches=item, per_category=per_category, min_object_size=min_size)))
            for item in split_sources(spec)]


def as_sources(spec: str, patches: list[Patch] | list[Source]) -> list[Source]:
    """Sources from what a caller handed over: sources as they are; a plain patch list grouped by its patches'
    own source (in the order of `spec`'s items where it names them)."""
    if patches and isinstance(patches[0], Source):
        return list(patches)  # type: ignore[arg-type]
    groups: dict[str, list[Patch]] = {}
    for p in patches:  # type: ignore[union-attr]
        groups.setdefault(p.source, []).append(p)
    items = split_sources(spec) if spec else []
    order = [i for i in items if i in groups] + [g for g in groups if g not in items]
    return [Source(g, groups[g]) for g in order]


def licence_record(source: Source, objects: int, held_out: int, skipped: int = 0) -> dict:
    """What a decoder file keeps of a source (decoder.SourceRecord's fields), from its patches' provenance."""
    licences = sorted({p.licence for p in source.patches})
    first = source.patches[0].provenance if source.patches else {}
    kind = source.spec.partition(":")[0]
    record = {"name": source.name, "spec": source.spec, "objects": objects, "held_out": held_out, "skipped": skipped,
              "licences": licences, "package": None, "version": None, "licence_file": None}
    if "package" in first:  # a Debian package: one licence, the package and its installed version
        record |= {"package": first["package"], "version": first.get("version")}
        record["licence"] = licences[0] if len(licences) == 1 else "; ".join(licences)
    elif kind == "sample":
        record |= {"licence": f"per object, see {SAMPLE_LICENCES}", "licence_file": SAMPLE_LICENCES}
    else:
        record["licence"] = licences[0] if len(licences) == 1 else "per object: " + "; ".join(licences)
        if kind == "folder":
            folder = Path(source.spec.partition(":")[2])
            for name in ("LICENCES.md", "LICENSES.md", "LICENSE", "LICENCE"):
                if (folder / name).is_file():
                    record["licence_file"] = str(folder / name)
                    break
    record["copyleft"] = any(word in lic for lic in licences for word in COPYLEFT)
    return record


class ObjectBank:
    """Training objects decoded and resized once: uint8 (N, side, side, 4) with binary alpha, stretched to a square
    as `Patch.resized` does (the paper's convention). `render` pastes scenes on the white canvas."""

    def __init__(self, patches: dict[str, Patch], side: int, canvas: int) -> None:
        self.keys = list(patches)
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.side = side
        self.canvas = canvas
        arr = np.stack([patches[k].resized(side) for k in self.keys]) if self.keys else np.zeros((0, side, side, 4),
                                                                                                  np.uint8)
        self.pixels = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()  # (N, 4, side, side) uint8

    @property
    def nbytes(self) -> int:
        return self.pixels.numel()

    def block(self, key: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(RGB (3, size, size) in [0, 1], mask (1, size, size) bool) of one object at a size."""
        x = self.pixels[self.index[key]].unsqueeze(0).float() / 255.0
        if size != self.side:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return x[0, :3], x[0, 3:] >= 0.5

    def render(self, scenes) -> torch.Tensor:
        """(N, 3, canvas, canvas) RGB in [0, 1]: each scene's objects pasted in order on white."""
        out = torch.ones(len(scenes), 3, self.canvas, self.canvas)
        for i, scene in enumerate(scenes):
            for obj in scene.objects:
                pix, mask = self.block(obj.patch, obj.size)
                region = out[i, :, obj.y : obj.y + obj.size, obj.x : obj.x + obj.size]
                region.copy_(torch.where(mask, pix, region))
        return out


def check_shippable(records: list[dict], out: Path, shipped_dir: Path) -> None:
    """A decoder trained on a copyleft source (Tux Paint's GPL-2 stamps) is never written into the package."""
    bad = [r for r in records if r.get("copyleft")]
    try:
        inside = out.resolve().is_relative_to(shipped_dir.resolve())
    except OSError:
        inside = False
    if bad and inside:
        raise ShiftlensError(f"--out {out} is a shipped decoder, but source {bad[0]['name']} is {bad[0]['licence']}: "
                             "a decoder trained on it may not ship; use it for held-out evaluation "
                             "(shiftlens inverter evaluate FILE --patches " + bad[0]["spec"] + ") or train elsewhere")


CACHE_VERSION = 1


def cache_path(out: Path) -> Path:
    """The object cache beside a decoder file: its training objects decoded and resized once."""
    return out.with_name(out.name + ".objects.npz")


def load_sources_cached(spec: str, per_category: int, sizes: tuple[int, int], cache: Path | None,
                        log=None, write: bool = True) -> list[Source]:
    """`load_sources`, reading (or writing) `cache`: one uint8 array of every usable object at the largest
    training size, with ids, categories, licences and provenance, so a resumed run reads no PNG. A cache made for
    another spec, `per_category` or sizes is rebuilt (and written only with `write`)."""
    log = log or (lambda s: None)
    ident = {"version": CACHE_VERSION, "spec": spec, "per_category": per_category, "sizes": list(sizes)}
    if cache is not None and cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta["ident"] == ident:
                    pixels = data["pixels"]
                    sources, i = [], 0
                    for src in meta["sources"]:
                        patches = []
                        for o in src["objects"]:
                            patches.append(Patch(id=o["id"], category=o["category"], rgba=pixels[i], source=o["source"],
                                                 licence=o["licence"], provenance=o["provenance"]))
                            i += 1
                        sources.append(Source(src["spec"], patches, checked=True, skipped=src["skipped"]))
                    log(f"objects from {cache} ({i} objects)")
                    return sources
        except Exception as exc:  # a damaged or foreign cache is rebuilt, never trusted
            log(f"object cache {cache} unreadable ({type(exc).__name__}): rebuilt")
    sources = []
    for src in load_sources(spec, per_category):
        keys, kept = src.usable(sizes)
        side = max(sizes)
        sources.append(Source(src.spec, [Patch(id=p.id, category=p.category, rgba=p.resized(side), source=p.source,
                                               licence=p.licence, provenance=p.provenance) for p in kept],
                              checked=True, skipped=len(src.patches) - len(kept)))
    if cache is not None and write:
        from shiftlens.store import atomic_path

        meta = {"ident": ident, "sources": [
            {"spec": s.spec, "skipped": s.skipped,
             "objects": [{"id": p.id, "category": p.category, "source": p.source, "licence": p.licence,
                          "provenance": p.provenance} for p in s.patches]} for s in sources]}
        pixels = np.stack([p.rgba for s in sources for p in s.patches])
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, pixels=pixels, meta=np.array(json.dumps(meta)))
        log(f"objects cached in {cache} ({pixels.nbytes / 1e6:.0f} MB)")
    return sources
