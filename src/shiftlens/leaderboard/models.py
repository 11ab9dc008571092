"""The leaderboard's model list: the named default set, and globs expanded with each library's own model list.

A glob is a spec whose name holds `*`, `?` or `[`: `timm:convnext_*` (timm.list_models), `torchvision:resnet*`
(torchvision.models.list_models), or a bare `resnet50_a*` over the built-in registry. Listing names needs no
weights. A prefixed glob without layers taps `logits` (the one module path every network has); `:LAYERS` and
`@WEIGHTS` written after the glob go to every match.
"""

from __future__ import annotations

import fnmatch

from shiftlens.errors import ShiftlensError
from shiftlens.models import REGISTRY, parse_spec, split_specs
from shiftlens.models.external import LOGITS

DEFAULT_SET = "default"
"""`--models default`: the field's usual backbones with their anti-aliased (Zhang 2019) and APS (Chaman & Dokmanić
2021) twins where the package has them, each tapped at its output (logits), so every row compares one thing. APS
networks were released without ImageNet weights: they run untrained (`@random`) and are ranked apart."""
DEFAULT_MODELS = [
    "alexnet:fc8", "alexnet_aa:fc8",
    "torchvision:vgg16:logits",
    "torchvision:resnet18:logits", "resnet18_aps:fc@random",
    "resnet50:fc", "resnet50_aa:fc", "resnet50_aps:fc@random",
    "torchvision:densenet121:logits",
    "mobilenet_v2:fc", "mobilenet_v2_aa:fc", "mobilenet_v2_aps:fc@random",
    "efficientnet_lite0:fc",
    "torchvision:convnext_tiny:logits",
    "torchvision:vit_b_16:logits",
    "timm:deit_small_patch16_224:logits",
    "torchvision:swin_t:logits",
]
GLOB_CHARS = "*?["


def _is_glob(name: str) -> bool:
    return any(c in name for c in GLOB_CHARS)


def _library_names(prefix: str, pattern: str) -> list[str]:
    """The library's own list of the names that match (no weights are touched)."""
    if prefix == "timm":
        try:
            import timm
        except ImportError:
            raise ShiftlensError("timm: specs need the timm package: pip install 'shiftlens[timm]'") from None
        return list(timm.list_models(pattern))
    if prefix == "torchvision":
        import torchvision.models as tvm

        return list(tvm.list_models(module=tvm, include=pattern))
    raise ShiftlensError(f"globs work over timm:, torchvision: and the built-in models, not {prefix}:")


def expand(spec: str) -> list[str]:
    """One spec -> the specs it stands for: itself, or every match of its glob (in the library's order)."""
    body, at, weights = spec.partition("@")
    suffix = f"@{weights}" if at else ""
    head, sep, rest = body.partition(":")
    if sep and head in ("timm", "torchvision"):
        name, _, layers = rest.partition(":")
        if not _is_glob(name):
            return [spec]
        names = _library_names(head, name)
        if not names:
            raise ShiftlensError(f"--models {spec}: the glob {name!r} matches no {head} model: see "
                                 f"{'timm.list_models()' if head == 'timm' else 'torchvision.models.list_models()'}")
        return [f"{head}:{n}:{layers or LOGITS}{suffix}" for n in names]
    if not _is_glob(head):
        return [spec]
    names = [n for n in REGISTRY if fnmatch.fnmatchcase(n, head)]
    if not names:
        raise ShiftlensError(f"--models {spec}: the glob {head!r} matches no built-in model (shiftlens models lists "
                             "them; use timm:GLOB or torchvision:GLOB for those libraries)")
    return [f"{n}{sep}{rest}{suffix}" for n in names]


def _split(models: list[str] | str) -> list[str]:
    """Like `split_specs`, but a glob or the default set's name is a spec of its own (never a layer of the one
    before it)."""
    out: list[str] = []
    for item in [models] if isinstance(models, str) else models:
        for token in item.replace(";", " ").split():
            name = token.split("@", 1)[0].split(":")
            if token == DEFAULT_SET or _is_glob(name[1] if name[0] in ("timm", "torchvision") and len(name) > 1
                                                else name[0]):
                out.append(token)
            else:
                out.extend(split_specs(token))
    return out


def resolve(models: list[str] | str | None) -> list[str]:
    """`--models` values -> the spec strings, the default set and globs expanded, each one parsed once here so an
    unknown model or layer fails in one line before any work; duplicates keep their first place."""
    given = _split(models) if models else [DEFAULT_SET]
    out: list[str] = []
    for spec in given:
        for item in (DEFAULT_MODELS if spec == DEFAULT_SET else expand(spec)):
            if item not in out:
                out.append(item)
    for item in out:
        parse_spec(item)
    return out
