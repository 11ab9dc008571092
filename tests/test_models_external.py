"""Any network: torchvision and timm specs by module path, and any nn.Module through `custom()`."""

from __future__ import annotations

import json
import sys
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
    assert entry.layer("classifier.1").post == "none" and entry.layer("class").post == "softmax"


def test_bad_torchvision_specs_are_one_line_errors():
    with pytest.raises(ShiftlensError, match="no module 'classifer.1': did you mean classifier.1") as err:
        parse_spec("torchvision:squeezenet1_1:classifer.1")
    assert "module paths include features, classifier" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ShiftlensError, match="give the layers as module paths"):
        parse_spec("torchvision:squeezenet1_1")
    with pytest.raises(ShiftlensError, match="not a torchvision classification model: did you mean resnet50"):
        parse_spec("torchvision:resnet51:fc")


def test_timm_spec_uses_timms_data_config():
    pytest.importorskip("timm")
    spec = parse_spec("timm:vit_tiny_patch16_224:blocks.11.mlp.fc2,head")
    assert spec.key == "timm-vit_tiny_patch16_224"
    assert spec.entry.normalisation.mean == (0.5, 0.5, 0.5) and spec.entry.normalisation.std == (0.5, 0.5, 0.5)
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
    args = ["run", "quick", "--models", "timm:resnet10t:global_pool,class;torchvision:squeezenet1_1:classifier.1",
            "--patches", f"folder:{one_patch}", "--sizes", "125", "--stride", "33", "--max-patches", "1",
            "--weights", "random", "--device", "cpu", "--analyses", "similarity", "--no-site", "--out", str(out)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    info = json.loads((out / "run.json").read_text())
    assert set(info["models"]) == {"timm-resnet10t", "torchvision-squeezenet1_1"}
    assert all(m["weights"]["untrained"] and m["weights"]["label"] == UNTRAINED for m in info["models"].values())
    sim = pd.read_csv(out / "tables" / "similarity.csv")
    assert set(zip(sim.model, sim.layer)) == {("timm-resnet10t", "global_pool"), ("torchvision-squeezenet1_1", "classifier.1")}
    assert (sim.weights == UNTRAINED).all()
    parts = {p.model: p for p in ResultsDir(out).parts()}
    assert parts["timm-resnet10t"].get("class", "class", "prob").shape == (4, 4)
    classes = pd.read_csv(out / "tables" / "class_prob.csv")
    assert list(classes.model) == ["timm-resnet10t"] and classes.category[0] == "dog"


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
    spec = custom("tinynet", net, layers=["body.0", "head"], mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert spec.layers == ["body.0", "head"] and spec.entry.normalisation.std == (0.25, 0.25, 0.25)
    cfg = RunConfig(models=["tinynet"], patches=f"folder:{one_patch}", sizes=[125], stride=50, weights="imagenet",
                    out=str(tmp_path / "out"), site=False, analyses=["similarity"], device="cpu")
    result = api.run(cfg)
    assert result.info["models"]["tinynet"]["weights"] == {"source": "given module", "untrained": False, "label": "given"}
    assert set(result.tables["similarity"].layer) == {"body.0", "head"}

    model, prov = build_with_weights(spec.entry, "random", 3)
    assert prov["untrained"] and model is not net and not torch.equal(model.head.weight, net.head.weight)
    with pytest.raises(ShiftlensError, match="custom model 'bad' has no module 'tail'"):
        custom("bad", TinyNet(), layers=["tail"])
    with pytest.raises(ShiftlensError, match="3 values each"):
        custom("bad", TinyNet(), layers=["head"], mean=(0.5,), std=(1.0,))
