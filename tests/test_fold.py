import torch
from torch import nn

from shiftlens.models import Taps, build_with_weights, parse_spec
from shiftlens.models.fold import fold_batchnorm


def _with_bn_stats(model: nn.Module) -> nn.Module:
    """Non-trivial running statistics, so folding has something to fold."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def test_folded_resnet_keeps_its_taps_and_values():
    spec = parse_spec("resnet50:pool,fc")
    model, _ = build_with_weights(spec.entry, "random")
    model = _with_bn_stats(model)
    layers = [spec.entry.layer(l) for l in spec.layers]
    folded = fold_batchnorm(model, [l.module for l in layers])
    assert folded is not model and not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        a, b = Taps(model, layers)(x), Taps(folded, layers)(x)
    for name in ("pool", "fc"):
        torch.testing.assert_close(b[name], a[name], rtol=1e-3, atol=1e-4)


def test_folding_falls_back_when_a_tap_would_be_lost_or_bypassed():
    resnet = _with_bn_stats(build_with_weights(parse_spec("resnet50").entry, "random")[0])
    assert fold_batchnorm(resnet, ["bn1"]) is resnet  # a tapped batch norm would be folded away
    mobilenet = _with_bn_stats(build_with_weights(parse_spec("mobilenet_v2").entry, "random")[0])
    assert fold_batchnorm(mobilenet, ["classifier"]) is mobilenet  # fx traces into it: its pre-hook would not fire
    assert fold_batchnorm(mobilenet, ["classifier.1"]) is not mobilenet
    training = _with_bn_stats(build_with_weights(parse_spec("resnet50").entry, "random")[0]).train()
    assert fold_batchnorm(training, ["fc"]) is training


def test_untraceable_models_are_used_as_they_are():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                return self.bn(self.conv(x))
            return self.conv(x)

    model = Branchy().eval()
    assert fold_batchnorm(model, ["conv"]) is model
