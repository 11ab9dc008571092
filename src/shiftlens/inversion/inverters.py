"""One interface over the ways of turning a feature vector back into an image, chosen by name (`--inverter`).

- `optimise`: natural pre-images by gradient descent on the image (optimise.py), any model and layer, no training;
  it reports the feature loss it reached.
- `decoder`: the generator shipped in the package for this model and layer (decoder.py, trained by `shiftlens
  inverter train`); `decoder:PATH` loads another one. One forward pass per batch.
- `none`: no images.

Both image-making inverters return (N, 3, H, W) images in [0, 1] and the normalised feature loss
||phi(x) - phi0||^2 / ||phi0||^2 of each image, so the two can be compared on the same scale.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import nn

from shiftlens.canvases import Normalisation
from shiftlens.errors import ShiftlensError
from shiftlens.inversion.network import FeatureNet
from shiftlens.inversion.objectives import FeatureMatch
from shiftlens.inversion.optimise import InversionSettings, optimise
from shiftlens.models import LayerSpec

NAMES = ("optimise", "decoder", "decoder:PATH", "none")

Progress = Callable[[int], None]
"""`progress(n)`: n more units of work done (optimisation steps of one chunk, or decoded images)."""


@dataclass
class Inverted:
    """`images` (N, 3, H, W) float32 in [0, 1] on the CPU; `feature_loss` (N,) of each image against its target."""

    images: torch.Tensor
    feature_loss: np.ndarray
    seconds: float

    def to_uint8(self) -> np.ndarray:
        """(N, H, W, 3) uint8, for PNGs and figures."""
        return (self.images.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8).numpy()


class Inverter(Protocol):
    name: str
    """`optimise` or `decoder`."""

    def describe(self) -> dict[str, Any]:
        """The settings that decide the images (what run.json records and what resume compares)."""

    def work(self, n: int) -> int:
        """Units of progress `invert` reports for n targets."""

    def invert(self, targets: np.ndarray | torch.Tensor, progress: Progress | None = None) -> Inverted:
        """Images for the rows of `targets` (N, D)."""


def _feature_loss(net: FeatureNet, images: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return FeatureMatch(targets)(net(images), slice(0, len(targets))).cpu().numpy().astype(np.float64)


def _as_targets(targets: np.ndarray | torch.Tensor, dim: int | None, what: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(targets, dtype=np.float32) if not torch.is_tensor(targets) else targets).float()
    if t.ndim != 2 or (dim is not None and t.shape[1] != dim):
        raise ShiftlensError(f"{what}: targets must have shape (N, {dim or 'D'}), got {tuple(t.shape)}")
    return t


class OptimiseInverter:
    """Natural pre-images (Mahendran & Vedaldi); `settings` are InversionSettings (docs/inversion.md)."""

    name = "optimise"

    def __init__(self, net: FeatureNet, settings: InversionSettings) -> None:
        self.net = net
        self.settings = settings

    def describe(self) -> dict[str, Any]:
        return {"settings": dataclasses.asdict(self.settings)}

    def work(self, n: int) -> int:
        return self.settings.steps * -(-n // self.settings.batch_size)

    def invert(self, targets: np.ndarray | torch.Tensor, progress: Progress | None = None) -> Inverted:
        t = _as_targets(targets, None, f"optimise inverter for {self.net.name}")
        t0 = time.perf_counter()
        report = (lambda done, total, loss: progress(1)) if progress is not None else None
        images, loss = optimise(self.net, FeatureMatch(t), self.settings, progress=report)
        return Inverted(images, loss.numpy().astype(np.float64), time.perf_counter() - t0)


class DecoderInverter:
    """A trained generator from features to images (decoder.py); the feature loss of its images is measured with
    the same FeatureNet as the optimiser's, so the two inverters' losses compare."""

    name = "decoder"

    def __init__(self, decoder: Any, source: str, net: FeatureNet, batch_size: int = 16) -> None:
        self.decoder = decoder
        self.source = source
        self.net = net
        self.batch_size = batch_size

    def describe(self) -> dict[str, Any]:
        meta = self.decoder.meta
        path = Path(getattr(self.decoder, "source", "") or self.source)
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        return {"source": self.source, "file": str(path), "sha256": digest, "model": meta.model, "layer": meta.layer,
                "weights": meta.weights, "steps_done": meta.steps_done}

    def work(self, n: int) -> int:
        return n

    def invert(self, targets: np.ndarray | torch.Tensor, progress: Progress | None = None) -> Inverted:
        t = _as_targets(targets, None, f"decoder for {self.net.name}")
        t0 = time.perf_counter()
        chunks, losses = [], []
        for i in range(0, len(t), self.batch_size):
            with torch.no_grad():
                images = torch.as_tensor(self.decoder.decode(t[i : i + self.batch_size])).detach().float().cpu()
            images = images.clamp(0, 1)
            chunks.append(images)
            losses.append(_feature_loss(self.net, images, t[i : i + self.batch_size]))
            if progress is not None:
                progress(len(images))
        return Inverted(torch.cat(chunks), np.concatenate(losses), time.perf_counter() - t0)


def decoder_api() -> ModuleType | None:
    """shiftlens.inversion.decoder (load_decoder, shipped_decoders), or None where this build has none."""
    try:
        return importlib.import_module("shiftlens.inversion.decoder")
    except ModuleNotFoundError as exc:
        if exc.name != "shiftlens.inversion.decoder":
            raise
        return None


def shipped_decoder(model: str, layer: str) -> Path | None:
    """The decoder the package ships for (model, layer), or None."""
    api = decoder_api()
    return api.shipped_decoders().get((model, layer)) if api is not None else None


def resolve(name: str, model: str, layer: str, weights: str) -> tuple[str, str | None]:
    """The inverter `name` asks for on one model and layer: (`optimise` | `decoder` | `none`, note or None).

    `auto` (the default) is the shipped decoder where the package has one for this model and layer and the run
    uses the ImageNet weights it was trained on, else `optimise`, with a note saying so."""
    check_name(name)
    if name != "auto":
        return ("decoder" if name.startswith("decoder") else name), None
    if weights == "imagenet" and shipped_decoder(model, layer) is not None:
        return "decoder", None
    why = "its weights are not the ImageNet ones the shipped decoders learnt" if weights != "imagenet" else \
        "the package ships no decoder for it"
    return "optimise", f"{model}:{layer}: inverted with optimise ({why})"


def check_name(name: str) -> None:
    if name in ("auto", "optimise", "none", "decoder") or (name.startswith("decoder:") and name[8:].strip()):
        return
    raise ShiftlensError(f"unknown inverter {name!r}: use auto, optimise, decoder, decoder:PATH or none")


def make_inverter(name: str, model: nn.Module, layer: LayerSpec, normalisation: Normalisation | None = None, *,
                  model_name: str, weights: str = "imagenet", seed: int = 0, device: torch.device | str = "cpu",
                  settings: InversionSettings | None = None, batch_size: int = 16,
                  feature_dim: int | None = None) -> Inverter | None:
    """The inverter `name` (auto, optimise, decoder, decoder:PATH, none) for one layer of `model` (registry name
    `model_name`, built with `weights` and `seed`); None for `none`. A decoder made for another model, layer or
    encoder weights is one ShiftlensError line."""
    kind, _ = resolve(name, model_name, layer.name, weights)
    if kind == "none":
        return None
    net = FeatureNet(model, layer, normalisation, device, name=f"{model_name}:{layer.name}")
    if kind == "optimise":
        return OptimiseInverter(net, settings or InversionSettings())
    check_inverter(name, model_name, layer.name, weights, seed)
    api = decoder_api()
    source = _source(name)
    decoder = api.load_decoder(source, model_name, layer.name, device=device, feature_dim=feature_dim,
                               weights=weights, seed=seed)
    return DecoderInverter(decoder, source, net, batch_size)


def _source(name: str) -> str:
    return "shipped" if name in ("auto", "decoder") else name.split(":", 1)[1].strip()


def check_inverter(name: str, model_name: str, layer: str, weights: str, seed: int = 0) -> str | None:
    """Every check of `--inverter` that can be made before any work, for one model and layer built with `weights`
    and `seed`; returns the note `auto` gives when it falls back to optimise. A missing decoder, or one made for
    another model, layer or encoder weights, is one ShiftlensError line."""
    kind, note = resolve(name, model_name, layer, weights)
    if kind != "decoder":
        return note
    source = _source(name)
    if source == "shipped" and shipped_decoder(model_name, layer) is None:
        raise ShiftlensError(f"no decoder is shipped for {model_name}:{layer}: train one with `shiftlens inverter "
                             f"train --model {model_name}:{layer} --out FILE` and pass --inverter decoder:FILE, "
                             "or use --inverter optimise")
    if source != "shipped" and not Path(source).is_file():
        raise ShiftlensError(f"decoder file {source} does not exist: give a file written by `shiftlens inverter train`")
    api = decoder_api()
    if api is None:
        raise ShiftlensError("this shiftlens has no decoder module: use --inverter optimise")
    api.load_decoder(source, model_name, layer, weights=weights, seed=seed)
    return note
