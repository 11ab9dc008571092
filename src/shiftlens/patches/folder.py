"""Patches from a folder: RGBA PNGs, or image + mask pairs (`name.jpg` with `name_mask.png`).

The category is the sub-folder's name when files sit in sub-folders, else the file name up to its first
underscore (`dog_03.png` is a dog). A patch's id is its path relative to the folder without the suffix (`dog_03`,
`cats/tabby 1`), or the `id` its manifest entry gives: the original name, which the tables and the site show.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from shiftlens.errors import ShiftlensError
from shiftlens.patches.patch import Patch, alpha_cutout, read_image, read_mask, read_rgba, rgba_from

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
MASK_TAGS = ("_mask", ".mask", "-mask")


def _is_mask(path: Path) -> bool:
    return any(path.stem.endswith(tag) for tag in MASK_TAGS)


def _mask_for(path: Path) -> Path | None:
    for tag in MASK_TAGS:
        for suffix in (".png", path.suffix):
            candidate = path.with_name(path.stem + tag + suffix)
            if candidate.is_file():
                return candidate
    return None


def _category(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    if len(rel.parts) > 1:
        return rel.parts[0]
    return path.stem.split("_")[0] if "_" in path.stem else "object"


def _patch_id(rel: str, entry: dict, manifest_path: Path) -> str:
    pid = entry.get("id", Path(rel).with_suffix("").as_posix())
    if not isinstance(pid, str) or not pid.strip():
        raise ShiftlensError(f"{manifest_path}: the entry for {rel} has id {pid!r}: give a non-empty string")
    return pid


def _read_patch(path: Path) -> np.ndarray:
    """RGBA pixels cropped to the mask, from a file with transparency or from an image + mask pair."""
    mask_path = _mask_for(path)
    if mask_path is not None:
        return rgba_from(read_image(path, "RGB"), read_mask(mask_path), f"patch {path}")
    rgba = read_rgba(path)
    if rgba is None:
        raise ShiftlensError(
            f"patch {path} has no alpha channel and no mask: save it as an RGBA PNG or add {path.stem}_mask.png"
        )
    return alpha_cutout(rgba, f"patch {path}")


def load_folder(root: Path, licence: str = "unknown", source: str | None = None, limit: int | None = None) -> list[Patch]:
    """Read the patches under `root` in sorted order; a `manifest.json` there may add id, category, licence and
    provenance.

    Every file's id is checked before any is read; with `limit`, only the first `limit` files are read, so a bad
    file further on does not stop a run that would not use it.
    """
    if not root.is_dir():
        raise ShiftlensError(f"patch folder {root} does not exist: give folder:DIR with a folder of RGBA PNGs or image + mask pairs")
    manifest: dict[str, dict] = {}
    manifest_path = root / "manifest.json"
    if manifest_path.is_file():
        try:
            entries = json.loads(manifest_path.read_text())["patches"]
            manifest = {e["file"]: e for e in entries}
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ShiftlensError(f"{manifest_path} is malformed ({exc}): fix it or remove it") from None
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not _is_mask(p))
    if not files:
        raise ShiftlensError(f"patch folder {root} holds no images: add RGBA PNGs or image + mask pairs (name.jpg + name_mask.png)")
    named: dict[str, Path] = {}
    for path in files:
        rel = path.relative_to(root).as_posix()
        pid = _patch_id(rel, manifest.get(rel, {}), manifest_path)
        if pid in named:
            raise ShiftlensError(
                f"patches {named[pid]} and {path} would both get the id {pid!r}: rename one of them "
                f"(or give each its own \"id\" in {manifest_path.name})"
            )
        named[pid] = path
    patches = []
    for pid, path in named.items():
        if limit is not None and len(patches) >= limit:
            break
        entry = manifest.get(path.relative_to(root).as_posix(), {})
        patches.append(
            Patch(
                id=pid,
                category=entry.get("category", _category(path, root)),
                rgba=_read_patch(path),
                source=source or f"folder:{root}",
                licence=entry.get("licence", licence),
                provenance={k: v for k, v in entry.items() if k not in ("id", "category", "licence")} | {"file": str(path)},
            )
        )
    return patches
