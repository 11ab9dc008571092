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


# --- ids, formats and limits (issue 16) ----------------------------------------------------------------------


def save_blob(path: Path, size: int = 40, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(blob_rgba(size, seed), "RGBA").save(path)


def test_patch_ids_are_the_relative_paths_so_they_never_collide(tmp_path):
    names = ["cat 1.png", "cat_1.png", "a/b.png", "a_b.png", "猫.png", "犬.png"]
    for i, name in enumerate(names):
        save_blob(tmp_path / name, 40 + 2 * i, seed=i)
    patches = load_patches(cfg(f"folder:{tmp_path}"))
    assert sorted(p.id for p in patches) == sorted(["cat 1", "cat_1", "a/b", "a_b", "猫", "犬"])
    assert len({p.digest() for p in patches}) == len(names)  # each id holds its own file's pixels
    assert {p.id: p.category for p in patches}["a/b"] == "a"


def test_bundled_sample_keeps_its_manifest_ids():
    manifest = json.loads((SAMPLE_DIR / "manifest.json").read_text())
    ids = [p.id for p in load_patches(cfg("sample"))]
    assert ids == sorted(e["id"] for e in manifest["patches"]) and ids[0] == "cat_01"


def test_two_files_with_one_id_are_refused_naming_both(tmp_path):
    save_blob(tmp_path / "dog.png")
    save_blob(tmp_path / "dog.webp", seed=1)
    with pytest.raises(ShiftlensError, match="'dog'") as err:
        load_patches(cfg(f"folder:{tmp_path}"))
    assert str(tmp_path / "dog.png") in str(err.value) and str(tmp_path / "dog.webp") in str(err.value)
    other = tmp_path / "m"
    save_blob(other / "one.png")
    save_blob(other / "two.png", seed=1)
    (other / "manifest.json").write_text(json.dumps({"patches": [{"file": "one.png", "id": "x"}, {"file": "two.png", "id": "x"}]}))
    with pytest.raises(ShiftlensError, match="'x'") as err:
        load_patches(cfg(f"folder:{other}"))
    assert str(other / "one.png") in str(err.value) and str(other / "two.png") in str(err.value)


def test_digest_follows_the_pixels_and_the_shape():
    rgba = blob_rgba(16)
    a = Patch("a", "thing", rgba, "test")
    assert a.digest() == Patch("b", "other", rgba.copy(), "elsewhere").digest()
    assert len(a.digest()) == 16 and int(a.digest(), 16) >= 0
    changed = rgba.copy()
    changed[8, 8, 0] ^= 1
    assert Patch("a", "thing", changed, "test").digest() != a.digest()
    assert Patch("a", "thing", rgba.reshape(8, 32, 4), "test").digest() != a.digest()


def test_transparent_palette_and_grey_alpha_pngs_are_accepted(tmp_path):
    rgba = blob_rgba(40)
    inside = rgba[..., 3] > 0
    pal = Image.fromarray(rgba[..., :3]).quantize(15)
    index = np.asarray(pal).copy()
    index[~inside] = 15
    single = Image.fromarray(index, "P")
    colours = pal.getpalette()[: 15 * 3]
    single.putpalette(colours + [0, 0, 0])  # entry 15: the background
    single.save(tmp_path / "pal_1.png", transparency=15)  # one transparent palette entry (tRNS)
    single.save(tmp_path / "pal_2.png", transparency=bytes([255] * 15 + [0]))  # an alpha per palette entry
    Image.fromarray(np.stack([rgba[..., 0], rgba[..., 3]], axis=-1), "LA").save(tmp_path / "grey_1.png")
    grey = np.where(inside, np.maximum(rgba[..., 0], 1), 0).astype(np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "grey_2.png", transparency=0)  # grey colour key
    patches = {p.id: p for p in load_patches(cfg(f"folder:{tmp_path}"))}
    assert set(patches) == {"pal_1", "pal_2", "grey_1", "grey_2"}
    ys, xs = np.nonzero(inside)
    expected = inside[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    for p in patches.values():
        np.testing.assert_array_equal(p.rgba[..., 3] > 0, expected)


def test_an_image_over_pillows_size_limit_is_refused_with_its_size(tmp_path, monkeypatch):
    save_blob(tmp_path / "big.png", 40)  # 1,600 pixels
    for limit in (1000, 500):  # Pillow warns above its limit and raises above twice it: both are refused
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        with pytest.raises(ShiftlensError, match="1,600 pixels") as err:
            load_patches(cfg(f"folder:{tmp_path}"))
        assert str(tmp_path / "big.png") in str(err.value) and "downscale" in str(err.value)


def test_max_patches_reads_only_the_first_files(tmp_path):
    for i in range(3):
        save_blob(tmp_path / f"ok_{i}.png", seed=i)
    (tmp_path / "zz_broken.png").write_bytes(b"not a png")
    assert [p.id for p in load_patches(cfg(f"folder:{tmp_path}", max_patches=2))] == ["ok_0", "ok_1"]
    assert len(load_patches(cfg(f"folder:{tmp_path}", max_patches=3))) == 3
    (tmp_path / "aa_broken.png").write_bytes(b"not a png")  # within the first two: still a clear error
    with pytest.raises(ShiftlensError, match="aa_broken.png cannot be read"):
        load_patches(cfg(f"folder:{tmp_path}", max_patches=2))


def test_coco_max_patches_reads_only_the_selected_images(tmp_path):
    ann, images = make_coco(tmp_path)
    (images / "000000000009.jpg").write_bytes(b"garbage")  # the third dog's image
    spec = f"coco:{ann}:{images}"
    patches = load_patches(cfg(spec, coco_categories=["dog", "cat"], per_category=3, max_patches=2))
    assert [p.provenance["image_id"] for p in patches] == [5, 7]
    with pytest.raises(ShiftlensError, match="000000000009.jpg cannot be read"):
        load_patches(cfg(spec, coco_categories=["dog", "cat"], per_category=3, max_patches=3))


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d.pop("categories"), "no 'categories' list"),
        (lambda d: d.pop("images"), "no 'images' list"),
        (lambda d: d["annotations"][0].pop("segmentation"), "annotation 101 has no segmentation"),
        (lambda d: d["annotations"][0].update(segmentation=[]), "annotation 101 has no segmentation"),
        (lambda d: d["annotations"][0].update(segmentation=[[]]), "annotation 101 has a polygon with fewer than 3 points"),
        (lambda d: d["annotations"][0].update(segmentation={"counts": "x"}), "annotation 101 has an RLE"),
        (lambda d: d["annotations"][0].pop("bbox"), "annotation 101 has no valid bbox"),
    ],
)
def test_coco_json_with_missing_parts_is_one_clear_error(tmp_path, mutate, expected):
    ann, images = make_coco(tmp_path)
    data = json.loads(ann.read_text())
    mutate(data)
    ann.write_text(json.dumps(data))
    with pytest.raises(ShiftlensError, match=expected) as err:
        load_coco(ann, images, ["dog"])
    assert str(ann) in str(err.value)
