import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import blob_rgba
from shiftlens.config import RunConfig
from shiftlens.errors import ShiftlensError
from shiftlens.patches import SAMPLE_DIR, Patch, load_patches
from shiftlens.patches.coco import load_coco


def cfg(spec: str, **kw) -> RunConfig:
    return RunConfig(patches=spec, **kw)


def test_folder_of_rgba_pngs_and_image_mask_pairs(tmp_path):
    Image.fromarray(blob_rgba(30), "RGBA").save(tmp_path / "dog_01.png")
    rgb = np.full((20, 24, 3), 90, np.uint8)
    mask = np.zeros((20, 24), np.uint8)
    mask[5:15, 3:20] = 255
    mask[5:8, 3:6] = 0
    Image.fromarray(rgb).save(tmp_path / "cup_02.jpg")
    Image.fromarray(mask).save(tmp_path / "cup_02_mask.png")
    patches = {p.id: p for p in load_patches(cfg(f"folder:{tmp_path}"))}
    assert set(patches) == {"dog_01", "cup_02"}
    assert patches["dog_01"].category == "dog" and patches["cup_02"].category == "cup"
    cup = patches["cup_02"].rgba
    assert cup.shape == (10, 17, 4)  # cropped to the mask
    assert set(np.unique(cup[..., 3])) == {0, 255} and cup[0, 0, 3] == 0


def test_resize_is_square_with_binary_alpha_or_keeps_aspect(tmp_path):
    rgba = np.zeros((20, 40, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[2:18, 2:38, 3] = 255
    p = Patch("x", "thing", rgba, "test")
    sq = p.resized(75)
    assert sq.shape == (75, 75, 4) and set(np.unique(sq[..., 3])) <= {0, 255}
    assert sq[37, 37, 3] == 255 and sq[37, 0, 3] == 0
    ka = p.resized(75, keep_aspect=True)
    assert ka.shape == (75, 75, 4)
    assert ka[5, 37, 3] == 0 and ka[37, 37, 3] == 255  # padded above and below: the object keeps its 2:1 shape


@pytest.mark.parametrize(
    "setup, expected",
    [
        (lambda d: None, "holds no images"),
        (lambda d: Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / "a.png"), "no alpha channel and no mask"),
        (lambda d: (d / "b.png").write_bytes(b"not a png at all"), "cannot be read"),
        (lambda d: Image.fromarray(np.zeros((8, 8, 4), np.uint8), "RGBA").save(d / "c.png"), "mask is empty"),
    ],
)
def test_bad_patch_folders_give_one_clear_error(tmp_path, setup, expected):
    d = tmp_path / "p"
    d.mkdir()
    setup(d)
    with pytest.raises(ShiftlensError, match=expected) as err:
        load_patches(cfg(f"folder:{d}"))
    assert str(d) in str(err.value)


def test_missing_folder_and_unknown_source():
    with pytest.raises(ShiftlensError, match="does not exist"):
        load_patches(cfg("folder:/nonexistent/dir"))
    with pytest.raises(ShiftlensError, match="unknown patch source"):
        load_patches(cfg("flickr:cats"))
    with pytest.raises(ShiftlensError, match="needs both paths"):
        load_patches(cfg("coco:only.json"))


def test_bundled_sample_is_real_objects_with_masks_and_licences():
    manifest = json.loads((SAMPLE_DIR / "manifest.json").read_text())
    patches = load_patches(cfg("sample"))
    assert len(patches) >= 8 and len({p.category for p in patches}) >= 4
    by_file = {e["file"]: e for e in manifest["patches"]}
    for p in patches:
        entry = by_file[Path(p.provenance["file"]).name]
        assert entry["licence"] and entry["licence"].lower() != "unknown"
        alpha = p.rgba[..., 3] > 0
        fill = alpha.mean()
        assert 0.05 < fill < 0.97, f"{p.id}: mask fills {fill:.0%} of its box (a rectangle is not a segmentation)"
        rows_full = (alpha.mean(axis=1) > 0.999).mean()
        assert rows_full < 0.9, f"{p.id}: almost every row is fully opaque: that is a box, not an object outline"


# --- COCO ---------------------------------------------------------------------------------------------------


def make_coco(root: Path) -> tuple[Path, Path]:
    """A tiny COCO instances file + images: the selection rule must pick, skip and order as the protocol says."""
    images_dir = root / "images"
    images_dir.mkdir(parents=True)
    images, anns = [], []
    rng = np.random.default_rng(0)
    for img_id in (5, 2, 9, 7):
        Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(images_dir / f"{img_id:012d}.jpg")
        images.append({"id": img_id, "file_name": f"{img_id:012d}.jpg", "width": 160, "height": 120, "license": 1})

    def poly(x, y, w, h):
        return [[x, y, x + w, y, x + w, y + h * 0.6, x + w * 0.5, y + h, x, y + h]]

    aid = 100
    for img_id, cat, (x, y, w, h), crowd in [
        (5, 1, (10, 10, 60, 40), 0),   # dog in image 5
        (2, 1, (5, 5, 20, 30), 0),     # image 2: first dog too small (both < 37.5) -> image 2 skipped
        (2, 1, (50, 20, 80, 70), 0),   # (second dog of image 2 is never looked at: only the first annotation)
        (9, 1, (20, 30, 50, 80), 1),   # crowd annotations are not excluded
        (7, 2, (30, 20, 90, 60), 0),   # a cat
        (7, 1, (0, 0, 40, 20), 0),     # dog in image 7, w >= 37.5 so kept
    ]:
        aid += 1
        anns.append({"id": aid, "image_id": img_id, "category_id": cat, "bbox": [x, y, w, h], "area": w * h,
                     "iscrowd": crowd, "segmentation": poly(x, y, w, h)})
    data = {"images": images, "annotations": anns, "licenses": [{"id": 1, "name": "CC BY 2.0", "url": ""}],
            "categories": [{"id": 1, "name": "dog", "supercategory": "animal"}, {"id": 2, "name": "cat", "supercategory": "animal"}]}
    ann_path = root / "instances.json"
    ann_path.write_text(json.dumps(data))
    return ann_path, images_dir


def test_coco_selection_rule_and_crops(tmp_path):
    ann, images = make_coco(tmp_path)
    patches = load_coco(ann, images, ["dog", "cat"], per_category=3, min_size=37.5)
    # dogs: images sorted ascending 2 (first ann too small -> skipped), 5, 7, 9 -> stop after 3 accepted
    assert [p.provenance["image_id"] for p in patches if p.category == "dog"] == [5, 7, 9]
    assert [p.category for p in patches] == ["dog", "dog", "dog", "cat"]
    dog5 = patches[0]
    assert dog5.rgba.shape[:2] == (40, 60)  # the true bbox, w x h = 60 x 40
    assert dog5.licence == "CC BY 2.0"
    alpha = dog5.rgba[..., 3]
    assert alpha[0, 0] == 255 and alpha[-1, 0] == 255 and alpha[-1, -1] == 0  # the polygon's cut corner is transparent
    square = load_coco(ann, images, ["dog"], per_category=1, square_crop=True)[0]
    assert square.rgba.shape[:2] == (40, 40)  # the original scripts' image[y:y+h, x:x+h]
    per1 = load_coco(ann, images, ["dog", "cat"], per_category=1)
    assert [p.provenance["image_id"] for p in per1] == [5, 7]


def test_coco_bad_inputs(tmp_path):
    ann, images = make_coco(tmp_path)
    with pytest.raises(ShiftlensError, match="not in the annotations"):
        load_coco(ann, images, ["zebra"])
    with pytest.raises(ShiftlensError, match="do not exist"):
        load_coco(tmp_path / "missing.json", images, ["dog"])
    with pytest.raises(ShiftlensError, match="image folder"):
        load_coco(ann, tmp_path / "nope", ["dog"])
    (images / "000000000005.jpg").write_bytes(b"garbage")
    with pytest.raises(ShiftlensError, match="000000000005.jpg cannot be read"):
        load_coco(ann, images, ["dog"])
