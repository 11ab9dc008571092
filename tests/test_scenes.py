"""Scenes: parsing, pixel-space multiset arithmetic, and rendering that matches the single-patch canvases exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import blob_rgba
from shiftlens.canvases import CanvasRenderer, Normalisation, composite
from shiftlens.errors import ShiftlensError
from shiftlens.patches import Patch
from shiftlens.scenes import BLANK, Scene, SceneObject, SceneRenderer, combine, parse_scene, validate_scene


@pytest.fixture
def patches() -> dict[str, Patch]:
    return {f"p{i}": Patch(id=f"p{i}", category="x", rgba=blob_rgba(40 + 8 * i, seed=i), source="test") for i in range(2)}


def test_parse_compact():
    s = parse_scene("cat_01@10,20  cup_01:125@120,40", default_size=75)
    assert s.objects == (SceneObject("cat_01", 75, 10, 20), SceneObject("cup_01", 125, 120, 40))
    assert str(s) == "cat_01:75@10,20 cup_01:125@120,40"
    assert parse_scene(str(s), 1) == s
    for bad in ("cat_01", "cat_01@1,", "cat_01:x@1,2", ""):
        with pytest.raises(ShiftlensError):
            parse_scene(bad, 75)


def test_validate_names_the_object():
    for text, msg in [("zz@0,0", "object zz:10@0,0 names patch 'zz'"), ("a@0,95", "a:10@0,95 reaches outside"),
                      ("a:-3@0,0", "has size -3")]:
        with pytest.raises(ShiftlensError, match=msg):
            validate_scene("s", parse_scene(text, 10), ["a"], 100)


def test_multiset_arithmetic():
    a, b, c = (SceneObject(n, 10, 0, 5 * i) for i, n in enumerate("abc"))
    three, two = Scene((a, b, c)), Scene((a, b))
    assert combine([(1, three, "A"), (-1, two, "B")]) == Scene((c,))
    assert combine([(1, two, "A"), (1, Scene((c,)), "C")]) == three
    assert combine([(1, two, "A"), (-1, two, "B")]) == BLANK
    assert combine([(1, two, "A"), (1, two, "A2"), (-1, two, "B")]) == two
    with pytest.raises(ShiftlensError, match=r"B subtracts object c:10@0,10, which the scene so far does not contain"):
        combine([(1, two, "A"), (-1, Scene((c,)), "B")])
    with pytest.raises(ShiftlensError, match="a:10@0,0"):  # the same object at another place is another object
        combine([(1, Scene((a.at(1, 0),)), "A"), (-1, Scene((a,)), "B")])


def test_one_object_renders_exactly_like_the_canvas_renderer(patches):
    norm = Normalisation(mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25))
    scenes = SceneRenderer(patches, 96, (250, 240, 230), norm)
    ys, xs = np.array([0, 17, 96 - 48]), np.array([5, 0, 96 - 48])
    single = CanvasRenderer(patches["p1"].resized(48), 96, (250, 240, 230), norm).render(ys, xs)
    multi = scenes.render([Scene((SceneObject("p1", 48, int(y), int(x)),)) for y, x in zip(ys, xs)])
    assert multi.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(single, multi)


def test_objects_composite_in_order_with_binary_alpha(patches):
    r = SceneRenderer(patches, 100, (255, 255, 255))
    a, b = SceneObject("p0", 40, 10, 10), SceneObject("p1", 50, 30, 30)  # b overlaps a and is pasted over it
    img = r.render_uint8(Scene((a, b)))
    expected = composite(patches["p0"].resized(40), 10, 10, 100)
    rgba = patches["p1"].resized(50)
    region = expected[30:80, 30:80]
    region[:] = np.where(rgba[..., 3:] > 0, rgba[..., :3], region)
    assert np.array_equal(img, expected)
    norm = Normalisation()
    rendered = r.render([Scene((a, b))])[0].permute(1, 2, 0)
    assert torch.allclose(rendered, norm(torch.from_numpy(expected).float() / 255), atol=1e-6)
