"""The tuxpaint / openclipart patch sources: the rules on a synthetic tree of the packages' layout, every bad input,
and the real packages where apt installed them (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from shiftlens.config import PRESETS, RunConfig, load
from shiftlens.errors import ShiftlensError
from shiftlens.patches import load_patches
from shiftlens.patches.debian import PACKAGES, parse_spec, survey

from conftest import blob_rgba

TUXPAINT = PACKAGES["tuxpaint"].default_root
OPENCLIPART = PACKAGES["openclipart"].default_root


def photo(size: int = 80, seed: int = 0) -> np.ndarray:
    """A photograph-like cut-out: noise colours (thousands of them) inside an irregular mask."""
    rgba = blob_rgba(size, seed)
    rgba[..., :3] = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return rgba


def save(path: Path, arr: np.ndarray, mode: str = "RGBA") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode).save(path)
    return path


@pytest.fixture
def stamps(tmp_path: Path, monkeypatch) -> Path:
    """A tree with the layout of /usr/share/tuxpaint/stamps: one file for each rule."""
    root = tmp_path / "stamps"
    birds = root / "animals" / "birds"
    save(birds / "crow.png", photo(80, 1))
    (birds / "crow.txt").write_text("A crow.\nfr.utf8=Une corneille.\n")
    (birds / "crow.ogg").write_bytes(b"OggS")  # the package's sounds and descriptions are no patches
    save(birds / "notes.jpg", photo(80, 2)[..., :3], "RGB")
    save(birds / "crow_mirror.png", photo(80, 1)[:, ::-1].copy())
    save(birds / "cartoon" / "tweety.png", photo(80, 3))
    save(birds / "thumbs" / "crow.png", photo(80, 1))
    save(birds / "owl_thumb.png", photo(80, 4))
    save(birds / "icon.png", photo(24, 5))
    save(birds / "opaque.png", photo(80, 6)[..., :3], "RGB")
    full = photo(80, 7)
    full[..., 3] = 255
    save(birds / "no_alpha_used.png", full)
    speck = np.zeros((200, 200, 4), np.uint8)
    speck[100:110, 100:110] = photo(10, 8)
    speck[100:110, 100:110, 3] = 255
    save(birds / "speck.png", speck)
    dots = np.zeros((120, 120, 4), np.uint8)
    dots[..., :3] = np.random.default_rng(9).integers(0, 256, (120, 120, 3), dtype=np.uint8)
    dots[::6, ::6, 3] = 255  # 400 separate pixels
    save(birds / "dots.png", dots)
    drawn = blob_rgba(80, 10)
    drawn[..., :3] = [200, 30, 30]  # one flat colour: a drawing
    save(birds / "drawn.png", drawn)
    save(birds / "hat.png", photo(80, 11))
    (birds / "hat.svg").write_text("<svg/>")
    save(root / "symbols" / "alphabets" / "a.png", photo(80, 12))
    save(root / "food" / "fruit" / "apple.png", photo(60, 13))
    save(root / "food" / "fruit" / "banana.png", photo(64, 14))
    (root / "food" / "fruit" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    monkeypatch.setenv("SHIFTLENS_TUXPAINT_ROOT", str(root))
    return root


EXPECTED_SKIPS = {
    "animals/birds/crow_mirror.png": "mirrored copy",
    "animals/birds/cartoon/tweety.png": "cartoon folder",
    "animals/birds/thumbs/crow.png": "thumbnail",
    "animals/birds/owl_thumb.png": "thumbnail",
    "animals/birds/icon.png": "thumbnail or icon",
    "animals/birds/opaque.png": "no transparency",
    "animals/birds/no_alpha_used.png": "no transparency",
    "animals/birds/speck.png": "mask too small",
    "animals/birds/dots.png": "mask fragmented",
    "animals/birds/drawn.png": "drawing",
    "animals/birds/hat.png": "raster copy of a vector drawing",
    "symbols/alphabets/a.png": "symbols, not objects",
    "food/fruit/corrupt.png": "cannot be read",
}


def test_rules_on_a_synthetic_tree(stamps: Path) -> None:
    found = survey(parse_spec("tuxpaint"))
    assert found.kept == {"animals/birds/crow.png": "animals/birds", "food/fruit/apple.png": "food/fruit",
                          "food/fruit/banana.png": "food/fruit"}
    assert not found.cutouts  # a listing keeps no pixels
    assert set(found.skipped) == set(EXPECTED_SKIPS)  # the .jpg, .ogg, .txt and .svg files are not listed at all
    for rel, why in EXPECTED_SKIPS.items():
        assert found.skipped[rel][1].startswith(why), (rel, found.skipped[rel])
    kept, reasons = found.categories()["animals/birds"]
    assert kept == 1 and reasons["cartoon folder"] == 1


def test_patches_crop_to_the_mask_and_record_provenance(stamps: Path) -> None:
    patches = load_patches(RunConfig(patches="tuxpaint"))
    assert [p.id for p in patches] == ["animals/birds/crow", "food/fruit/apple", "food/fruit/banana"]
    crow = patches[0]
    src = photo(80, 1)
    ys, xs = np.nonzero(src[..., 3] >= 128)
    box = src[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    assert crow.rgba.shape == box.shape
    inside = box[..., 3] >= 128
    assert np.array_equal(crow.rgba[..., 3] == 255, inside)
    assert np.array_equal(crow.rgba[..., :3][inside], box[..., :3][inside])
    assert crow.category == "animals/birds" and crow.licence == "GPL-2" and crow.source == "tuxpaint"
    prov = crow.provenance
    assert prov["package"] == "tuxpaint-stamps-default" and prov["licence"] == "GPL-2"
    assert prov["file"] == str(stamps / "animals/birds/crow.png") and prov["description"] == "A crow."
    assert prov["version"].startswith("unknown")  # an overridden root is not the installed package
    assert crow.resized(75).shape == (75, 75, 4)  # resized as every patch is: Patch.resized, the paper's rule


def test_category_folders_depth_and_per_category(stamps: Path) -> None:
    only = load_patches(RunConfig(patches="tuxpaint:food/fruit"))
    assert [p.id for p in only] == ["food/fruit/apple", "food/fruit/banana"]
    assert {p.category for p in load_patches(RunConfig(patches="tuxpaint:depth=1"))} == {"animals", "food"}
    first = load_patches(RunConfig(patches="tuxpaint:food", per_category=1))
    assert [(p.id, p.category) for p in first] == [("food/fruit/apple", "food")]  # sorted paths, the first that pass


@pytest.mark.parametrize(("spec", "words"), [
    ("tuxpaint:animal/bird", ["no category 'animal/bird'", "nearest: animals/birds"]),
    ("tuxpaint:depth=x", ["'depth=x' is not an option", "depth=N"]),
    ("tuxpaint:../stamps/food", ["outside the package", "animals/birds"]),
    ("tuxpaint:symbols", ["no file passes the rules", "symbols, not objects"]),
    ("tuxpaint:food/fruit,classes=/nonexistent.toml", ["classes file /nonexistent.toml does not exist"]),
])
def test_bad_specs_are_one_line(stamps: Path, spec: str, words: list[str]) -> None:
    with pytest.raises(ShiftlensError) as exc:
        load_patches(RunConfig(patches=spec))
    assert "\n" not in str(exc.value) and all(w in str(exc.value) for w in words), str(exc.value)


def test_missing_package_names_the_apt_command(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SHIFTLENS_OPENCLIPART_ROOT", str(tmp_path / "absent"))
    with pytest.raises(ShiftlensError, match=r"sudo apt-get install openclipart-png`, or set SHIFTLENS_OPENCLIPART_ROOT"):
        load_patches(RunConfig(patches="openclipart"))


def test_classes_bundled_and_overridden(stamps: Path, tmp_path: Path) -> None:
    from shiftlens.models.imagenet_classes import CATEGORY_CLASSES, class_indices

    crow = load_patches(RunConfig(patches="tuxpaint:animals/birds"))[0]
    assert class_indices(crow.category, crow.provenance) == sorted(CATEGORY_CLASSES["bird"])
    mine = tmp_path / "classes.toml"
    mine.write_text('[tuxpaint."animals/birds"]\nnone = "not today"\n[tuxpaint."food/fruit"]\nimagenet_classes = [948]\n')
    crow, apple, _ = load_patches(RunConfig(patches=f"tuxpaint:animals/birds,food/fruit,classes={mine}"))
    assert class_indices(crow.category, crow.provenance) == [] and crow.provenance["imagenet_classes_none"] == "not today"
    assert class_indices(apple.category, apple.provenance) == [948]
    mine.write_text('[tuxpaint]\n"food/fruit" = 3\n')
    with pytest.raises(ShiftlensError, match="CATEGORY"):
        load_patches(RunConfig(patches=f"tuxpaint:food/fruit,classes={mine}"))


def test_openclipart_links_count_once(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "png"
    save(root / "animals" / "fox_01.png", blob_rgba(60, 1))  # clip art: drawings are fine here
    (root / "office").mkdir()
    os.symlink(root / "animals" / "fox_01.png", root / "office" / "fox_01.png")
    save(root / "shapes" / "star.png", blob_rgba(60, 2))
    monkeypatch.setenv("SHIFTLENS_OPENCLIPART_ROOT", str(root))
    found = survey(parse_spec("openclipart"))
    assert found.kept == {"animals/fox_01.png": "animals"}
    assert found.skipped["office/fox_01.png"][1].startswith("duplicate")
    assert found.skipped["shapes/star.png"][1] == "symbols, not objects"
    patch = load_patches(RunConfig(patches="openclipart"))[0]
    assert patch.licence.startswith("public domain") and patch.provenance["package"] == "openclipart-png"


def test_patches_command(stamps: Path) -> None:
    from shiftlens.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["patches", "tuxpaint", "--skipped"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "animals/birds" in result.output and "1 cartoon folder" in result.output
    assert "food/fruit/corrupt.png: cannot be read" in result.output
    assert "a run takes 3 (per_category 20)" in result.output
    one = runner.invoke(app, ["patches", "tuxpaint:food", "--per-category", "1"], env={"COLUMNS": "200"})
    assert one.exit_code == 0 and "a run takes 1 (per_category 1)" in one.output, one.output
    bad = runner.invoke(app, ["patches", "tuxpaint:animal/bird"])
    assert bad.exit_code == 2 and "nearest: animals/birds" in bad.output and "Traceback" not in bad.output


def test_imagenet_classes_accepts_table_categories() -> None:
    from shiftlens.models.imagenet_classes import CATEGORY_CLASSES, class_indices

    assert class_indices("anything", {"imagenet_classes": ["dog", 950]}) == sorted(CATEGORY_CLASSES["dog"] + [950])
    with pytest.raises(ShiftlensError, match="neither an index"):
        class_indices("anything", {"imagenet_classes": ["no such thing"]})


needs_tuxpaint = pytest.mark.skipif(not TUXPAINT.is_dir(), reason="tuxpaint-stamps-default is not installed")


@pytest.mark.parametrize(("spec", "root", "package"), [
    ("tuxpaint:animals/birds,food/fruit", TUXPAINT, "tuxpaint-stamps-default"),
    ("openclipart:animals,food", OPENCLIPART, "openclipart-png"),
])
def test_real_packages_match_an_independent_crop(monkeypatch, spec: str, root: Path, package: str) -> None:
    if not root.is_dir():
        pytest.skip(f"{package} is not installed")
    monkeypatch.delenv("SHIFTLENS_TUXPAINT_ROOT", raising=False)
    monkeypatch.delenv("SHIFTLENS_OPENCLIPART_ROOT", raising=False)
    patches = load_patches(RunConfig(patches=spec, per_category=3))
    assert len(patches) == 6
    for p in patches:
        with Image.open(p.provenance["file"]) as im:
            rgba = np.asarray(im.convert("RGBA"))
        mask = rgba[..., 3] >= 128
        ys, xs = np.nonzero(mask)
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        assert np.array_equal(p.rgba[..., 3] == 255, mask[box]), p.id
        assert np.array_equal(p.rgba[..., :3][mask[box]], rgba[box][..., :3][mask[box]]), p.id
        assert p.provenance["version"][0].isdigit() and p.provenance["package"] == package


@needs_tuxpaint
def test_version_without_dpkg_query_comes_from_the_changelog(monkeypatch) -> None:
    from shiftlens.patches import debian

    debian.package_version.cache_clear()
    with_dpkg = debian.package_version("tuxpaint-stamps-default")
    assert with_dpkg
    debian.package_version.cache_clear()
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    try:
        assert debian.package_version("tuxpaint-stamps-default") == with_dpkg
        assert debian.package_version("no-such-package-here") is None
    finally:
        debian.package_version.cache_clear()


@needs_tuxpaint
def test_stamps_preset_on_the_real_package(monkeypatch) -> None:
    monkeypatch.delenv("SHIFTLENS_TUXPAINT_ROOT", raising=False)
    cfg = load("stamps").validate()
    assert cfg.sizes == [75, 125] and cfg.stride == 8 and cfg.models == PRESETS["quick"]["models"]
    patches = load_patches(cfg)
    counts = {c: sum(p.category == c for p in patches) for c in cfg.patches.partition(":")[2].split(",")}
    assert len(counts) == 10 and all(1 <= n <= 20 for n in counts.values()), counts
    from shiftlens.models.imagenet_classes import class_indices

    unmapped = {p.category for p in patches if not class_indices(p.category, p.provenance)}
    assert unmapped == {"plants/flowers"}  # the stamps.toml says why; every other category has a set


def test_an_oversized_image_is_skipped_not_decoded(stamps: Path, monkeypatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # every test image is now over twice the limit
    found = survey(parse_spec("tuxpaint:food/fruit"))
    assert not found.kept and found.skipped["food/fruit/apple.png"][1] == "too large to read safely"


def test_ci_installs_chromium_and_the_stamps_only_when_missing(tmp_path: Path) -> None:
    """The .ci/run block, with its paths pointed at absent or present files and apt-get replaced by a recorder."""
    import subprocess

    script = (Path(__file__).parents[1] / ".ci" / "run").read_text()
    block = script[script.index("missing=()"):script.index("exec ")]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    (bin_dir / "apt-get").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    absent = block.replace("/usr/bin/chromium", str(tmp_path / "no-chromium")).replace(
        "/usr/share/tuxpaint/stamps", str(tmp_path / "no-stamps"))
    subprocess.run(["bash", "-euo", "pipefail", "-c", absent], env=env, check=True)
    assert log.read_text().splitlines()[-1] == "install -y -qq chromium tuxpaint-stamps-default"
    log.unlink()
    (tmp_path / "stamps").mkdir()
    present = absent.replace(str(tmp_path / "no-stamps"), str(tmp_path / "stamps"))
    subprocess.run(["bash", "-euo", "pipefail", "-c", present], env=env, check=True)
    assert log.read_text().splitlines()[-1] == "install -y -qq chromium"


def test_plan_says_which_category_has_no_class_set_and_why(stamps: Path, tmp_path: Path) -> None:
    from shiftlens import api

    mine = tmp_path / "classes.toml"
    mine.write_text('[tuxpaint."animals/birds"]\nnone = "not today"\n')
    cfg = RunConfig(patches=f"tuxpaint:animals/birds,food/fruit,classes={mine}", weights="random", sizes=[75],
                    stride=64, analyses=["similarity", "consistency"], out=str(tmp_path / "o"))
    notes = api.plan(cfg).notes
    assert "animals/birds: no ImageNet class set (not today); its class and consistency rows say so" in notes
    assert notes[0] == ("3 patches from tuxpaint-stamps-default unknown (not the installed package): "
                        "animals/birds 1, food/fruit 2")  # the counts a run really gets, logged and in run.json
    assert not any("food/fruit" in n for n in notes[1:])  # the bundled table gives fruit its set
