"""Which ImageNet-1k classes count as a patch's category, for the `class` analysis.

A category maps to a set of class indices (dog -> the 118 dog breeds, 151-268) and the analysis sums the softmax
probability over the set. A patch's own `imagenet_classes` (a manifest entry: indices, class names or categories of the table) wins over
the category table. The table covers the paper's ten COCO categories and other COCO categories with clear
ImageNet counterparts; sets hold whole objects of the category, not parts (no 'grille' for car).
"""

from __future__ import annotations

from functools import cache

from shiftlens.errors import ShiftlensError


def _r(first: int, last: int) -> list[int]:
    return list(range(first, last + 1))


CATEGORY_CLASSES: dict[str, list[int]] = {
    # the paper's ten COCO categories
    "car": [407, 436, 468, 511, 609, 627, 656, 661, 717, 734, 751, 817],  # ambulance ... police van, racer, sports car
    "airplane": [404, 895, 908],  # airliner, warplane, wing
    "boat": [403, 472, 484, 510, 554, 576, 625, 628, 724, 780, 814, 833, 871, 914],  # aircraft carrier ... yawl
    "dog": _r(151, 268),  # the 118 dog breeds
    "bird": _r(7, 24) + _r(80, 100) + _r(127, 146),  # the 59 bird species
    "zebra": [340],
    "orange": [950],
    "banana": [954],
    "clock": [409, 530, 892],  # analog, digital, wall clock
    "laptop": [620, 681],  # laptop, notebook
    # other COCO categories with clear ImageNet counterparts
    "cat": _r(281, 285),  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    "bus": [654, 779, 874],  # minibus, school bus, trolleybus
    "truck": [555, 569, 675, 717, 867],  # fire engine, garbage truck, moving van, pickup, trailer truck
    "motorcycle": [665, 670],  # moped, motor scooter
    "bicycle": [444, 671],  # bicycle-built-for-two, mountain bike
    "train": [466, 547, 565, 820],  # bullet train, electric locomotive, freight car, steam locomotive
    "elephant": [101, 385, 386],  # tusker, Indian, African elephant
    "bear": _r(294, 297),  # brown, black, ice, sloth bear
    "teddy bear": [850],
    "traffic light": [920],
    "umbrella": [879],
    "broccoli": [937],
    "pizza": [963],
    "keyboard": [508],
    "mouse": [673],
    "tv": [851],
    "cup": [968, 504],  # cup, coffee mug
    "bench": [703],  # park bench
    "toaster": [859],
}
ALIASES = {"aeroplane": "airplane", "plane": "airplane", "ship": "boat", "motorbike": "motorcycle",
           "television": "tv", "puppy": "dog", "kitten": "cat"}


@cache
def class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in index order (from torchvision's weights metadata, no download)."""
    from torchvision.models import AlexNet_Weights

    return tuple(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])


def _from_manifest(value: object, where: str) -> list[int]:
    names = {n.lower(): i for i, n in enumerate(class_names())}
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        if isinstance(item, int) and 0 <= item < 1000:
            out.append(item)
        elif isinstance(item, str) and item.strip().lower() in names:
            out.append(names[item.strip().lower()])
        elif isinstance(item, str) and ALIASES.get(key := item.strip().lower(), key) in CATEGORY_CLASSES:
            out.extend(CATEGORY_CLASSES[ALIASES.get(key, key)])  # a category of the table: `bird` = its 59 species
        else:
            raise ShiftlensError(
                f"{where}: imagenet_classes entry {item!r} is neither an index 0..999, an ImageNet class name nor a "
                "category of shiftlens.models.imagenet_classes: fix the manifest"
            )
    return sorted(set(out))


def class_indices(category: str, provenance: dict | None = None, where: str = "patch") -> list[int] | None:
    """The ImageNet indices for a patch: its manifest's `imagenet_classes`, else its category's set, else None."""
    if provenance and provenance.get("imagenet_classes") is not None:
        return _from_manifest(provenance["imagenet_classes"], where)
    key = category.strip().lower().replace("_", " ")
    key = ALIASES.get(key, key)
    return list(CATEGORY_CLASSES[key]) if key in CATEGORY_CLASSES else None


def require_class_indices(category: str, provenance: dict | None, patch_id: str) -> list[int]:
    """As `class_indices`, but a patch with no mapping is an error that says how to give one."""
    indices = class_indices(category, provenance, f"patch {patch_id}")
    if not indices:
        raise ShiftlensError(
            f"patch {patch_id} (category {category!r}) has no ImageNet class mapping for the class analysis: "
            f"add \"imagenet_classes\": [indices or names] to its manifest entry (docs/patches.md), or drop class "
            "from --analyses"
        )
    return indices
