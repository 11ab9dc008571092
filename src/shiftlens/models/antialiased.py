"""The anti-aliased networks of Zhang 2019 ("Making Convolutional Networks Shift-Invariant Again"), built from
torchvision's definitions by inserting BlurPool where each network strides, exactly as the released
antialiased-cnns checkpoints expect (their names and shapes, for every filter size 1..7).

`alexnet_aa`, `resnet50_aa`, `mobilenet_v2_aa` use the paper's Bin-5 filter; `NAME_aaK` (K = 1..7) picks another
filter size (K = 1 is plain subsampling). ImageNet weights were released for K = 2..5 (trained from scratch;
the package's fine-tuned K = 4 weights are not used).
"""

from __future__ import annotations

from functools import partial
from typing import Callable

from torch import nn

from shiftlens.errors import ShiftlensError
from shiftlens.models.blurpool import FILTER_SIZES, BlurPool

DEFAULT_FILTER_SIZE = 5
WEIGHTS_URL = "https://antialiased-cnns.s3.us-east-2.amazonaws.com/weights_v0.1/{name}.pth"
# File names (with their hash prefixes) of the released from-scratch weights, from the antialiased-cnns package.
WEIGHT_FILES = {
    ("alexnet", 2): "alexnet_lpf2-da8aca74", ("alexnet", 3): "alexnet_lpf3-f9bbc410",
    ("alexnet", 4): "alexnet_lpf4-0114fe25", ("alexnet", 5): "alexnet_lpf5-4fa3706a",
    ("resnet50", 2): "resnet50_lpf2-f0f7589d", ("resnet50", 3): "resnet50_lpf3-a4e868d2",
    ("resnet50", 4): "resnet50_lpf4-994b528f", ("resnet50", 5): "resnet50_lpf5-9953c9ad",
    ("mobilenet_v2", 2): "mobilenet_v2_lpf2-f4379012", ("mobilenet_v2", 3): "mobilenet_v2_lpf3-23b2e2ee",
    ("mobilenet_v2", 4): "mobilenet_v2_lpf4-2e0b9cb9", ("mobilenet_v2", 5): "mobilenet_v2_lpf5-ab8fe968",
}


def alexnet_aa(filter_size: int = DEFAULT_FILTER_SIZE) -> nn.Module:
    """AlexNet with conv1 at stride 2 + ReLU + BlurPool, and every max-pool at stride 1 + BlurPool."""
    import torchvision.models as tvm

    model = tvm.alexnet(weights=None)
    blur = partial(BlurPool, filter_size=filter_size)
    model.features = nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=2, padding=2), nn.ReLU(inplace=True), blur(64),
        nn.MaxPool2d(kernel_size=3, stride=1), blur(64),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=1), blur(192),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=1), blur(256),
    )
    return model


def resnet50_aa(filter_size: int = DEFAULT_FILTER_SIZE) -> nn.Module:
    """ResNet-50 with max-pool at stride 1 + BlurPool; each strided bottleneck runs conv2 at stride 1 and blurs
    before conv3 and before the 1x1 projection of its shortcut."""
    import torchvision.models as tvm

    model = tvm.resnet50(weights=None)
    model.maxpool = nn.Sequential(nn.MaxPool2d(kernel_size=2, stride=1), BlurPool(64, filter_size))
    for stage in (model.layer2, model.layer3, model.layer4):
        block = stage[0]
        block.conv2.stride = (1, 1)
        block.conv3 = nn.Sequential(BlurPool(block.conv3.in_channels, filter_size), block.conv3)
        proj, bn = block.downsample
        proj.stride = (1, 1)
        block.downsample = nn.Sequential(BlurPool(proj.in_channels, filter_size), proj, bn)
    return model


def subsample_after_depthwise(model: nn.Module, pool: Callable[[int], nn.Module]) -> nn.Module:
    """torchvision's MobileNetV2 with every strided depthwise conv at stride 1 followed (after its activation) by
    `pool(channels)`, at `features.N.conv.2`, and the classifier a single Linear (no dropout module), as in the
    released anti-aliased checkpoints; shared by `mobilenet_v2_aa` (BlurPool) and `mobilenet_v2_aps` (APS)."""
    for block in model.features:
        if getattr(block, "stride", 1) == 2:
            *head, dw, pw, bn = block.conv
            dw[0].stride = (1, 1)
            block.conv = nn.Sequential(*head, dw, pool(dw[0].out_channels), pw, bn)
    model.classifier = nn.Sequential(model.classifier[1])
    return model


def mobilenet_v2_aa(filter_size: int = DEFAULT_FILTER_SIZE) -> nn.Module:
    """MobileNetV2 whose strided depthwise convs run at stride 1 followed by BlurPool."""
    import torchvision.models as tvm

    return subsample_after_depthwise(tvm.mobilenet_v2(weights=None), lambda c: BlurPool(c, filter_size))


BUILDERS = {"alexnet": alexnet_aa, "resnet50": resnet50_aa, "mobilenet_v2": mobilenet_v2_aa}


def weights_url(base: str, filter_size: int) -> str | None:
    file = WEIGHT_FILES.get((base, filter_size))
    return WEIGHTS_URL.format(name=file) if file else None


def imagenet_loader(base: str, filter_size: int):
    """The released ImageNet weights through torch's cache (hash-checked); a clear error where none exist."""

    def load():
        from shiftlens.models.weights import download_state_dict

        url = weights_url(base, filter_size)
        if url is None:
            sizes = sorted(k for b, k in WEIGHT_FILES if b == base)
            raise ShiftlensError(
                f"no ImageNet weights were released for {base} with filter size {filter_size}: "
                f"use filter size {', '.join(map(str, sizes))}, --weights random or --weights PATH"
            )
        return download_state_dict(url, f"{base}_aa{filter_size}", check_hash=True)

    return load


__all__ = ["BUILDERS", "DEFAULT_FILTER_SIZE", "FILTER_SIZES", "alexnet_aa", "imagenet_loader", "mobilenet_v2_aa",
           "resnet50_aa", "subsample_after_depthwise", "weights_url"]
