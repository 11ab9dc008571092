"""Any network: `torchvision:NAME:LAYER[,LAYER]`, `timm:NAME:LAYER[,LAYER]` and `custom(name, module, layers)`.

A layer is a module path (`classifier.1`, `layer4.2.conv3`) and taps that module's output, before any activation
that follows it. `logits` (the model's output) and `class` (the softmax of the patch's ImageNet classes, for
1000-class models) are always available. Preprocessing comes from the library's own metadata: torchvision's
weights transforms, timm's data config.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from shiftlens.canvases import Normalisation
from shiftlens.errors import ShiftlensError
from shiftlens.models.registry import SPEC_RESOLVERS, LayerSpec, ModelEntry, ModelSpec, register

LOGITS = "logits"
CLASS = "class"


def _on_meta(build: Callable[[], nn.Module]) -> nn.Module:
    """The architecture without memory or init cost, to check module paths and output shapes."""
    with torch.device("meta"):
        return build()


def _paths_hint(model: nn.Module) -> str:
    names = [n for n, _ in model.named_modules() if n]
    top = [n for n in names if "." not in n]
    tail = [n for n in names[-8:] if n not in top]
    return ", ".join(top + tail)


def module_layers(model: nn.Module, paths: Sequence[str], where: str) -> dict[str, LayerSpec]:
    """LayerSpecs for module paths (plus `logits` and `class`); an unknown path names valid ones."""
    valid = {n for n, _ in model.named_modules() if n}
    layers = {
        LOGITS: LayerSpec(LOGITS, "", "the model's output (logits, pre-softmax)"),
        CLASS: LayerSpec(CLASS, "", "softmax probability summed over the patch's ImageNet classes", post="softmax"),
    }
    if not paths:
        raise ShiftlensError(f"{where}: give the layers as module paths, e.g. {where}:{_last_leaf(model)}; "
                             f"module paths include {_paths_hint(model)}")
    for path in paths:
        if path in layers:
            continue
        if path not in valid:
            close = difflib.get_close_matches(path, sorted(valid), n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ShiftlensError(f"{where} has no module {path!r}: {hint}module paths include {_paths_hint(model)}")
        layers[path] = LayerSpec(path, path, f"output of module {path} ({type(model.get_submodule(path)).__name__})")
    if CLASS in paths and next(model.parameters(), torch.empty(0, device="meta")).is_meta:
        out = model(torch.zeros(1, 3, 224, 224, device="meta"))
        if not (isinstance(out, torch.Tensor) and out.shape == (1, 1000)):
            raise ShiftlensError(f"{where}: the class layer needs a 1000-class ImageNet classifier; this model's output "
                                 f"is {tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
    return layers


def _last_leaf(model: nn.Module) -> str:
    leaves = [n for n, m in model.named_modules() if n and not list(m.children())]
    return leaves[-1] if leaves else "MODULE"


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def torchvision_spec(rest: str) -> tuple[ModelEntry, list[str]]:
    """`NAME:LAYER,...` for any torchvision classification model; weights = its DEFAULT ImageNet weights."""
    import torchvision.models as tvm

    name, _, layers_text = rest.partition(":")
    known = tvm.list_models(module=tvm)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=4)
        raise ShiftlensError(f"torchvision:{name} is not a torchvision classification model: "
                             f"{'did you mean ' + ', '.join(close) + '? ' if close else ''}see torchvision.models.list_models()")
    build = lambda: tvm.get_model(name, weights=None)  # noqa: E731
    weights = tvm.get_model_weights(name).DEFAULT
    transform = weights.transforms()
    paths = _split(layers_text)
    layers = module_layers(_on_meta(build), paths, f"torchvision:{name}")

    def imagenet():
        from shiftlens.models.weights import download_state_dict

        return download_state_dict(weights.url, f"torchvision:{name}")

    entry = ModelEntry(
        name=f"torchvision-{name}", description=f"{name} (torchvision)", build=build,
        normalisation=Normalisation(tuple(transform.mean), tuple(transform.std)), layers=layers,
        default_layers=tuple(paths), imagenet=imagenet,
        weights_source=f"torchvision {weights} (torchvision weights API, torch hub cache)", logits_layer=LOGITS,
        input_size=int(transform.crop_size[0]),
    )
    return entry, paths


def _timm():
    try:
        import timm
    except ImportError:
        raise ShiftlensError("timm: specs need the timm package: pip install 'shiftlens[timm]'") from None
    return timm


def timm_offline_message(name: str, cfg: dict, exc: Exception) -> str:
    """Where timm looks for the pretrained file, as one line."""
    if cfg.get("hf_hub_id"):
        from huggingface_hub.constants import HF_HUB_CACHE

        what = (f"download the Hugging Face repo {cfg['hf_hub_id']} (huggingface-cli download {cfg['hf_hub_id']}) "
                f"into the hub cache {HF_HUB_CACHE}/ and set HF_HUB_OFFLINE=1")
    elif cfg.get("url"):
        from shiftlens.models.weights import cache_dir

        what = f"download {Path(cfg['url'].split('?')[0]).name} from {cfg['url']} and place it in {cache_dir()}/"
    else:
        what = "timm has no pretrained file for it: give a local checkpoint"
    return (f"ImageNet weights for timm:{name} cannot be loaded ({exc.__class__.__name__}): {what}, "
            f"or use --weights PATH or --weights random")


def _timm_cached_file(cfg: dict) -> Path:
    if cfg.get("hf_hub_id"):
        from huggingface_hub import try_to_load_from_cache

        for file in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
            found = try_to_load_from_cache(cfg["hf_hub_id"], file)
            if isinstance(found, str):
                return Path(found)
        return Path(cfg["hf_hub_id"])
    if cfg.get("url"):
        from shiftlens.models.weights import cache_dir

        return cache_dir() / Path(cfg["url"].split("?")[0]).name
    return Path("timm-pretrained")


def timm_spec(rest: str) -> tuple[ModelEntry, list[str]]:
    """`NAME:LAYER,...` for any timm model; preprocessing from timm's data config; weights = timm pretrained."""
    timm = _timm()
    from timm.data import resolve_data_config

    name, _, layers_text = rest.partition(":")
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=4)
        raise ShiftlensError(f"timm:{name} is not a timm model: "
                             f"{'did you mean ' + ', '.join(close) + '? ' if close else ''}see timm.list_models('*pattern*')")
    build = lambda: timm.create_model(name, pretrained=False)  # noqa: E731
    meta = _on_meta(build)
    data = resolve_data_config({}, model=meta)
    pretrained_cfg = dict(getattr(meta, "pretrained_cfg", {}) or {})
    paths = _split(layers_text)
    layers = module_layers(meta, paths, f"timm:{name}")

    def imagenet():
        try:
            model = timm.create_model(name, pretrained=True)
        except ShiftlensError:
            raise
        except Exception as exc:  # hub, network and file errors come in many types
            raise ShiftlensError(timm_offline_message(name, pretrained_cfg, exc)) from None
        return model.state_dict(), _timm_cached_file(pretrained_cfg)

    source = pretrained_cfg.get("hf_hub_id") or pretrained_cfg.get("url") or "timm"
    entry = ModelEntry(
        name=f"timm-{name}", description=f"{name} (timm)", build=build,
        normalisation=Normalisation(tuple(data["mean"]), tuple(data["std"])), layers=layers,
        default_layers=tuple(paths), imagenet=imagenet,
        weights_source=f"timm pretrained {source} (Hugging Face hub cache)", logits_layer=LOGITS,
        input_size=int(data["input_size"][-1]),
    )
    return entry, paths


def custom(name: str, module: nn.Module, layers: Sequence[str],
           mean: Sequence[float] = Normalisation.mean, std: Sequence[float] = Normalisation.std,
           description: str = "") -> ModelSpec:
    """Register any module under `name` so that runs can name it (`RunConfig(models=[name])`).

    `layers` are module paths; `mean`/`std` the per-channel normalisation of RGB in [0, 1]. The module is used with
    the weights it has (`--weights imagenet` means "as given"); `random` re-initialises a copy with the seed;
    PATH loads a checkpoint into a copy.
    """
    if not isinstance(module, nn.Module):
        raise ShiftlensError(f"custom model {name!r}: expected a torch.nn.Module, got {type(module).__name__}")
    if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
        raise ShiftlensError(f"custom model {name!r}: mean and std need 3 values each (RGB, std > 0), got {mean}, {std}")
    paths = list(layers)
    entry = ModelEntry(
        name=name, description=description or f"{name} ({type(module).__name__}, given module)",
        build=lambda: module, normalisation=Normalisation(tuple(map(float, mean)), tuple(map(float, std))),
        layers=module_layers(module, paths, f"custom model {name!r}"), default_layers=tuple(paths),
        weights_source="the module given to shiftlens.models.custom", logits_layer=LOGITS,
        extra={"given_module": True},
    )
    register(entry)
    return ModelSpec(entry, paths)


SPEC_RESOLVERS["torchvision"] = torchvision_spec
SPEC_RESOLVERS["timm"] = timm_spec
