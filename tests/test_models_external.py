"""Any network: torchvision and timm specs by module path, any nn.Module through `custom()`, and the probe that
measures their total stride."""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from shiftlens.errors import ShiftlensError
from shiftlens.models import UNTRAINED, build_with_weights, custom, parse_spec
from shiftlens.models.shapes import build_for_shapes
from shiftlens.models.stride import SIZES, built_at_size, net_stride_from_shapes, probe_net_stride
from shiftlens.store import ResultsDir

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def one_patch(tmp_path) -> Path:
    """A folder with one RGBA png: a dog-category object with an irregular mask."""
    folder = tmp_path / "patches"
    folder.mkdir()
    yy, xx = np.mgrid[:50, :70]
    rgba = np.zeros((50, 70, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = xx * 3, yy * 5, 90
    rgba[..., 3] = np.where((yy - 25) ** 2 / 20**2 + (xx - 35) ** 2 / 30**2 < 1, 255, 0)
    Image.fromarray(rgba, "RGBA").save(folder / "dog_01.png")
    return folder


def test_torchvision_spec_takes_module_paths_and_the_weights_preprocessing():
    spec = parse_spec("torchvision:squeezenet1_1:classifier.1,features.12")
    assert spec.key == "torchvision-squeezenet1_1" and spec.layers == ["classifier.1", "features.12"]
    entry = spec.entry
    assert entry.normalisation.mean == (0.485, 0.456, 0.406) and entry.normalisation.std == (0.229, 0.224, 0.225)
    assert "SqueezeNet1_1_Weights.IMAGENET1K_V1" in entry.weights_source
    assert entry.layer("classifier.1").post == "none" and set(entry.layers) == {"logits", "classifier.1", "features.12"}
    assert entry.net_stride == 16 and entry.net_stride_note == ""  # four stride-2 stages before its last conv


def test_bad_torchvision_specs_are_one_line_errors():
    with pytest.raises(ShiftlensError, match="no module 'classifer.1': did you mean classifier.1") as err:
        parse_spec("torchvision:squeezenet1_1:classifer.1")
    assert "module paths include features, classifier" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ShiftlensError, match="give the layers as module paths"):
        parse_spec("torchvision:squeezenet1_1")
    with pytest.raises(ShiftlensError, match="not a torchvision classification model: did you mean resnet50"):
        parse_spec("torchvision:resnet51:fc")


def test_a_torchvision_net_whose_constructor_reads_tensors_parses_and_checks_checkpoints():
    """RegNet's constructor computes its widths with tensors, which the meta device cannot read: its shapes come
    from a CPU build instead of a traceback."""
    import torchvision.models as tvm

    from shiftlens.models.weights import check_fits

    entry = parse_spec("torchvision:regnet_x_400mf:trunk_output").entry
    assert entry.net_stride == 32 and set(entry.layers) == {"logits", "trunk_output"}
    check_fits(entry, tvm.regnet_x_400mf().state_dict(), "regnet.pth")
    with pytest.raises(ShiftlensError, match="do not fit model torchvision-regnet_x_400mf"):
        check_fits(entry, tvm.resnet18().state_dict(), "resnet18.pth")


def test_timm_spec_uses_timms_data_config():
    pytest.importorskip("timm")
    spec = parse_spec("timm:vit_tiny_patch16_224:blocks.11.mlp.fc2,head")
    assert spec.key == "timm-vit_tiny_patch16_224"
    assert spec.entry.normalisation.mean == (0.5, 0.5, 0.5) and spec.entry.normalisation.std == (0.5, 0.5, 0.5)
    assert spec.entry.net_stride == 16  # its patch embedding, measured at sizes built for it (img_size)
    with pytest.raises(ShiftlensError, match="timm:resnet10t has no module 'global_poo'"):
        parse_spec("timm:resnet10t:global_poo")
    with pytest.raises(ShiftlensError, match="is not a timm model: did you mean resnet10t"):
        parse_spec("timm:resnet10x:fc")


def test_timm_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    with pytest.raises(ShiftlensError, match=r"pip install 'shiftlens\[timm\]'"):
        parse_spec("timm:resnet10t:fc")


def test_timm_offline_imagenet_names_the_repo_and_the_hub_cache(tmp_path, monkeypatch):
    pytest.importorskip("timm")
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)  # nothing cached, no network: fails at once
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hf"))
    entry = parse_spec("timm:resnet10t:fc").entry
    with pytest.raises(ShiftlensError) as err:
        build_with_weights(entry, "imagenet")
    message = str(err.value)
    assert "timm/resnet10t.c3_in1k" in message and f"{tmp_path / 'hf'}/" in message and "\n" not in message

    import timm

    original = timm.create_model

    def refuse(name, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("connection refused")
        return original(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", refuse)
    with pytest.raises(ShiftlensError, match=r"timm:resnet10t cannot be loaded \(OSError\): download the Hugging Face"):
        build_with_weights(entry, "imagenet")


def test_torchvision_and_timm_models_run_end_to_end(one_patch, tmp_path):
    pytest.importorskip("timm")
    from shiftlens.cli import app

    out = tmp_path / "out"
    args = ["run", "quick", "--models", "timm:resnet10t:global_pool;torchvision:squeezenet1_1:classifier.1",
            "--patches", f"folder:{one_patch}", "--sizes", "125", "--stride", "33", "--max-patches", "1",
            "--weights", "random", "--device", "cpu", "--analyses", "similarity,class", "--no-site", "--out", str(out)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    info = json.loads((out / "run.json").read_text())
    assert set(info["models"]) == {"timm-resnet10t", "torchvision-squeezenet1_1"}
    assert all(m["weights"]["untrained"] and m["weights"]["label"] == UNTRAINED for m in info["models"].values())
    sim = pd.read_csv(out / "tables" / "similarity.csv")
    assert set(zip(sim.model, sim.layer)) == {("timm-resnet10t", "global_pool"), ("torchvision-squeezenet1_1", "classifier.1")}
    assert (sim.weights == UNTRAINED).all()
    parts = {p.model: p for p in ResultsDir(out).parts()}
    assert parts["timm-resnet10t"].get("class", "class", "prob").shape == (4, 4)  # from the logits tap
    classes = pd.read_csv(out / "tables" / "class_prob.csv")
    assert sorted(classes.model) == ["timm-resnet10t", "torchvision-squeezenet1_1"] and set(classes.category) == {"dog"}


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 7, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.head = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).flatten(1))


def test_custom_module_runs_through_the_api(one_patch, tmp_path):
    from shiftlens import api
    from shiftlens.config import RunConfig

    torch.manual_seed(0)
    net = TinyNet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    spec = custom("tinynet", net, layers=["body.0", "head"], mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert spec.layers == ["body.0", "head"] and spec.entry.normalisation.std == (0.25, 0.25, 0.25)
    assert spec.entry.net_stride == 4  # measured on the given module: its weights and mode are left as they were
    assert net.training and all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    cfg = RunConfig(models=["tinynet"], patches=f"folder:{one_patch}", sizes=[125], stride=50, weights="imagenet",
                    out=str(tmp_path / "out"), site=False, analyses=["similarity"], device="cpu")
    result = api.run(cfg)
    record = result.record.models["tinynet"]
    assert (record.weights.source, record.weights.untrained, record.weights.label) == ("given module", False, "given")
    assert record.net_stride == 4
    assert set(result.tables["similarity"].layer) == {"body.0", "head"}

    model, prov = build_with_weights(spec.entry, "random", 3)
    assert prov["untrained"] and model is not net and not torch.equal(model.head.weight, net.head.weight)
    with pytest.raises(ShiftlensError, match="custom model 'bad' has no module 'tail'"):
        custom("bad", TinyNet(), layers=["tail"])
    with pytest.raises(ShiftlensError, match="3 values each"):
        custom("bad", TinyNet(), layers=["head"], mean=(0.5,), std=(1.0,))


# --- the stride probe --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, stride", [("resnet18", 32), ("alexnet", 32), ("vgg11", 32), ("mobilenet_v3_small", 32),
                                          ("squeezenet1_1", 16), ("vit_b_16", 16), ("swin_t", 32), ("regnet_x_400mf", 32)])
def test_probe_measures_known_torchvision_strides(name, stride):
    """On shapes alone (no weights, no download): AlexNet's unpadded convs, a ViT rebuilt per input side, Swin's
    channels-last maps and windows, and a RegNet whose constructor needs real tensors."""
    import torchvision.models as tvm

    assert probe_net_stride(built_at_size(partial(tvm.get_model, name, weights=None), "image_size")).stride == stride


def test_probe_measures_a_timm_vit_and_refuses_tokens_merged_past_the_last_map():
    timm = pytest.importorskip("timm")
    vit = built_at_size(partial(timm.create_model, "vit_tiny_patch16_224", pretrained=False), "img_size")
    assert probe_net_stride(vit).stride == 16
    levit = probe_net_stride(built_at_size(partial(timm.create_model, "levit_128s", pretrained=False), "img_size"))
    assert levit.stride is None and "no whole stride" in levit.note  # its stride-64 token grid rounds up


def test_probe_says_why_when_a_network_refuses_other_sizes():
    import torchvision.models as tvm

    fixed = build_for_shapes(partial(tvm.vit_b_16, weights=None))  # position embedding for 224 px only
    probe = probe_net_stride(lambda size: fixed)
    assert probe.stride is None and f"refuses a {SIZES[1]} px input" in probe.note and "\n" not in probe.note


def _net(*layers: nn.Module) -> nn.Module:
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


@pytest.mark.parametrize("net, stride, why", [
    (_net(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, stride=8)), 32, ""),
    (_net(nn.Conv2d(3, 4, 11, stride=4), nn.MaxPool2d(3, 2), nn.MaxPool2d(3, 2), nn.MaxPool2d(3, 2)), 32, ""),
    (_net(nn.Conv2d(3, 4, 3, stride=3), nn.Conv2d(4, 4, 2, stride=16)), None, "no whole stride"),  # 48 px
    (_net(nn.Conv2d(3, 4, 2, stride=2), nn.Conv2d(4, 4, 64, stride=64)), None, "no whole stride"),  # 128 px
    (_net(nn.AdaptiveAvgPool2d(8)), None, "no feature map follows the input size"),
])
def test_probe_is_right_or_says_why(net, stride, why):
    probe = probe_net_stride(lambda size: net)
    assert probe.stride == stride and why in probe.note


def test_probe_reads_channels_last_maps_and_token_grids():
    def runs(*shapes_at):  # one {key: shape} per input side
        return [dict(zip([f"m{i}#0#0" for i in range(len(s))], s)) for s in zip(*shapes_at)]

    nhwc16 = [(1, x // 16, x // 16, 96) for x in SIZES]
    tokens8 = [(1, (x // 8) ** 2 + 1, 192) for x in SIZES]  # tokens on an 8 px grid plus a class token
    tokens32 = [(1, (x // 32) ** 2, 192) for x in SIZES]
    assert net_stride_from_shapes(runs(nhwc16)).stride == 16
    assert net_stride_from_shapes(runs(nhwc16, tokens8)).stride == 16
    merged = net_stride_from_shapes(runs(nhwc16, tokens32))
    assert merged.stride is None and "tokens on a 32 px grid, coarser" in merged.note
    odd = net_stride_from_shapes(runs(nhwc16, [(1, x // 16, x // 8, 96) for x in SIZES]))
    assert odd.stride is None and "unlike a square map" in odd.note
