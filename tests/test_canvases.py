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
