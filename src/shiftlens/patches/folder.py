"""Patches from a folder: RGBA PNGs, or image + mask pairs (`name.jpg` with `name_mask.png`).

The category is the sub-folder's name when files sit in sub-folders, else the file name up to its first
underscore (`dog_03.png` is a dog).
"""

from __future__ import annotations

import json
from pathlib import Path

from shiftlens.errors import ShiftlensError
from shiftlens.patches.patch import Patch, read_image, rgba_from

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


def load_folder(root: Path, licence: str = "unknown", source: str | None = None) -> list[Patch]:
    """Read every patch under `root`; a `manifest.json` there may add category, licence and provenance."""
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
    patches = []
    for path in files:
        name = path.relative_to(root).with_suffix("").as_posix().replace("/", "_")
        mask_path = _mask_for(path)
        if mask_path is not None:
            rgb = read_image(path, "RGB")
            mask = read_image(mask_path, "L")
            rgba = rgba_from(rgb, mask, f"patch {path}")
        else:
            raw = read_image(path)
            if raw.ndim != 3 or raw.shape[2] not in (2, 4):
                raise ShiftlensError(
                    f"patch {path} has no alpha channel and no mask: save it as an RGBA PNG or add {path.stem}_mask.png"
                )
            rgba_full = read_image(path, "RGBA")
            rgba = rgba_from(rgba_full[..., :3], rgba_full[..., 3] >= 128, f"patch {path}")
        entry = manifest.get(path.relative_to(root).as_posix(), {})
        patches.append(
            Patch(
                id=entry.get("id", name),
                category=entry.get("category", _category(path, root)),
                rgba=rgba,
                source=source or f"folder:{root}",
                licence=entry.get("licence", licence),
                provenance={k: v for k, v in entry.items() if k not in ("id", "category", "licence")} | {"file": str(path)},
            )
        )
    return patches
