import numpy as np
import pytest
import torch

from conftest import blob_rgba
from shiftlens.canvases import CanvasRenderer, Normalisation, composite, grid, offsets
from shiftlens.errors import ShiftlensError

IDENTITY = Normalisation((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def test_positions_follow_the_protocol():
    assert len(offsets(224, 75, 1)) == 150 and len(offsets(224, 125, 1)) == 100
    ys, xs = grid(224, 125, 1)
    assert len(ys) == 10_000
    # row-major: y outer, x inner
    assert (ys[:3] == 0).all() and list(xs[:3]) == [0, 1, 2] and (ys[100], xs[100]) == (1, 0)
    o = offsets(224, 75, 8)
    assert o[0] == 0 and o[-1] <= 149 and np.all(np.diff(o) == 8)


def test_render_is_exact_binary_compositing_at_every_position():
    rgba = blob_rgba(9, seed=3)
    renderer = CanvasRenderer(rgba, canvas=20, background=(255, 255, 255), normalisation=IDENTITY)
    ys, xs = grid(20, 9, 1)
    batch = renderer.render(ys, xs)
    assert batch.shape == (len(ys), 3, 20, 20)
    assert batch.is_contiguous(memory_format=torch.channels_last)
    for i in range(len(ys)):
        img = (batch[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        expected = composite(rgba, int(ys[i]), int(xs[i]), 20)
        assert np.array_equal(img, expected), (ys[i], xs[i])


def test_composite_keeps_background_outside_mask_and_patch_inside():
    rgba = blob_rgba(30)
    img = composite(rgba, 5, 7, 64, background=(10, 20, 30))
    assert tuple(img[0, 0]) == (10, 20, 30)
    inside = np.argwhere(rgba[..., 3] > 0)[0]
    outside = np.argwhere(rgba[..., 3] == 0)[0]
    assert tuple(img[5 + inside[0], 7 + inside[1]]) == tuple(rgba[inside[0], inside[1], :3])
    assert tuple(img[5 + outside[0], 7 + outside[1]]) == (10, 20, 30)


def test_render_applies_normalisation_like_preprocessing_the_image():
    rgba = blob_rgba(12, seed=1)
    norm = Normalisation()
    batch = CanvasRenderer(rgba, canvas=32, normalisation=norm).render(np.array([4]), np.array([9]))
    img = torch.from_numpy(composite(rgba, 4, 9, 32)).float() / 255
    expected = norm(img).permute(2, 0, 1)
    torch.testing.assert_close(batch[0], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("bad", [lambda: offsets(224, 75, 0), lambda: offsets(224, 300, 1),
                                 lambda: CanvasRenderer(blob_rgba(50), canvas=32), lambda: composite(blob_rgba(20), 10, 0, 24)])
def test_bad_geometry_is_a_clear_error(bad):
    with pytest.raises(ShiftlensError):
        bad()


# --- backgrounds, circular shifts and crops ------------------------------------------------------------------------

from shiftlens.canvases import (CircularRenderer, CropRenderer, axis_positions, load_images, make_renderer,  # noqa: E402
                                parse_background, texture_names)


def _expected(rgba, y, x, canvas, background, norm=Normalisation()):
    return norm(torch.from_numpy(composite(rgba, y, x, canvas, background)).float() / 255).permute(2, 0, 1)


def test_white_default_renders_bit_for_bit_as_the_normalised_composite_through_reused_batches():
    """The default background's batches (reused buffer, batches of changing length) equal, bit for bit, the model's
    preprocessing applied to the composited uint8 image: what the renderer computed before backgrounds existed."""
    rgba = blob_rgba(21, seed=2)
    ys, xs = grid(64, 21, 5)
    for background in ((255, 255, 255), "white", [255, 255, 255]):
        r = CanvasRenderer(rgba, 64, background, Normalisation(), pool={})
        for lo, hi in ((0, 7), (7, 10), (10, 30), (30, len(ys))):
            batch = r.render(ys[lo:hi], xs[lo:hi], reuse=True)
            for i in range(hi - lo):
                assert torch.equal(batch[i], _expected(rgba, int(ys[lo + i]), int(xs[lo + i]), 64, (255, 255, 255)))


@pytest.mark.parametrize("spec, rgb", [("white", (255, 255, 255)), ("gray", (128, 128, 128)), ("mean", (124, 116, 104)),
                                       ("#0A80fF", (10, 128, 255)), ("black", (0, 0, 0))])
def test_flat_backgrounds_are_their_colours(spec, rgb):
    bg = parse_background(spec, 32)
    assert bg.flat and bg.rgb == rgb and tuple(bg.pixels(32)[5, 7]) == rgb
    assert tuple(composite(blob_rgba(10), 0, 0, 32, spec)[31, 31]) == rgb


def test_texture_background_stays_and_shows_under_the_transparent_pixels_only():
    rgba = blob_rgba(24, seed=4)
    bg = parse_background("texture:gravel", 96)
    assert not bg.flat and bg.image.shape == (96, 96, 3) and bg.image.std() > 10  # a real texture, not a flat fill
    r = CanvasRenderer(rgba, 96, "texture:gravel", IDENTITY, pool={})
    ys, xs = grid(96, 24, 12)
    mask = rgba[..., 3] > 0
    for lo, hi in ((0, 5), (5, 9), (9, len(ys))):
        batch = r.render(ys[lo:hi], xs[lo:hi], reuse=True)
        for i in range(hi - lo):
            y, x = int(ys[lo + i]), int(xs[lo + i])
            img = batch[i].permute(1, 2, 0).numpy()
            expected = bg.image.astype(np.float32) / 255
            assert np.array_equal(img[~_where(mask, y, x, 96)], expected[~_where(mask, y, x, 96)])  # background stays
            assert np.array_equal(img[y : y + 24, x : x + 24][mask], rgba[..., :3][mask].astype(np.float32) / 255)
            assert torch.equal(batch[i], _expected(rgba, y, x, 96, "texture:gravel", IDENTITY))


def _where(mask, y, x, canvas):
    full = np.zeros((canvas, canvas), bool)
    full[y : y + mask.shape[0], x : x + mask.shape[1]] = mask
    return full


def test_image_background_is_centre_cropped_and_resized(tmp_path):
    from PIL import Image

    img = np.zeros((40, 80, 3), np.uint8)
    img[:, 20:60] = 200  # the centred square is all 200
    Image.fromarray(img).save(tmp_path / "bg.png")
    bg = parse_background(f"image:{tmp_path / 'bg.png'}", 32)
    assert bg.image.shape == (32, 32, 3) and (bg.image == 200).all()


@pytest.mark.parametrize("spec, says", [
    ("texture:bricks", "unknown texture 'bricks': use one of brick, grass, gravel"),
    ("#12345g", "give #RRGGBB with six hex digits"),
    ("#fff", "give #RRGGBB"),
    ("purple", "use white, gray, mean, #RRGGBB, image:PATH or texture:NAME"),
    ("image:nope/missing.png", "image nope/missing.png does not exist"),
    ([255, 0], "give three values 0-255"),
])
def test_bad_backgrounds_are_one_line_errors(spec, says):
    with pytest.raises(ShiftlensError, match=None) as info:
        parse_background(spec, 32)
    assert says in str(info.value) and "\n" not in str(info.value)


def test_corrupt_background_image_is_one_line(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ShiftlensError, match="cannot be read"):
        parse_background(f"image:{tmp_path / 'bad.png'}", 32)


def test_bundled_textures_have_provenance():
    from shiftlens.canvases.background import TEXTURES_DIR, _manifest

    assert texture_names() == ["brick", "grass", "gravel"]
    for t in _manifest()["textures"]:
        assert (TEXTURES_DIR / t["file"]).is_file() and t["licence"] == "CC0" and t["source_file"]


def test_circular_shift_of_a_whole_canvas_is_torch_roll():
    rgba = blob_rgba(20, seed=5)
    for background in ("white", "texture:brick"):
        base = _expected(rgba, 0, 0, 48, background)
        r = CircularRenderer(rgba, 48, background, Normalisation(), pool={})
        ys, xs = grid(48, 20, 7, shift="circular")
        assert list(axis_positions(48, 20, 7, shift="circular")) == [0, 7, 14, 21, 28, 35, 42]  # the full period
        batch = r.render(ys, xs, reuse=True)
        assert batch.is_contiguous(memory_format=torch.channels_last)
        for i in range(len(ys)):
            assert torch.equal(batch[i], torch.roll(base, (int(ys[i]), int(xs[i])), dims=(1, 2)))


def test_circular_equals_paste_where_the_patch_does_not_wrap_on_a_flat_background():
    rgba = blob_rgba(20, seed=6)
    ys, xs = np.array([0, 8, 28]), np.array([28, 0, 14])
    rolled = CircularRenderer(rgba, 48, "gray").render(ys, xs)
    pasted = CanvasRenderer(rgba, 48, "gray").render(ys, xs)
    assert torch.equal(rolled, pasted)


def test_crop_windows_are_slices_of_the_resized_image():
    rng = np.random.default_rng(0)
    image = np.concatenate([rng.integers(0, 255, (50, 50, 3), dtype=np.uint8), np.full((50, 50, 1), 255, np.uint8)], 2)
    o = axis_positions(32, 50, 6, protocol="crop")
    assert list(o) == [0, 6, 12, 18] and len(o) == (50 - 32) // 6 + 1  # the mirror of pasting
    ys, xs = grid(32, 50, 6, protocol="crop")
    r = make_renderer(image, 32, "white", IDENTITY, pool={}, protocol="crop")
    assert isinstance(r, CropRenderer)
    batch = r.render(ys, xs, reuse=True)
    for i in range(len(ys)):
        y, x = int(ys[i]), int(xs[i])
        expected = torch.from_numpy(image[y : y + 32, x : x + 32, :3]).float().permute(2, 0, 1) / 255
        assert torch.equal(batch[i], expected)


def test_crop_images_bundled_and_bad_input(tmp_path):
    from PIL import Image

    images = load_images("images", 224)
    assert [p.id for p in images] == ["cat_01", "cup_01", "rocket_01"]
    assert all(p.rgba.shape[0] == p.rgba.shape[1] >= 224 and (p.rgba[..., 3] == 255).all() for p in images)
    Image.fromarray(np.zeros((100, 150, 3), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(ShiftlensError, match=r"small.png is 150x100, smaller than the 224px canvas"):
        load_images(f"image:{tmp_path / 'small.png'}", 224)
    with pytest.raises(ShiftlensError, match="does not work with --protocol crop"):
        load_images("sample", 224)
    with pytest.raises(ShiftlensError, match="crop size 200 is smaller than the 224px canvas"):
        axis_positions(224, 200, 8, protocol="crop")


@pytest.mark.parametrize("background", ["white", "texture:brick"])
def test_the_gpu_indexed_paste_writes_what_the_cpu_slices_write(background):
    """The CUDA path (one indexed write per batch) run on the CPU against the slice path, pasting and restoring."""
    rgba = blob_rgba(15, seed=7)
    r = CanvasRenderer(rgba, 40, background, Normalisation())
    ys, xs = (torch.as_tensor(a) for a in grid(40, 15, 6))
    a, b = r._fresh(len(ys)), r._fresh(len(ys))
    r._paste_slices(a, ys, xs, restore=False)
    r._paste_indexed(b, ys, xs, restore=False)
    assert torch.equal(a, b) and not torch.equal(a, r._fresh(len(ys)))
    r._paste_slices(a, ys, xs, restore=True)
    r._paste_indexed(b, ys, xs, restore=True)
    assert torch.equal(a, r._fresh(len(ys))) and torch.equal(b, r._fresh(len(ys)))
