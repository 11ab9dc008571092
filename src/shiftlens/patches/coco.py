"""COCO object patches chosen by the paper's selection rule (docs/protocol.md, "Data set").

Per category: image ids containing it, ascending; the first annotation of that category in each image (crowd
annotations included); skip objects whose bbox width and height are both below the minimum; stop at the count.
The default crops the true bbox; `square_crop` reproduces the original scripts' `image[y:y+h, x:x+h]`.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from shiftlens.errors import ShiftlensError
from shiftlens.patches.patch import Patch, read_image


def _open_coco(annotations: Path):
    from pycocotools.coco import COCO

    if not annotations.is_file():
        raise ShiftlensError(f"COCO annotations {annotations} do not exist: give coco:ANNOTATIONS.json:IMAGES_DIR")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(annotations))
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        raise ShiftlensError(f"COCO annotations {annotations} cannot be read ({exc}): give a COCO instances JSON file") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.dataset.get(key), list):
            raise ShiftlensError(
                f"COCO annotations {annotations} have no {key!r} list: give a COCO instances JSON file "
                "(e.g. annotations/instances_train2017.json)"
            )
    return coco


def _segmentation_problem(seg) -> str | None:
    """What keeps `seg` from being rasterised (None if it is polygons of 3+ points or an RLE)."""
    if not seg:
        return "has no segmentation"
    if isinstance(seg, list):
        if not all(isinstance(poly, list) and len(poly) >= 6 and len(poly) % 2 == 0 for poly in seg):
            return "has a polygon with fewer than 3 points"
    elif isinstance(seg, dict):
        if "counts" not in seg or "size" not in seg:
            return "has an RLE segmentation without counts and size"
    else:
        return "has a segmentation that is neither polygons nor an RLE"
    return None


def select(coco, categories: list[str], per_category: int, min_size: float, source: str = "COCO annotations") -> list[tuple[str, dict]]:
    """The (category, annotation) pairs of the paper's selection rule, in category order."""
    chosen = []
    for name in categories:
        cat_ids = coco.getCatIds(catNms=[name])
        if not cat_ids:
            raise ShiftlensError(f"COCO category {name!r} is not in the annotations: check coco_categories")
        cat_id = cat_ids[0]
        count = 0
        for img_id in sorted(coco.getImgIds(catIds=[cat_id])):
            ann_ids = coco.getAnnIds(imgIds=[img_id], catIds=[cat_id], iscrowd=None)
            if not ann_ids:
                continue
            ann = coco.loadAnns(ann_ids[:1])[0]
            bbox = ann.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
                raise ShiftlensError(f"{source}: annotation {ann.get('id')} has no valid bbox ([x, y, w, h]): fix or remove it")
            _, _, w, h = bbox
            if w < min_size and h < min_size:
                continue
            chosen.append((name, ann))
            count += 1
            if count == per_category:
                break
    return chosen


def load_coco(
    annotations: Path,
    images: Path,
    categories: list[str],
    per_category: int = 20,
    min_size: float = 37.5,
    square_crop: bool = False,
    limit: int | None = None,
) -> list[Patch]:
    """The selected objects as patches; with `limit`, only the first `limit` selected images are read."""
    if not images.is_dir():
        raise ShiftlensError(f"COCO image folder {images} does not exist: give coco:ANNOTATIONS.json:IMAGES_DIR")
    coco = _open_coco(annotations)
    source = f"COCO annotations {annotations}"
    licences = {lic.get("id"): lic.get("name", "") for lic in coco.dataset.get("licenses", [])}
    patches = []
    for name, ann in select(coco, categories, per_category, min_size, source)[:limit]:
        problem = _segmentation_problem(ann.get("segmentation"))
        info = coco.imgs.get(ann["image_id"], {})
        if problem is None and not info.get("file_name"):
            problem = f"refers to image {ann['image_id']}, which has no entry with a file_name in 'images'"
        if problem is not None:
            raise ShiftlensError(f"{source}: annotation {ann['id']} {problem}: fix or remove it")
        rgb = read_image(images / info["file_name"], "RGB")
        try:
            mask = coco.annToMask(ann)
        except Exception as exc:  # pycocotools raises bare Exceptions for what it cannot rasterise
            raise ShiftlensError(f"{source}: annotation {ann['id']}'s segmentation cannot be rasterised ({exc}): fix or remove it") from None
        x, y, w, h = (int(v) for v in ann["bbox"])
        crop_w = h if square_crop else w
        rgba = np.zeros((h, crop_w, 4), np.uint8)
        region = rgb[y : y + h, x : x + crop_w]
        rgba[: region.shape[0], : region.shape[1], :3] = region
        rgba[: region.shape[0], : region.shape[1], 3] = np.where(mask[y : y + h, x : x + crop_w] > 0, 255, 0)
        patches.append(
            Patch(
                id=f"{name}_{ann['id']}",
                category=name,
                rgba=rgba,
                source=f"coco:{annotations.name}",
                licence=licences.get(info.get("license"), "COCO terms of use"),
                provenance={"image_id": ann["image_id"], "annotation_id": ann["id"], "file": info["file_name"],
                            "bbox": ann["bbox"], "square_crop": square_crop},
            )
        )
    if not patches:
        raise ShiftlensError(f"no COCO objects match the selection rule in {annotations}: check coco_categories and min_object_size")
    return patches
