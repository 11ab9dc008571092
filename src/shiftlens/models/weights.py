"""Weights: `imagenet` (library weights, through torch's cache), `random` (seeded, marked untrained) or a local file.

Every load returns its provenance, which goes into run.json and labels every table row and figure.
"""

from __future__ import annotations

import copy
import contextlib
import hashlib
import io
import os
from pathlib import Path
from urllib.error import URLError

import torch
from torch import nn

from shiftlens.errors import ShiftlensError, path_error
from shiftlens.models.registry import ModelEntry
from shiftlens.models.shapes import build_for_shapes

UNTRAINED = "random (untrained)"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def download_state_dict(url: str, model: str, check_hash: bool = False) -> tuple[dict, Path]:
    """torch's download-and-cache path; offline, one clear line naming the file and the folder to put it in.

    `check_hash` compares a fresh download with the hash prefix in its file name (torch.hub's convention).
    """
    file_name = os.path.basename(url.split("?")[0])
    target = cache_dir() / file_name
    chatter = io.StringIO()  # torch.hub announces every download on stdout; offline that would precede our one line
    try:
        with contextlib.redirect_stdout(chatter):
            state = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, weights_only=True,
                                                       check_hash=check_hash)
    except Exception as exc:  # network errors, or a corrupt cached file (torch.load raises many types)
        if target.is_file() and not isinstance(exc, (URLError, ConnectionError)):
            raise ShiftlensError(
                f"ImageNet weights for {model}: {target} cannot be loaded ({exc.__class__.__name__}); "
                f"delete it and download {url} again"
            ) from None
        raise ShiftlensError(
            f"ImageNet weights for {model} cannot be downloaded ({exc.__class__.__name__}): "
            f"download {file_name} from {url} and place it in {cache_dir()}/, or use --weights PATH or --weights random"
        ) from None
    return _unwrap(state, target), target


def _unwrap(state: object, path: Path) -> dict:
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict) and not any(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ShiftlensError(f"checkpoint {path} is not a state dict (nor {{'state_dict': ...}}): save model.state_dict()")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise path_error(path, "weights file", "give a checkpoint file, imagenet or random")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise ShiftlensError(f"weights file {path} cannot be loaded safely ({exc.__class__.__name__}): save a plain state dict") from None
    return _unwrap(state, path)


def load_into(model: nn.Module, state: dict, source: str) -> None:
    problem = mismatch({k: v.shape for k, v in model.state_dict().items()}, state)
    if problem:
        raise ShiftlensError(f"weights {source} do not fit model {type(model).__name__} ({problem}): use a checkpoint "
                             "of the same architecture")
    model.load_state_dict(state, strict=True)


def build_with_weights(entry: ModelEntry, weights: str, seed: int = 0) -> tuple[nn.Module, dict]:
    """The model in eval mode and its provenance (source, file, sha256, untrained)."""
    if entry.extra.get("given_module"):
        return _given_module(entry, weights, seed)
    if weights == "random":
        torch.manual_seed(seed)
        model = entry.build()
        prov = {"source": "random", "seed": seed, "untrained": True, "label": UNTRAINED}
    elif weights == "imagenet":
        if entry.imagenet is None:
            raise ShiftlensError(f"model {entry.name} has no ImageNet weights here: use --weights random or --weights PATH")
        model = entry.build()
        state, file = entry.imagenet()
        load_into(model, state, f"imagenet ({file.name})")
        prov = {"source": "imagenet", "file": file.name, "origin": entry.weights_source,
                "sha256": sha256(file) if file.is_file() else None, "untrained": False, "label": "imagenet"}
    else:
        path = Path(weights)
        state = load_checkpoint(path)
        model = entry.build()
        load_into(model, state, str(path))
        prov = {"source": "file", "file": str(path), "sha256": sha256(path), "untrained": False, "label": f"file:{path.name}"}
    return model.eval(), prov


def _given_module(entry: ModelEntry, weights: str, seed: int) -> tuple[nn.Module, dict]:
    """A module handed to `custom()`: used as given, or a copy re-initialised with the seed, or a copy + checkpoint."""
    module = entry.build()
    if weights == "imagenet":
        return module.eval(), {"source": "given module", "untrained": False, "label": "given"}
    model = copy.deepcopy(module)
    if weights == "random":
        torch.manual_seed(seed)
        for m in model.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        return model.eval(), {"source": "random", "seed": seed, "untrained": True, "label": UNTRAINED}
    path = Path(weights)
    load_into(model, load_checkpoint(path), str(path))
    return model.eval(), {"source": "file", "file": str(path), "sha256": sha256(path), "untrained": False,
                          "label": f"file:{path.name}"}


def mismatch(expected: dict[str, torch.Size], state: dict) -> str | None:
    """What keeps `state` from loading into a model whose state dict has `expected` shapes: the first few missing,
    unexpected and wrongly shaped keys, then counts; None when it fits."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k])]
    parts = []
    if shapes:
        parts.append(f"{len(shapes)} key(s) of another shape, e.g. " + ", ".join(
            f"{k} {tuple(state[k].shape)} vs {tuple(expected[k])}" for k in shapes[:3]))
    if missing:
        parts.append(f"{len(missing)} missing, e.g. {', '.join(missing[:3])}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected, e.g. {', '.join(unexpected[:3])}")
    return "; ".join(parts) or None


def check_fits(entry: ModelEntry, state: dict, source: str) -> None:
    """Refuse a checkpoint of another architecture before any work, naming the model and what does not fit."""
    reference = build_for_shapes(entry.build).state_dict()  # a given module (custom()) is returned as it is
    problem = mismatch({k: v.shape for k, v in reference.items()}, state)
    if problem:
        raise ShiftlensError(f"weights {source} do not fit model {entry.name} ({problem}): give a checkpoint of "
                             f"{entry.name}'s architecture, or run that model separately")
