"""Patch sources: the bundled sample, a folder, COCO, or a Debian clip-art package (tuxpaint, openclipart). `load_patches` turns a `--patches` spec into patches."""

from __future__ import annotations

from pathlib import Path

from shiftlens.config import RunConfig
from shiftlens.errors import ShiftlensError
from shiftlens.patches.coco import load_coco
from shiftlens.patches.debian import PACKAGES, load_package
from shiftlens.patches.folder import load_folder
from shiftlens.patches.patch import Patch

SAMPLE_DIR = Path(__file__).parent / "sample"

__all__ = ["Patch", "load_patches", "SAMPLE_DIR"]


def _origin(patch: Patch) -> str:
    """Where a patch comes from, for messages: its file, and its annotation for COCO."""
    where = str(patch.provenance.get("file", patch.source))
    if "annotation_id" in patch.provenance:
        where += f" (annotation {patch.provenance['annotation_id']})"
    return where


def load_patches(cfg: RunConfig) -> list[Patch]:
    """The patches of `cfg.patches`, in their source's order; with `max_patches`, only the first N are read."""
    spec = cfg.patches
    limit = cfg.max_patches
    kind, _, rest = spec.partition(":")
    if kind == "sample":
        patches = load_folder(SAMPLE_DIR, source="sample", limit=limit)
    elif kind == "folder":
        if not rest:
            raise ShiftlensError("--patches folder: needs a folder, e.g. folder:my_patches/")
        patches = load_folder(Path(rest), limit=limit)
    elif kind == "coco":
        ann, sep, images = rest.partition(":")
        if not ann or not sep or not images:
            raise ShiftlensError(
                f"--patches {spec!r} needs both paths: coco:ANNOTATIONS.json:IMAGES_DIR "
                "(e.g. coco:annotations/instances_train2017.json:train2017)"
            )
        patches = load_coco(Path(ann), Path(images), cfg.coco_categories, cfg.per_category,
                            cfg.min_object_size, cfg.square_crop, limit=limit)
    elif kind in PACKAGES:
        patches = load_package(spec, cfg.per_category, cfg.min_object_size, limit=limit)
    else:
        raise ShiftlensError(f"unknown patch source {spec!r}: use sample, folder:DIR, coco:ANNOTATIONS.json:IMAGES_DIR, "
                             "tuxpaint[:CATEGORY,...] or openclipart[:CATEGORY,...]")
    seen: dict[str, Patch] = {}
    for p in patches:
        if p.id in seen:
            raise ShiftlensError(f"{_origin(seen[p.id])} and {_origin(p)} share the id {p.id!r} in {spec}: rename one of them")
        seen[p.id] = p
    return patches[:limit]
