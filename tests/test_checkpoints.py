"""Checkpoints side by side: a spec may carry its own weights (`NAME@random`, `NAME@PATH`, `NAME@imagenet`), so two
checkpoints of one architecture run in one go and stay apart in tables, files and the site."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import ConstantNet
from shiftlens import api
from shiftlens.config import RunConfig
from shiftlens.errors import ShiftlensError
from shiftlens.models import parse_spec, split_specs


def test_specs_with_weights_split_and_parse():
    assert split_specs("alexnet@random alexnet:fc6,fc7@w/flip.pth resnet50") == [
        "alexnet@random", "alexnet:fc6,fc7@w/flip.pth", "resnet50"]
    spec = parse_spec("alexnet:fc6,fc7@w/flip.pth")
    assert spec.layers == ["fc6", "fc7"] and spec.weights == "w/flip.pth" and spec.key == "alexnet@w/flip.pth"
    assert parse_spec("alexnet").key == "alexnet" and parse_spec("alexnet").weights is None
    for bad in ("alexnet@a@b", "alexnet@"):
        with pytest.raises(ShiftlensError, match="one '@'"):
            parse_spec(bad)


def test_two_checkpoints_of_one_architecture_run_apart(constant_model, patch_dir, tmp_path):
    ckpt = tmp_path / "other.pth"
    torch.manual_seed(5)
    torch.save(ConstantNet().state_dict(), ckpt)
    cfg = RunConfig(models=[f"{constant_model}@random", f"{constant_model}@{ckpt}"], patches=f"folder:{patch_dir}",
                    sizes=[40], stride=8, canvas=64, weights="imagenet", out=str(tmp_path / "out"), batch_size=8,
                    site=False, analyses=["similarity"])
    result = api.run(cfg)
    sim = result.tables["similarity"]
    keys = [f"{constant_model}@random", f"{constant_model}@{ckpt}"]
    assert list(dict.fromkeys(sim.model)) == keys
    assert set(sim[sim.model == keys[0]].weights) == {"random (untrained)"}
    assert set(sim[sim.model == keys[1]].weights) == {"file:other.pth"}
    spatial = sim[sim.layer == "spatial"].set_index(["model", "anchor"])["mean"]
    assert not spatial[keys[0]].equals(spatial[keys[1]])  # different weights, different maps
    assert result.computed == 2 * 2 and len(list((tmp_path / "out" / "parts").iterdir())) == 2
    from shiftlens.site import build

    site = build(cfg.out)
    index = (site / "data" / "index.js").read_text()
    assert all(json.dumps(k) in index for k in keys)


def test_a_checkpoint_that_does_not_fit_its_spec_is_refused_before_any_work(constant_model, patch_dir, tmp_path):
    ckpt = tmp_path / "const.pth"
    torch.save(ConstantNet().state_dict(), ckpt)
    cfg = RunConfig(models=[f"{constant_model}@{ckpt}", f"efficientnet_lite0:pool@{ckpt}"],
                    patches=f"folder:{patch_dir}", sizes=[75], stride=32, weights="random",
                    out=str(tmp_path / "out"), site=False, analyses=["similarity"])
    with pytest.raises(ShiftlensError, match="do not fit model efficientnet_lite0"):
        api.run(cfg)
    assert not (tmp_path / "out").exists()
