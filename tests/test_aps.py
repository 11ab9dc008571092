"""Adaptive polyphase sampling (models/aps.py): exact invariance to circular shifts, the authors' checkpoint keys,
and loading a user's checkpoint through the ordinary weights path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import blob_rgba
from shiftlens.canvases import CircularRenderer, grid
from shiftlens.errors import ShiftlensError
from shiftlens.models import REGISTRY, build_with_weights
from shiftlens.models.aps import ApsPool
from shiftlens.models.weights import check_fits, load_checkpoint
from shiftlens.stream import FeatureExtractor

CANVAS = 64


def _circular_similarities(name: str, stride: int) -> torch.Tensor:
    """Cosine similarity of every circular shift's pooled feature to the unshifted canvas (random weights)."""
    entry = REGISTRY[name]
    model, prov = build_with_weights(entry, "random", 0)
    assert prov["untrained"]
    rgba = blob_rgba(28, seed=1)
    ys, xs = grid(CANVAS, 28, stride, shift="circular")
    with FeatureExtractor(model, [entry.layer("pool")], entry.normalisation, torch.device("cpu"), "fp32") as ex:
        renderer = CircularRenderer(rgba, CANVAS, "white", entry.normalisation)
        feats = ex(renderer.render(ys, xs))["pool"]
    return F.cosine_similarity(feats, feats[:1], dim=1)


def test_resnet50_aps_is_invariant_to_circular_shifts_by_the_total_stride_and_plain_resnet50_is_not():
    aps = _circular_similarities("resnet50_aps", 32)  # shifts (0|32, 0|32) of the 64 px canvas
    plain = _circular_similarities("resnet50", 32)
    assert len(aps) == 4
    assert (aps - 1).abs().max() < 1e-5, aps
    assert plain.min() < 0.999, plain


def test_mobilenet_v2_aps_is_invariant_to_every_circular_shift_and_plain_mobilenet_v2_is_not():
    aps = _circular_similarities("mobilenet_v2_aps", 8)  # 64 shifts, most not multiples of the total stride
    plain = _circular_similarities("mobilenet_v2", 8)
    assert len(aps) == 64 and (aps - 1).abs().max() < 1e-5, aps
    assert plain.min() < 0.999, plain


def test_mobilenet_v2_aps_keeps_the_anti_aliased_module_paths():
    aps = REGISTRY["mobilenet_v2_aps3"].build()
    aa = REGISTRY["mobilenet_v2_aa3"].build()
    keys, aa_keys = set(aps.state_dict()), set(aa.state_dict())
    assert keys - aa_keys == {"features.0.3.filt"}  # the stem subsamples by APS too; mobilenet_v2_aa keeps it strided
    assert aa_keys <= keys
    convs = [m for m in aps.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.stride == (1, 1) for m in convs)  # every subsampling is an APS
    assert {m.padding_mode for m in convs if m.padding != (0, 0)} == {"circular"}


def test_resnet18_aps_with_blur_is_invariant_to_every_circular_shift():
    sims = _circular_similarities("resnet18_aps3", 16)
    assert len(sims) == 16 and (sims - 1).abs().max() < 1e-5, sims


def test_aps_pool_keeps_the_component_of_largest_norm_and_the_shortcut_can_impose_it():
    x = torch.zeros(2, 1, 4, 4)
    x[0, 0, 1::2, 0::2] = 3.0  # odd rows, even columns: component 1
    x[1, 0, 1::2, 1::2] = 1.0  # component 3
    out, idx = ApsPool(1).select(x)
    assert idx.tolist() == [1, 3] and (out[0] == 3).all() and (out[1] == 1).all()
    forced, _ = ApsPool(1).select(x, torch.tensor([0, 0]))
    assert (forced == 0).all()
    rolled, idx2 = ApsPool(1).select(torch.roll(x, (1, 1), (2, 3)))
    assert idx2.tolist() == [2, 0] and torch.equal(rolled, out)  # a shift by one changes the phase, not the values


def test_state_dict_uses_the_authors_module_names():
    keys = set(REGISTRY["resnet50_aps3"].build().state_dict())
    assert {"conv1.1.weight", "maxpool.0.filt", "maxpool.3.filt", "layer1.0.conv2.1.weight",
            "layer1.0.downsample.0.weight", "layer2.0.aps_down.filt", "layer2.0.downsample.0.filt",
            "layer2.0.downsample.1.weight", "layer2.0.downsample.2.running_var", "fc.weight"} <= keys
    keys18 = set(REGISTRY["resnet18_aps"].build().state_dict())
    assert {"conv1.1.weight", "layer1.0.conv1.1.weight", "layer2.0.conv2.1.weight", "layer2.0.downsample.1.weight"} <= keys18
    assert not any(k.endswith("filt") for k in keys18)  # plain APS (filter size 1) has no blur buffers


def test_a_users_checkpoint_loads_through_the_spec_and_another_architecture_is_refused(tmp_path):
    entry = REGISTRY["resnet18_aps"]
    model, _ = build_with_weights(entry, "random", 3)
    path = tmp_path / "aps.pth"
    torch.save({"state_dict": model.state_dict()}, path)  # the form the authors' main.py saves
    loaded, prov = build_with_weights(entry, str(path), 0)
    assert not prov["untrained"]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    plain = tmp_path / "plain.pth"
    torch.save(build_with_weights(REGISTRY["resnet50"], "random", 0)[0].state_dict(), plain)
    with pytest.raises(ShiftlensError, match="resnet50_aps"):
        check_fits(REGISTRY["resnet50_aps"], load_checkpoint(plain), str(plain))


def test_imagenet_weights_say_what_to_give_instead():
    with pytest.raises(ShiftlensError, match=r"no ImageNet weights were released for resnet50_aps.*--weights random"):
        REGISTRY["resnet50_aps"].imagenet()


def test_on_a_flat_background_moving_the_object_is_a_circular_shift_so_aps_is_invariant_but_not_on_a_texture():
    """A patch moved over a uniform canvas is the canvas rolled (the background rolls onto itself), so circular
    padding + APS gives similarity 1 for the paste protocol too; a texture stays while the object moves, so not."""
    from shiftlens.canvases import CanvasRenderer

    entry = REGISTRY["resnet18_aps"]
    model, _ = build_with_weights(entry, "random", 0)
    rgba = blob_rgba(28, seed=2)
    ys, xs = grid(CANVAS, 28, 12)
    sims = {}
    with FeatureExtractor(model, [entry.layer("pool")], entry.normalisation, torch.device("cpu"), "fp32") as ex:
        for background in ("white", "texture:gravel"):
            feats = ex(CanvasRenderer(rgba, CANVAS, background, entry.normalisation).render(ys, xs))["pool"]
            sims[background] = F.cosine_similarity(feats, feats[:1], dim=1)
    assert (sims["white"] - 1).abs().max() < 1e-5, sims["white"]
    assert sims["texture:gravel"].min() < 1 - 1e-3, sims["texture:gravel"]
