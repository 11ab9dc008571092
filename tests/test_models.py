"""Built-in models, their layers, the class layer and the weights handling (local files, random, offline)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from shiftlens.analyses.base import Part
from shiftlens.errors import ShiftlensError
from shiftlens.models import UNTRAINED, build_with_weights, parse_spec
from shiftlens.models.class_layer import ARRAY_KEY, ClassProbMap, class_prob_table
from shiftlens.models.imagenet_classes import CATEGORY_CLASSES, class_indices, class_names, require_class_indices
from shiftlens.models.registry import REGISTRY
from shiftlens.models.summary import feature_sizes

torch.set_num_threads(min(2, torch.get_num_threads()))

BUILTINS = ["efficientnet_lite0", "alexnet", "resnet50", "mobilenet_v2", "alexnet_aa", "resnet50_aa", "mobilenet_v2_aa"]
PAPER_CATEGORIES = ["car", "airplane", "boat", "dog", "bird", "zebra", "orange", "banana", "clock", "laptop"]


# --- layers ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_lists_described_layers_with_pool_and_class(name):
    entry = parse_spec(name).entry
    assert {"pool", "class"} <= set(entry.layers)
    assert all(spec.description and "\n" not in spec.description for spec in entry.layers.values())
    assert entry.logits_layer in entry.layers and entry.layers["class"].post == "softmax"


def test_layer_feature_sizes_on_the_meta_device():
    assert feature_sizes(REGISTRY["alexnet"]) == {"pool": 9216, "fc6": 4096, "fc6relu": 4096, "fc7": 4096,
                                                   "fc7relu": 4096, "fc8": 1000, "class": 1000}
    assert feature_sizes(REGISTRY["resnet50_aa"])["pool"] == 2048
    assert feature_sizes(REGISTRY["mobilenet_v2_aa"])["pool"] == 1280


def test_alexnet_relu_variants_are_the_rectified_pre_activations():
    from shiftlens.models import Taps

    torch.manual_seed(0)
    entry = parse_spec("alexnet").entry
    model = entry.build().eval()
    taps = Taps(model, [entry.layer(n) for n in ("fc6", "fc6relu", "fc7", "fc7relu", "fc8", "class")])
    with torch.no_grad():
        out = taps(torch.rand(1, 3, 224, 224))
    assert (out["fc6"] < 0).any(), "pre-ReLU fc6 must keep its negative entries"
    torch.testing.assert_close(out["fc6relu"], out["fc6"].clamp_min(0))
    torch.testing.assert_close(out["fc7relu"], out["fc7"].clamp_min(0))
    torch.testing.assert_close(out["class"], out["fc8"].softmax(1))


def test_unknown_model_and_layer_name_the_choices():
    with pytest.raises(ShiftlensError, match="alexnet_aa"):
        parse_spec("alexnet_bb")
    with pytest.raises(ShiftlensError, match="valid layers are .*fc6relu"):
        parse_spec("alexnet:fc9")


# --- class layer -----------------------------------------------------------------------------------------------


def test_category_table_covers_the_paper_and_uses_real_class_names():
    names = class_names()
    assert len(names) == 1000
    dog = class_indices("dog")
    assert dog == list(range(151, 269)) and len(dog) == 118
    for category in PAPER_CATEGORIES:
        assert class_indices(category), category
    assert names[class_indices("zebra")[0]] == "zebra" and names[class_indices("laptop")[0]] == "laptop"
    assert all(0 <= i < 1000 for idx in CATEGORY_CLASSES.values() for i in idx)
    assert class_indices("Aeroplane") == class_indices("airplane")


def test_manifest_classes_win_and_unmapped_patches_say_so():
    assert class_indices("dog", {"imagenet_classes": [3, 1]}) == [1, 3]
    assert class_indices("anything", {"imagenet_classes": ["tabby", "Egyptian cat"]}) == [281, 285]
    assert class_indices("tripod") is None
    with pytest.raises(ShiftlensError, match="patch tri_01 .*'tripod'.*imagenet_classes"):
        require_class_indices("tripod", {}, "tri_01")
    with pytest.raises(ShiftlensError, match="'no such class'"):
        class_indices("dog", {"imagenet_classes": ["no such class"]}, "patch x")


def test_bundled_sample_patches_all_have_a_mapping():
    from shiftlens.patches import SAMPLE_DIR
    from shiftlens.patches.folder import load_folder

    if not (SAMPLE_DIR / "manifest.json").is_file():
        pytest.skip("no bundled sample yet")
    for patch in load_folder(SAMPLE_DIR, source="sample"):
        assert require_class_indices(patch.category, patch.provenance, patch.id)


def test_class_map_sums_the_class_set_per_position():
    cmap = ClassProbMap(2, [0, 2], torch.device("cpu"))
    probs = torch.zeros(4, 1000)
    probs[:, 0], probs[:, 2] = 0.25, torch.tensor([0.0, 0.1, 0.2, 0.3])
    cmap.update(torch.tensor([3, 0]), probs[[3, 0]])
    cmap.update(torch.tensor([1, 2]), probs[[1, 2]])
    m = cmap.finish()[ARRAY_KEY]
    assert m.dtype == np.float32 and m.shape == (2, 2)
    np.testing.assert_allclose(m.ravel(), [0.25, 0.35, 0.45, 0.55], rtol=1e-6)
    with pytest.raises(ShiftlensError, match="1000 ImageNet class scores"):
        cmap.update(torch.tensor([0]), torch.zeros(1, 10))


def test_class_prob_table_only_when_maps_exist():
    part = Part("alexnet", UNTRAINED, 75, "dog_01", "dog", 2, {ARRAY_KEY: np.array([[0.1, 0.2], [0.3, 0.4]], np.float32)})
    df = class_prob_table([part, Part("alexnet", UNTRAINED, 75, "x", "x", 2, {})])
    assert list(df.columns) == ["model", "layer", "weights", "patch_size", "patch", "category", "mean_prob",
                                "min_prob", "max_prob"]
    assert len(df) == 1 and df.mean_prob[0] == pytest.approx(0.25) and df.max_prob[0] == pytest.approx(0.4)
    assert class_prob_table([]) is None


def test_class_layer_notes_unmapped_patches_and_skips_only_their_class_map(tiny_config, tmp_path):
    from shiftlens import api
    from shiftlens.config import with_overrides
    from shiftlens.store import ResultsDir
    from tests.conftest import write_patch_dir

    folder = write_patch_dir(tmp_path / "odd", n=2, categories=("gizmo", "dog"))
    cfg = with_overrides(tiny_config, models=["mobilenet_v2:fc,class"], patches=f"folder:{folder}", sizes=[160])
    plan = api.plan(cfg)
    assert len(plan.notes) == 1 and "gizmo_00" in plan.notes[0] and "no ImageNet class mapping" in plan.notes[0]
    logged = []
    result = api.run(cfg, log=logged.append)
    assert logged == plan.notes and result.info["notes"] == plan.notes
    parts = {p.patch_id: p for p in ResultsDir(result.out).parts()}
    assert parts["gizmo_00"].get("class", "class", "prob") is None
    assert parts["gizmo_00"].get("similarity", "fc", "maps") is not None
    assert parts["dog_01"].get("class", "class", "prob") is not None
    assert list(result.tables["class_prob"].patch) == ["dog_01"]


def test_run_stores_the_class_map_instead_of_similarity(tiny_config):
    from shiftlens import api
    from shiftlens.config import with_overrides
    from shiftlens.store import ResultsDir

    cfg = with_overrides(tiny_config, models=["mobilenet_v2_aa:fc,class"], sizes=[160], stride=32, max_patches=1)
    result = api.run(cfg)
    part = ResultsDir(result.out).parts()[0]
    assert part.get("class", "class", "prob").shape == (part.n, part.n)
    assert part.layers("similarity") == ["fc"]
    df = pd.read_csv(result.out / "tables" / "class_prob.csv")
    assert df.loc[0, "category"] == "cat" and df.loc[0, "weights"] == UNTRAINED
    assert 0 < df.loc[0, "min_prob"] <= df.loc[0, "max_prob"] < 1


# --- weights ---------------------------------------------------------------------------------------------------


def _tiny_state(seed: int) -> dict:
    torch.manual_seed(seed)
    return parse_spec("mobilenet_v2_aa").entry.build().state_dict()


@pytest.mark.parametrize("form", ["plain", "wrapped", "module_prefix"])
def test_local_checkpoints_load_in_every_form(tmp_path, form):
    state = _tiny_state(1)
    saved = {"plain": state, "wrapped": {"state_dict": state, "epoch": 3},
             "module_prefix": {f"module.{k}": v for k, v in state.items()}}[form]
    path = tmp_path / "ckpt.pth"
    torch.save(saved, path)
    model, prov = build_with_weights(parse_spec("mobilenet_v2_aa").entry, str(path))
    assert torch.equal(model.state_dict()["classifier.0.weight"], state["classifier.0.weight"])
    assert prov["source"] == "file" and prov["file"] == str(path) and len(prov["sha256"]) == 64
    assert prov["untrained"] is False


def test_bad_checkpoints_are_one_line_errors(tmp_path):
    entry = parse_spec("mobilenet_v2_aa").entry
    with pytest.raises(ShiftlensError, match="does not exist"):
        build_with_weights(entry, str(tmp_path / "missing.pth"))
    torch.save(parse_spec("mobilenet_v2").entry.build().state_dict(), tmp_path / "plain_mnv2.pth")
    with pytest.raises(ShiftlensError, match="do not fit this model") as err:
        build_with_weights(entry, str(tmp_path / "plain_mnv2.pth"))
    assert "\n" not in str(err.value)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ShiftlensError, match="cannot be loaded safely"):
        build_with_weights(entry, str(tmp_path / "junk.pth"))


def test_random_weights_are_seeded_and_marked_untrained():
    entry = parse_spec("mobilenet_v2_aa").entry
    (a, prov), (b, _), (c, _) = (build_with_weights(entry, "random", s) for s in (0, 0, 1))
    assert prov == {"source": "random", "seed": 0, "untrained": True, "label": UNTRAINED}
    key = "classifier.0.weight"
    assert torch.equal(a.state_dict()[key], b.state_dict()[key]) and not torch.equal(a.state_dict()[key], c.state_dict()[key])


@pytest.fixture
def empty_torch_hub(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache and a network that refuses every request."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))

    def refuse(*args, **kwargs):
        raise URLError("no network in this test")

    monkeypatch.setattr(torch.hub, "urlopen", refuse)
    return hub / "checkpoints"


@pytest.mark.parametrize("spec, file", [
    ("alexnet", "alexnet-owt-7be5be79.pth"),
    ("resnet50_aa", "resnet50_lpf5-9953c9ad.pth"),
    ("mobilenet_v2_aa3", "mobilenet_v2_lpf3-23b2e2ee.pth"),
    ("torchvision:squeezenet1_1:classifier.1", "squeezenet1_1-b8a52dc0.pth"),
])
def test_offline_imagenet_names_the_file_and_the_folder(empty_torch_hub, spec, file):
    with pytest.raises(ShiftlensError) as err:
        build_with_weights(parse_spec(spec).entry, "imagenet")
    message = str(err.value)
    assert file in message and f"{empty_torch_hub}/" in message and "--weights random" in message
    assert "\n" not in message


def test_cached_imagenet_file_is_used_with_its_provenance(empty_torch_hub):
    state = _tiny_state(2)
    empty_torch_hub.mkdir(parents=True)
    torch.save({"state_dict": state}, empty_torch_hub / "mobilenet_v2_lpf5-ab8fe968.pth")
    model, prov = build_with_weights(parse_spec("mobilenet_v2_aa").entry, "imagenet")
    assert torch.equal(model.state_dict()["classifier.0.bias"], state["classifier.0.bias"])
    assert prov["source"] == "imagenet" and prov["file"] == "mobilenet_v2_lpf5-ab8fe968.pth"
    assert len(prov["sha256"]) == 64 and prov["untrained"] is False


def test_corrupt_cached_imagenet_file_says_delete_it(empty_torch_hub):
    empty_torch_hub.mkdir(parents=True)
    (empty_torch_hub / "mobilenet_v2_lpf5-ab8fe968.pth").write_bytes(b"truncated")
    with pytest.raises(ShiftlensError, match="cannot be loaded .*delete it"):
        build_with_weights(parse_spec("mobilenet_v2_aa").entry, "imagenet")


# --- CLI -------------------------------------------------------------------------------------------------------


def test_models_command_lists_models_layers_sizes_and_weights():
    from shiftlens.cli import app

    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in ("alexnet_aa", "resnet50_aa", "mobilenet_v2_aa", "fc6relu", "9216", "alexnet_lpf5-4fa3706a.pth",
                 "torchvision:NAME:MODULE", "timm:NAME"):
        assert text in result.output, text
    assert "resnet50_aa3 " not in result.output  # filter-size variants are summarised, not listed


def test_run_json_records_the_imagenet_file_and_its_sha256(empty_torch_hub, tiny_config):
    from shiftlens import api
    from shiftlens.config import with_overrides
    from shiftlens.models.weights import sha256

    empty_torch_hub.mkdir(parents=True)
    cached = empty_torch_hub / "mobilenet_v2_lpf5-ab8fe968.pth"
    torch.save({"state_dict": _tiny_state(4)}, cached)
    cfg = with_overrides(tiny_config, models=["mobilenet_v2_aa:fc"], weights="imagenet", sizes=[160], stride=64,
                         max_patches=1)
    result = api.run(cfg)
    prov = json.loads((result.out / "run.json").read_text())["models"]["mobilenet_v2_aa"]["weights"]
    assert prov["file"] == cached.name and prov["sha256"] == sha256(cached) and prov["untrained"] is False
    assert "antialiased-cnns" in prov["origin"]
