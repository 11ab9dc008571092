"""Adaptive polyphase sampling (APS; Chaman & Dokmanić 2021, "Truly Shift-Invariant Convolutional Neural Networks"):
every subsampling by 2 keeps the polyphase component with the largest l2 norm instead of always the even one, and every
convolution pads circularly. A circular shift of the input then only permutes which component wins and rolls the
feature maps, so the globally pooled features are exactly invariant to circular shifts (to float rounding).

Built from the paper and the authors' ImageNet code (github.com/achaman2/truly_shift_invariant_cnns,
models/aps_models/) with their module names, so their checkpoints load with strict=True: convolutions that pad are
`Sequential(circular pad, Conv2d)` (`conv1.1.weight`), conv1 runs at stride 1 followed by APS, the stem's max-pool
is `maxpool.{0: APS, 1: circular pad, 2: MaxPool2d(2, 1), 3: APS}`, a strided block subsamples with `aps_down` after
its 3x3 convolution (ResNet-50) or after conv1 (ResNet-18), and its shortcut `downsample.{0: APS, 1: conv, 2: bn}`
takes the same component. `NAME_apsK` puts a K x K binomial blur (circular padding) before each APS (`filt`
buffers, as the anti-aliased networks); `NAME_aps` is plain APS (K = 1). The authors released training code, not
ImageNet weights: load a checkpoint with `--weights PATH` or `NAME_aps@PATH`. `mobilenet_v2_aps` applies the same
recipe to torchvision's MobileNetV2 (the authors built ResNets only), with `mobilenet_v2_aa`'s module paths.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from shiftlens.errors import ShiftlensError
from shiftlens.models.antialiased import subsample_after_depthwise
from shiftlens.models.blurpool import binomial_filter

FILTER_SIZES = (1, 2, 3, 4, 5)  # the authors' resnet18_aps1 .. resnet18_aps5


class CircularPad(nn.Module):
    """Wrap-around padding (left, right, top, bottom), so that a convolution commutes with circular shifts."""

    def __init__(self, padding: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.padding, mode="circular")


class ApsPool(nn.Module):
    """Optional binomial blur (circular padding), then subsampling by 2 that keeps the polyphase component of largest
    l2 norm. Components in the authors' order: (even rows, even columns), (odd, even), (even, odd), (odd, odd)."""

    def __init__(self, channels: int, filter_size: int = 1) -> None:
        super().__init__()
        if filter_size not in range(1, 8):
            raise ValueError(f"filter_size must be 1..7, got {filter_size}")
        self.filter_size = filter_size
        lo, hi = (filter_size - 1) // 2, filter_size // 2
        self.pad = (lo, hi, lo, hi)
        if filter_size > 1:
            self.register_buffer("filt", binomial_filter(filter_size)[None, None].repeat(channels, 1, 1, 1))

    def select(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The subsampled map and the chosen component per image; `indices` imposes a choice (the shortcut takes
        the main branch's)."""
        if self.filter_size > 1:
            x = F.conv2d(F.pad(x, self.pad, mode="circular"), self.filt, groups=x.shape[1])
        x = F.pad(x, (0, x.shape[3] % 2, 0, x.shape[2] % 2), mode="circular")  # odd sides wrap to even
        parts = torch.stack([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], 1)
        if indices is None:
            indices = parts.float().square().sum(dim=(2, 3, 4)).argmax(dim=1)
        batch = torch.arange(x.shape[0], device=x.device)
        return parts[batch, indices], indices

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.select(x)[0]


def _conv(cin: int, cout: int, k: int) -> nn.Sequential:
    """A k x k convolution at stride 1 after circular padding (the authors' conv3x3 / conv7x7)."""
    p = (k - 1) // 2
    return nn.Sequential(CircularPad((p, p, p, p)), nn.Conv2d(cin, cout, k, stride=1, padding=0, bias=False))


def _shortcut(inplanes: int, out: int, stride: int, filter_size: int) -> nn.Sequential:
    aps = [ApsPool(inplanes, filter_size)] if stride > 1 else []
    return nn.Sequential(*aps, nn.Conv2d(inplanes, out, 1, bias=False), nn.BatchNorm2d(out))


def _apply_shortcut(downsample: nn.Sequential, x: torch.Tensor, indices: torch.Tensor | None) -> torch.Tensor:
    first = downsample[0]
    if isinstance(first, ApsPool):
        x = first.select(x, indices)[0]
        return downsample[2](downsample[1](x))
    return downsample[1](first(x))


class ApsBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Sequential | None = None,
                 filter_size: int = 1) -> None:
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv(width, width, 3)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        if stride > 1:
            self.aps_down = ApsPool(width, filter_size)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        indices = None
        if self.stride > 1:
            out, indices = self.aps_down.select(out)
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else _apply_shortcut(self.downsample, x, indices)
        return self.relu(out + identity)


class ApsBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Sequential | None = None,
                 filter_size: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv(inplanes, planes, 3)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        if stride > 1:
            self.aps_down = ApsPool(planes, filter_size)
        self.conv2 = _conv(planes, planes, 3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        indices = None
        if self.stride > 1:
            out, indices = self.aps_down.select(out)
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else _apply_shortcut(self.downsample, x, indices)
        return self.relu(out + identity)


class ApsResNet(nn.Module):
    """ResNet with APS at every subsampling and circular padding everywhere; total stride 32 (stem APS, max-pool
    APS, then layer2-4)."""

    def __init__(self, block: type[ApsBottleneck] | type[ApsBasicBlock], layers: list[int], filter_size: int = 1,
                 num_classes: int = 1000) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = _conv(3, 64, 7)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Sequential(ApsPool(64, filter_size), CircularPad((0, 1, 0, 1)), nn.MaxPool2d(2, stride=1),
                                     ApsPool(64, filter_size))
        self.layer1 = self._stage(block, 64, layers[0], 1, filter_size)
        self.layer2 = self._stage(block, 128, layers[1], 2, filter_size)
        self.layer3 = self._stage(block, 256, layers[2], 2, filter_size)
        self.layer4 = self._stage(block, 512, layers[3], 2, filter_size)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _stage(self, block, planes: int, blocks: int, stride: int, filter_size: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = _shortcut(self.inplanes, planes * block.expansion, stride, filter_size)
        layers = [block(self.inplanes, planes, stride, downsample, filter_size)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, filter_size=filter_size) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18_aps(filter_size: int = 1) -> nn.Module:
    return ApsResNet(ApsBasicBlock, [2, 2, 2, 2], filter_size)


def resnet50_aps(filter_size: int = 1) -> nn.Module:
    return ApsResNet(ApsBottleneck, [3, 4, 6, 3], filter_size)


def circular_padding(model: nn.Module) -> nn.Module:
    """Every padded convolution of `model` pads with wrap-around (Conv2d's own `padding_mode`, so keys stay put)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and any(p > 0 for p in m.padding):
            m.padding_mode = "circular"
    return model


def mobilenet_v2_aps(filter_size: int = 1) -> nn.Module:
    """torchvision's MobileNetV2 with circular padding, the stem's and every strided depthwise convolution at stride 1
    followed (after its activation) by APS, as `mobilenet_v2_aa` places BlurPool, so the module paths are the
    anti-aliased ones (`features.N.conv.2` is the APS of a strided block; the stem's is `features.0.3`) and the
    classifier is one Linear. The authors built APS for ResNets only; this follows their recipe."""
    import torchvision.models as tvm

    model = circular_padding(tvm.mobilenet_v2(weights=None))
    stem = model.features[0]
    stem[0].stride = (1, 1)
    model.features[0] = nn.Sequential(*stem, ApsPool(stem[0].out_channels, filter_size))
    return subsample_after_depthwise(model, lambda c: ApsPool(c, filter_size))


BUILDERS = {"resnet18": resnet18_aps, "resnet50": resnet50_aps, "mobilenet_v2": mobilenet_v2_aps}


def no_imagenet(name: str):
    """The `imagenet` loader of an APS network: none were released, so it says what to give instead."""

    def load():
        raise ShiftlensError(f"no ImageNet weights were released for {name} (the authors published training code "
                             f"only): use --weights random, or a checkpoint trained with their code: --weights PATH "
                             f"or {name}@PATH")

    return load


__all__ = ["ApsPool", "ApsResNet", "BUILDERS", "CircularPad", "FILTER_SIZES", "circular_padding",
           "mobilenet_v2_aps", "no_imagenet", "resnet18_aps", "resnet50_aps", "partial"]
