"""The `optimise` inverter (issue 11 part 4): natural pre-images by gradient descent on the image, and the same
optimiser pushing a unit up (issue 12 part 3). Tiny networks on small images, so every test takes seconds."""

from __future__ import annotations

import torch
from torch import nn

import pytest

from shiftlens.canvases import Normalisation
from shiftlens.errors import ShiftlensError
from shiftlens.inversion import (FeatureMatch, FeatureNet, InversionSettings, caricature, invert, load_feature_net,
                                 maximise_unit, optimise)
from shiftlens.inversion.priors import alpha_norm, jitter, total_variation
from shiftlens.models import LayerSpec

SIZE = 24
QUICK = dict(size=SIZE, steps=120, jitter=1, tv_weight=0.05, alpha_weight=0.0)


class TinyConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.act(self.bn(self.conv1(x))))
        return self.fc(self.pool(torch.relu(x)).flatten(1))


class LinearMap(nn.Module):
    """A fixed invertible linear map of the image: features = W @ pixels, W orthogonal."""

    def __init__(self, size: int) -> None:
        super().__init__()
        torch.manual_seed(1)
        d = 3 * size * size
        self.map = nn.Linear(d, d, bias=False)
        nn.init.orthogonal_(self.map.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.map(x.flatten(1))


def smooth_images(n: int, size: int = SIZE) -> torch.Tensor:
    """Images in [0.1, 0.9] with a blob and a gradient each: something an image prior does not fight."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = []
    for i in range(n):
        cy, cx = 0.3 + 0.2 * i, 0.7 - 0.2 * i
        blob = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.03)
        out.append(torch.stack([0.1 + 0.8 * blob, 0.1 + 0.8 * xx, 0.9 - 0.8 * blob * yy]))
    return torch.stack(out)


def features(net: FeatureNet, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net(images)


@pytest.fixture
def conv_net() -> FeatureNet:
    return FeatureNet(TinyConv(), "conv2", Normalisation())


def test_feature_loss_falls_far_below_the_start(conv_net: FeatureNet) -> None:
    targets = features(conv_net, smooth_images(2))
    start = InversionSettings(size=SIZE).start_image().expand(2, -1, -1, -1)
    start_loss = FeatureMatch(targets)(features(conv_net, start), slice(None))
    result = invert(conv_net, None, targets, **QUICK)
    assert result.images.shape == (2, 3, SIZE, SIZE)
    assert result.images.min() >= 0 and result.images.max() <= 1
    assert (result.feature_loss < 0.1 * start_loss).all(), (result.feature_loss, start_loss)
    assert result.layer.endswith(":conv2") and result.settings.steps == QUICK["steps"]


@pytest.mark.parametrize("model", ["identity", "orthogonal"])
def test_a_full_rank_linear_tap_gives_the_image_back(model: str) -> None:
    module = nn.Sequential(nn.Identity()) if model == "identity" else LinearMap(SIZE)
    layer = "0" if model == "identity" else "map"
    net = FeatureNet(module, layer, Normalisation())
    truth = smooth_images(2)
    result = invert(net, None, features(net, truth), size=SIZE, steps=150, lr=0.05, jitter=0, tv_weight=0.0,
                    alpha_weight=0.0)
    error = (result.images - truth).abs()
    assert error.mean() < 0.005 and error.max() < 0.05, (error.mean(), error.max())
    assert (result.feature_loss < 1e-3).all()


def test_a_plain_module_and_its_featurenet_give_the_same_inversion() -> None:
    targets = features(FeatureNet(TinyConv(), "conv2", Normalisation()), smooth_images(1))
    settings = dict(QUICK, steps=10)
    plain = invert(TinyConv(), "conv2", targets, Normalisation(), **settings)
    wrapped = invert(FeatureNet(TinyConv(), "conv2", Normalisation()), None, targets, **settings)
    assert torch.equal(plain.images, wrapped.images)
    with pytest.raises(ShiftlensError):
        invert(TinyConv(), None, targets, **settings)


def test_works_when_called_under_inference_mode(conv_net: FeatureNet) -> None:
    """Targets from the feature stream are inference tensors, and callers may still be inside inference_mode."""
    model, fc_model = TinyConv(), TinyConv()  # (a model built under inference_mode has no usable weights)
    with torch.inference_mode():
        targets = conv_net(smooth_images(1))
        result = invert(conv_net, None, targets, **dict(QUICK, steps=10))
        inside = invert(FeatureNet(model, "conv2", Normalisation()), None, targets, **dict(QUICK, steps=10))
        unit = maximise_unit(FeatureNet(fc_model, "fc", Normalisation()), None, 3, **dict(QUICK, steps=5))
    expected = invert(conv_net, None, targets.clone(), **dict(QUICK, steps=10))
    assert torch.equal(result.images, expected.images) and torch.equal(inside.images, expected.images)
    assert unit.value.isfinite().all()


def test_same_seed_same_images_other_seed_other_images(conv_net: FeatureNet) -> None:
    targets = features(conv_net, smooth_images(2))
    settings = dict(QUICK, steps=30, jitter=2)
    a = invert(conv_net, None, targets, seed=3, **settings)
    b = invert(conv_net, None, targets, seed=3, **settings)
    c = invert(conv_net, None, targets, seed=4, **settings)
    assert torch.equal(a.images, b.images) and torch.equal(a.feature_loss, b.feature_loss)
    assert not torch.allclose(a.images, c.images, atol=1e-3)


def test_batched_equals_one_by_one(conv_net: FeatureNet) -> None:
    targets = features(conv_net, smooth_images(3))
    settings = dict(QUICK, steps=40, jitter=2)
    together = invert(conv_net, None, targets, batch_size=3, **settings)
    chunked = invert(conv_net, None, targets, batch_size=2, **settings)
    alone = torch.cat([invert(conv_net, None, targets[i : i + 1], **settings).images for i in range(3)])
    assert torch.allclose(together.images, alone, atol=1e-3), (together.images - alone).abs().max()
    assert torch.allclose(together.images, chunked.images, atol=1e-3)


def test_priors_pull_the_image_smooth_and_inside_the_range(conv_net: FeatureNet) -> None:
    targets = features(conv_net, smooth_images(1))
    rough = invert(conv_net, None, targets, **dict(QUICK, tv_weight=0.0))
    smooth = invert(conv_net, None, targets, **dict(QUICK, tv_weight=5.0))
    assert total_variation(smooth.images, 2.0) < 0.5 * total_variation(rough.images, 2.0)


def test_prior_functions_known_values() -> None:
    flat = torch.full((1, 3, 8, 8), 0.5)
    assert total_variation(flat, 2.0).item() == pytest.approx(1e-4)
    assert alpha_norm(flat, 6.0).item() == 0.0
    assert alpha_norm(torch.ones(1, 3, 4, 4), 6.0).item() == 1.0
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 3, 8, 8).contiguous()
    shifted = jitter(ramp, 0, 2)
    assert shifted[0, 0, 0].tolist() == [0, 0, 0, 1, 2, 3, 4, 5]  # moved right, left edge repeated
    assert jitter(ramp, 0, 0) is ramp


def test_progress_sees_every_step(conv_net: FeatureNet) -> None:
    seen: list[tuple[int, int]] = []
    targets = features(conv_net, smooth_images(3))
    invert(conv_net, None, targets, progress=lambda done, total, loss: seen.append((done, total)),
           **dict(QUICK, steps=5, batch_size=2))
    assert seen == [(i, 10) for i in range(1, 11)]


def test_tap_before_an_inplace_relu_keeps_negative_values() -> None:
    """AlexNet's fc layers are followed by ReLU(inplace=True): the tap is the pre-activation value, with gradients."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 6), nn.ReLU(inplace=True), nn.Linear(6, 2))
    net = FeatureNet(model, LayerSpec("fc", "1", "pre-ReLU"), Normalisation())
    post = FeatureNet(model, LayerSpec("fcrelu", "1", "post-ReLU", post="relu"), Normalisation())
    x = torch.rand(4, 3, 4, 4, requires_grad=True)
    value = net(x)
    assert (value < 0).any()
    (grad,) = torch.autograd.grad(value.sum(), x)
    assert grad.abs().sum() > 0
    assert torch.equal(features(post, x), torch.relu(features(net, x)))


def test_forward_stops_at_the_tapped_layer() -> None:
    class Boom(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise AssertionError("ran past the tapped layer")

    net = FeatureNet(nn.Sequential(nn.Conv2d(3, 2, 3), Boom()), "0", Normalisation())
    assert net(torch.rand(1, 3, 8, 8)).shape == (1, 2 * 6 * 6)


def test_maximise_unit_raises_the_unit_far_above_its_random_start() -> None:
    """'Far' in the unit's own scale: its spread over random images of the same size."""
    net = FeatureNet(TinyConv(), "fc", Normalisation())
    result = maximise_unit(net, None, [3, 7], **dict(QUICK, steps=60))
    assert result.images.shape == (2, 3, SIZE, SIZE)
    spread = features(net, torch.rand(64, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)))[:, [3, 7]].std(0)
    assert (result.value - result.start_value > 10 * spread).all(), (result.value, result.start_value, spread)
    assert (result.gain > 3).all()


def test_caricature_amplifies_what_the_layer_sees(conv_net: FeatureNet) -> None:
    images = smooth_images(2)
    result = caricature(conv_net, None, images, **dict(QUICK, steps=30))
    assert torch.allclose(result.start_value, torch.ones(2), atol=0.5)
    assert (result.value > 1.25 * result.start_value).all(), (result.value, result.start_value)
    assert (result.images - images).abs().mean() > 0.01


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_bad_input_is_one_line(conv_net: FeatureNet) -> None:
    targets = features(conv_net, smooth_images(1))
    with pytest.raises(ShiftlensError) as exc:
        invert(conv_net, None, targets[:, :100], **QUICK)
    assert "100 values per row" in one_line(exc) and "gives 576" in one_line(exc)
    with pytest.raises(ShiftlensError) as exc:
        invert(conv_net, None, targets[0], **QUICK)
    assert "(N, D)" in one_line(exc)
    with pytest.raises(ShiftlensError) as exc:
        invert(conv_net, None, targets * float("nan"), **QUICK)
    assert "NaN" in one_line(exc)
    with pytest.raises(ShiftlensError) as exc:
        invert(TinyConv(), "conv9", targets, **QUICK)
    assert "conv9" in one_line(exc)
    with pytest.raises(ShiftlensError) as exc:
        invert(conv_net, None, targets, stpes=10)
    assert "stpes" in one_line(exc) and "steps" in one_line(exc)
    with pytest.raises(ShiftlensError) as exc:
        invert(conv_net, None, targets, tv_beta=0.5)
    assert "tv_beta" in one_line(exc)
    with pytest.raises(ShiftlensError) as exc:
        maximise_unit(FeatureNet(TinyConv(), "fc", Normalisation()), None, 10, **QUICK)
    assert "unit 10" in one_line(exc) and "0-9" in one_line(exc)


def test_registry_specs_give_one_line_errors() -> None:
    with pytest.raises(ShiftlensError) as exc:
        load_feature_net("efficientnet_lite0:fc9")
    assert "fc9" in one_line(exc) and "pool" in one_line(exc)
    with pytest.raises(ShiftlensError) as exc:
        load_feature_net("efficientnet_lite0", weights="random")
    assert "one" in one_line(exc)


def test_registry_model_inverts_end_to_end() -> None:
    """Any registry model and layer: AlexNet fc6 (random weights) through the spec parser, a few steps."""
    net = load_feature_net("alexnet:fc6", weights="random")
    target = features(net, smooth_images(1, 64))
    result = invert(net, None, target, size=64, steps=3)
    assert result.images.shape == (1, 3, 64, 64) and torch.isfinite(result.feature_loss).all()


def test_optimise_checks_its_start_images(conv_net: FeatureNet) -> None:
    targets = features(conv_net, smooth_images(2))
    with pytest.raises(ShiftlensError) as exc:
        optimise(conv_net, FeatureMatch(targets), InversionSettings(size=SIZE), start=torch.rand(3, 3, SIZE, SIZE))
    assert "(2, 3, H, W)" in one_line(exc)


class DarkSpot(nn.Module):
    """Two rectified units: `out[0]` fires where an 8 x 8 cell is darker than 0.52 (never on the grey noise start),
    `out[1]` never fires at all."""

    def __init__(self) -> None:
        super().__init__()
        self.out = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        darkness = torch.nn.functional.avg_pool2d(1 - x.mean(1, keepdim=True), 8).amax((1, 2, 3))
        return self.out(torch.stack([torch.relu(darkness - 0.52), torch.relu(-darkness - 1)], 1))


def test_a_unit_silent_at_every_noise_start_is_refused_and_climbs_from_a_start_that_drives_it() -> None:
    from shiftlens.inversion.maximise import LIVE_START_TRIES, SilentUnit

    net = FeatureNet(DarkSpot(), "out", Normalisation(mean=(0, 0, 0), std=(1, 1, 1)))  # pixels as they are
    with pytest.raises(SilentUnit, match=rf"unit 0 of .* is 0 at the start image of {LIVE_START_TRIES} seeds.*start="):
        maximise_unit(net, None, 0, **dict(QUICK, steps=5))
    start = torch.full((1, 3, SIZE, SIZE), 0.5)
    start[..., :8, :8] = 0.4  # one cell just dark enough
    result = maximise_unit(net, None, 0, start=start, **dict(QUICK, steps=40))
    assert 0 < float(result.start_value[0]) < 0.1 and float(result.value[0]) > 3 * float(result.start_value[0])
    assert result.settings.seed == QUICK.get("seed", 0)  # a given start uses the given seed's jitter
    with pytest.raises(ShiftlensError, match="start must be one"):
        maximise_unit(net, None, 0, start=start[0], **QUICK)


class TopLeftPixel(nn.Module):
    """One rectified unit: how far the top-left red pixel is above 0.5 (0 for about half the noise seeds)."""

    def __init__(self) -> None:
        super().__init__()
        self.out = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(x[:, :1, 0, 0] - 0.5))


def test_a_unit_silent_at_the_given_seed_climbs_from_the_next_seed_that_drives_it_and_reports_that_seed() -> None:
    net = FeatureNet(TopLeftPixel(), "out", Normalisation(mean=(0, 0, 0), std=(1, 1, 1)))
    assert float(net(InversionSettings(size=SIZE, seed=0).start_image())[0, 0]) == 0  # seed 0 leaves it silent
    result = maximise_unit(net, None, 0, **dict(QUICK, steps=30, seed=0, jitter=0))
    seed = result.settings.seed
    assert seed > 0 and float(net(InversionSettings(size=SIZE, seed=seed).start_image())[0, 0]) > 0
    assert float(result.start_value[0]) > 0 and float(result.value[0]) > float(result.start_value[0])
