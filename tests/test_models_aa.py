"""The anti-aliased networks against the reference antialiased-cnns definitions (a test-only dependency)."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from torch import nn

from shiftlens.errors import ShiftlensError
from shiftlens.models import build_with_weights, parse_spec
from shiftlens.models.antialiased import BUILDERS, DEFAULT_FILTER_SIZE
from shiftlens.models.blurpool import FILTER_SIZES, BlurPool, binomial_filter

ac = pytest.importorskip("antialiased_cnns")
torch.set_num_threads(min(2, torch.get_num_threads()))

REFERENCE = {"alexnet": ac.alexnet, "resnet50": ac.resnet50, "mobilenet_v2": ac.mobilenet_v2}
# The smallest inputs whose last BlurPool still has more pixels than its reflect padding at filter size 7.
INPUT_SIDE = {"alexnet": 112, "resnet50": 64, "mobilenet_v2": 64}


def reference(base: str, filter_size: int, device: str = "cpu") -> nn.Module:
    with torch.device(device), contextlib.redirect_stdout(io.StringIO()):  # its ResNet prints while initialising
        return REFERENCE[base](pretrained=False, filter_size=filter_size)


def test_binomial_filter_is_bin5_by_default():
    row = torch.tensor([1.0, 4, 6, 4, 1])
    assert torch.allclose(binomial_filter(5), row[:, None] * row[None, :] / 256)
    assert DEFAULT_FILTER_SIZE == 5
    assert parse_spec("resnet50_aa").entry.extra["filter_size"] == 5
    assert parse_spec("resnet50_aa3").entry.extra["filter_size"] == 3


@pytest.mark.parametrize("filter_size", FILTER_SIZES)
def test_blurpool_matches_reference(filter_size):
    x = torch.randn(2, 3, 11, 12)
    ours, ref = BlurPool(3, filter_size), ac.BlurPool(3, filt_size=filter_size)
    assert torch.equal(ours.filt, ref.filt)
    torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize("base", BUILDERS)
def test_state_dict_keys_and_shapes_match_reference_for_every_filter_size(base):
    for k in FILTER_SIZES:
        with torch.device("meta"):
            ours = BUILDERS[base](k).state_dict()
        theirs = reference(base, k, "meta").state_dict()
        assert [(n, tuple(v.shape)) for n, v in ours.items()] == [(n, tuple(v.shape)) for n, v in theirs.items()], (base, k)


def _randomise_batchnorm(model: nn.Module, gen: torch.Generator) -> None:
    """Non-trivial running statistics, so that a misplaced BatchNorm would change the outputs."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


@pytest.mark.parametrize("base", BUILDERS)
def test_reference_weights_load_strictly_and_give_the_same_outputs(base, tmp_path):
    """Every filter size in memory (our strict loader); the Bin-5 default also through a checkpoint file."""
    gen = torch.Generator().manual_seed(0)
    side = INPUT_SIDE[base]
    x = torch.rand(1, 3, side, side, generator=gen)
    for k in FILTER_SIZES:
        ref = reference(base, k)
        _randomise_batchnorm(ref, gen)
        ref.eval()
        entry = parse_spec(f"{base}_aa{k}").entry
        if k == DEFAULT_FILTER_SIZE:
            path = tmp_path / f"{base}_lpf{k}.pth"
            torch.save({"state_dict": ref.state_dict()}, path)  # the released files' form
            model, prov = build_with_weights(parse_spec(f"{base}_aa").entry, str(path))
            assert prov["source"] == "file" and not prov["untrained"] and len(prov["sha256"]) == 64
        else:
            with torch.device("meta"):
                model = entry.build()
            model.load_state_dict(ref.state_dict(), strict=True, assign=True)
            model.eval()
        with torch.no_grad():
            expected, got = ref(x), model(x)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5, msg=f"{base} filter size {k}")


def test_filter_sizes_without_released_weights_say_so():
    with pytest.raises(ShiftlensError, match="no ImageNet weights were released for resnet50 with filter size 7"):
        build_with_weights(parse_spec("resnet50_aa7").entry, "imagenet")


def test_aa_layers_tap_the_right_modules():
    model = BUILDERS["mobilenet_v2"](5)
    assert isinstance(model.get_submodule(parse_spec("mobilenet_v2_aa").entry.layer("fc").module), nn.Linear)
    entry = parse_spec("alexnet_aa").entry
    assert set(entry.layers) == {"fc6", "fc6relu", "fc7", "fc7relu", "fc8", "pool"}
    assert entry.default_layers == ("fc6", "fc7", "fc8")
