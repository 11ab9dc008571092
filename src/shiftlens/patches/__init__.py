"""Patch sources: the bundled sample, a folder, or COCO. `load_patches` turns a `--patches` spec into patches."""

from __future__ import annotations

from pathlib import Path

from shiftlens.config import RunConfig
from shiftlens.errors import ShiftlensError
from shiftlens.patches.coco import load_coco
from shiftlens.patches.folder import load_folder
from shiftlens.patches.patch import Patch

SAMPLE_DIR = Path(__file__).parent / "sample"

__all__ = ["Patch", "load_patches", "SAMPLE_DIR"]


def load_patches(cfg: RunConfig) -> list[Patch]:
    spec = cfg.patches
    kind, _, rest = spec.partition(":")
    if kind == "sample":
        patches = load_folder(SAMPLE_DIR, source="sample")
    elif kind == "folder":
        if not rest:
            raise ShiftlensError("--patches folder: needs a folder, e.g. folder:my_patches/")
        patches = load_folder(Path(rest))
    elif kind == "coco":
        ann, sep, images = rest.partition(":")
        if not ann or not sep or not images:
            raise ShiftlensError(
                f"--patches {spec!r} needs both paths: coco:ANNOTATIONS.json:IMAGES_DIR "
                "(e.g. coco:annotations/instances_train2017.json:train2017)"
            )
        patches = load_coco(Path(ann), Path(images), cfg.coco_categories, cfg.per_category,
                            cfg.min_object_size, cfg.square_crop)
    else:
        raise ShiftlensError(f"unknown patch source {spec!r}: use sample, folder:DIR or coco:ANNOTATIONS.json:IMAGES_DIR")
    ids = [p.id for p in patches]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ShiftlensError(f"two patches share the id {dup!r} in {spec}: rename one")
    if cfg.max_patches is not None:
        patches = patches[: cfg.max_patches]
    return patches
