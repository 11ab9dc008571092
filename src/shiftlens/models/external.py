"""Any network: `torchvision:NAME:LAYER[,LAYER]`, `timm:NAME:LAYER[,LAYER]` and `custom(name, module, layers)`.

A layer is a module path (`classifier.1`, `layer4.2.conv3`) and taps that module's output, before any activation
that follows it; `logits` (the model's output) is always available. Preprocessing comes from the library's own
metadata: torchvision's weights transforms, timm's data config. The network's stride is measured (stride.py).
The resolvers register under their prefixes here; specs.py parses the spec strings.
"""

from __future__ import annotations

import difflib
from functools import lru_cache, partial
from pathlib import Path
from typing import Sequence

from torch import nn

from shiftlens.canvases import Normalisation
from shiftlens.errors import ShiftlensError
from shiftlens.models.registry import LayerSpec, ModelEntry, ModelSpec, register, register_resolver
from shiftlens.models.shapes import build_for_shapes
from shiftlens.models.stride import StrideProbe, built_at_size, probe_net_stride

LOGITS = "logits"


def _paths_hint(model: nn.Module) -> str:
    names = [n for n, _ in model.named_modules() if n]
    top = [n for n in names if "." not in n]
    tail = [n for n in names[-8:] if n not in top]
    return ", ".join(top + tail)


def module_layers(model: nn.Module, paths: Sequence[str], where: str) -> dict[str, LayerSpec]:
    """LayerSpecs for module paths (plus `logits`); an unknown path names valid ones."""
    valid = {n for n, _ in model.named_modules() if n}
    layers = {LOGITS: LayerSpec(LOGITS, "", "the model's output (logits, pre-softmax)")}
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
    return layers


def _last_leaf(model: nn.Module) -> str:
    leaves = [n for n, m in model.named_modules() if n and not list(m.children())]
    return leaves[-1] if leaves else "MODULE"


def _stride_fields(probe: StrideProbe) -> dict:
    return {"net_stride": probe.stride, "net_stride_note": probe.note}


@lru_cache(maxsize=None)
def _torchvision_stride(name: str) -> StrideProbe:
    import torchvision.models as tvm

    return probe_net_stride(built_at_size(partial(tvm.get_model, name, weights=None), "image_size"))


def torchvision_entry(name: str, paths: list[str]) -> ModelEntry:
    """`torchvision:NAME:MODULE,...` for any torchvision classification model; weights = its DEFAULT ImageNet
    weights."""
    import torchvision.models as tvm

    known = tvm.list_models(module=tvm)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=4)
        raise ShiftlensError(f"torchvision:{name} is not a torchvision classification model: "
                             f"{'did you mean ' + ', '.join(close) + '? ' if close else ''}see torchvision.models.list_models()")
    build = lambda: tvm.get_model(name, weights=None)  # noqa: E731
    weights = tvm.get_model_weights(name).DEFAULT
    transform = weights.transforms()
    layers = module_layers(build_for_shapes(build), paths, f"torchvision:{name}")

    def imagenet():
        from shiftlens.models.weights import download_state_dict

        return download_state_dict(weights.url, f"torchvision:{name}")

    return ModelEntry(
        name=f"torchvision-{name}", description=f"{name} (torchvision)", build=build,
        normalisation=Normalisation(tuple(transform.mean), tuple(transform.std)), layers=layers,
        default_layers=tuple(paths), imagenet=imagenet,
        weights_source=f"torchvision {weights} (torchvision weights API, torch hub cache)", logits_layer=LOGITS,
        input_size=int(transform.crop_size[0]), **_stride_fields(_torchvision_stride(name)),
    )


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


@lru_cache(maxsize=None)
def _timm_stride(name: str) -> StrideProbe:
    return probe_net_stride(built_at_size(partial(_timm().create_model, name, pretrained=False), "img_size"))


def timm_entry(name: str, paths: list[str]) -> ModelEntry:
    """`timm:NAME:MODULE,...` for any timm model; preprocessing from timm's data config; weights = timm
    pretrained."""
    timm = _timm()
    from timm.data import resolve_data_config

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=4)
        raise ShiftlensError(f"timm:{name} is not a timm model: "
                             f"{'did you mean ' + ', '.join(close) + '? ' if close else ''}see timm.list_models('*pattern*')")
    build = lambda: timm.create_model(name, pretrained=False)  # noqa: E731
    meta = build_for_shapes(build)
    data = resolve_data_config({}, model=meta)
    pretrained_cfg = dict(getattr(meta, "pretrained_cfg", {}) or {})
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
    return ModelEntry(
        name=f"timm-{name}", description=f"{name} (timm)", build=build,
        normalisation=Normalisation(tuple(data["mean"]), tuple(data["std"])), layers=layers,
        default_layers=tuple(paths), imagenet=imagenet,
        weights_source=f"timm pretrained {source} (Hugging Face hub cache)", logits_layer=LOGITS,
        input_size=int(data["input_size"][-1]), **_stride_fields(_timm_stride(name)),
    )


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
        **_stride_fields(probe_net_stride(lambda size: module)),
        extra={"given_module": True},
    )
    register(entry)
    return ModelSpec(entry, paths)


register_resolver("torchvision", torchvision_entry)
register_resolver("timm", timm_entry)
