"""The feature stream: one patch's shifted canvases through one model, batch by batch, all taps at once.

The anchors go first, so the similarity analysis gets their features from the same forward pass as the rest
(an anchor's own similarity is then exactly 1, whatever the batch composition does to rounding).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import nn

from shiftlens.canvases import Normalisation, Renderer, make_renderer
from shiftlens.config import DEVICES
from shiftlens.errors import ShiftlensError
from shiftlens.models.registry import LayerSpec
from shiftlens.models.fold import fold_batchnorm
from shiftlens.models.taps import Taps

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# `--precision auto`: a faster precision only where `shiftlens bench` measured its largest similarity-map error
# below 0.005 against fp32 (EfficientNet-Lite0 ImageNet weights, sample patches; docs/performance.md); fp32
# everywhere else: CPU bf16 measured over the limit, CUDA fp16/bf16 are not measured yet.
AUTO_PRECISION: dict[str, str] = {"cpu": "fp32", "cuda": "fp32"}


# Images per forward pass when the config says 0 (auto): on a CPU small batches stay in cache and run faster
# (docs/performance.md). AlexNet, mostly fc weights, goes the other way and sets its own (ModelEntry.auto_batch).
AUTO_BATCH: dict[str, int] = {"cpu": 16, "cuda": 128}

# `--compile auto` compiles a model (torch.compile, inductor with frozen weights) when it will see at least this many
# images: below that, the seconds spent compiling outweigh the faster forward (docs/performance.md).
COMPILE_MIN_IMAGES = 3000


def compile_for_inference(fn):
    """torch.compile as shiftlens uses it: inductor with frozen weights, one static shape, its own recompile cache."""
    # inductor imports cpp_extension, which warns about CUDA_HOME on machines without CUDA: noise here
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    return torch.compile(fn, dynamic=False, options={"freezing": True}, isolate_recompiles=True)


def resolve_batch_size(batch_size: int, device: torch.device, auto: dict[str, int] | None = None) -> int:
    """`batch_size`, or for 0 the model's own measured choice on this device (ModelEntry.auto_batch), else
    AUTO_BATCH."""
    if batch_size > 0:
        return batch_size
    return (auto or {}).get(device.type) or AUTO_BATCH.get(device.type, 16)


def resolve_device(device: str) -> torch.device:
    """The `--device` of every command as a torch device, or one line (an unknown name, CUDA where there is none)."""
    if device not in DEVICES:
        raise ShiftlensError(f"--device {device}: unknown device; use one of {', '.join(DEVICES)}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ShiftlensError("--device cuda: no CUDA device is available here; use --device auto or cpu")
    return torch.device(device)


def resolve_compile(mode: str, device: torch.device, images: int) -> bool:
    if mode == "auto":
        return device.type in ("cpu", "cuda") and images >= COMPILE_MIN_IMAGES
    return mode == "on"


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return AUTO_PRECISION.get(device.type, "fp32")
    if precision == "fp16" and device.type == "cpu":
        raise ShiftlensError("--precision fp16 is for GPUs: on a CPU use bf16 (or fp32)")
    return precision


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


@dataclass
class FeatureExtractor:
    """A model on its device with its taps, normalisation and precision.

    Use it as a context manager (or call `close()`): closing removes the taps' hooks and drops the compiled graph
    with its frozen copy of the weights.
    """

    model: nn.Module
    layers: list[LayerSpec]
    normalisation: Normalisation
    device: torch.device
    precision: str
    compile: bool = False
    """Compile the forward pass with all taps (torch.compile, frozen weights). Batches are then padded to one shape
    (`pad_to`) so nothing recompiles; if compiling fails (no C++ compiler, an untraceable model) the extractor
    falls back to eager and says why in `compile_error`."""
    pad_to: int = 0
    compile_error: str | None = None

    def __post_init__(self) -> None:
        self.model = fold_batchnorm(self.model.eval(), [spec.module for spec in self.layers])
        self.model = self.model.to(self.device).eval()
        if self.device.type in ("cpu", "cuda"):
            self.model = self.model.to(memory_format=torch.channels_last)
        self.taps = Taps(self.model, self.layers)
        self._pool: dict = {}  # one canvas buffer recycled by this extractor's renderers (one patch at a time)
        self._compiled = None
        self._closed = False
        if self.compile:
            self._compiled = compile_for_inference(self._eager)

    @property
    def compiled(self) -> bool:
        return self._compiled is not None

    def close(self) -> None:
        """Remove the hooks and the compiled graph; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        self.taps.close()
        if self._compiled is not None:
            self._compiled = None
            torch._dynamo.reset()

    def __enter__(self) -> "FeatureExtractor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @torch.inference_mode()
    def _eager(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        with autocast(self.device, self.precision):
            return self.taps(batch)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        if self._closed:
            raise RuntimeError("this FeatureExtractor is closed: make a new one")
        if self._compiled is not None:
            try:
                return dict(self._compiled(batch))
            except ShiftlensError:
                raise
            except Exception as exc:  # the backend failed (no compiler, unsupported op): eager computes the same
                self.compile_error = f"{exc.__class__.__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
                self._compiled = None
                torch._dynamo.reset()
        return self._eager(batch)

    def renderer(self, rgba: np.ndarray, canvas: int, background, protocol: str = "paste",
                 shift: str = "move") -> Renderer:
        """The renderer of the run's protocol and shift (canvases.make_renderer), sharing this extractor's buffer."""
        return make_renderer(rgba, canvas, background, self.normalisation, self.device, self._pool, protocol, shift)


def stream_order(n_positions: int, first: list[int]) -> np.ndarray:
    """Flat position indices with `first` (the anchors) at the front, the rest in row-major order."""
    rest = np.setdiff1d(np.arange(n_positions), np.asarray(first, dtype=np.int64), assume_unique=False)
    return np.concatenate([np.unique(np.asarray(first, dtype=np.int64)), rest])


def stream(
    extractor: FeatureExtractor,
    renderer: Renderer,
    ys: np.ndarray,
    xs: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    first: int = 0,
) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """Yields (flat indices, {layer: (B, D) float32}) covering every position exactly once.

    The first batch holds at least the `first` leading indices of `order` (the anchors), whatever the batch size.
    """
    dev = extractor.device
    ys_t = torch.as_tensor(ys, device=dev)
    xs_t = torch.as_tensor(xs, device=dev)
    order_t = torch.as_tensor(order, device=dev)
    bounds = [0, max(batch_size, first)]
    while bounds[-1] < len(order):
        bounds.append(bounds[-1] + batch_size)
    for start, stop in zip(bounds[:-1], bounds[1:]):
        idx = order_t[start:stop]
        short = extractor.pad_to - len(idx) if extractor.compiled else 0
        sel = torch.cat([idx, idx[-1:].expand(short)]) if short > 0 else idx  # one shape: no recompiling
        batch = renderer.render(ys_t[sel], xs_t[sel], reuse=True)  # consumed by the forward pass before the next
        feats = extractor(batch)
        yield idx, ({k: v[: len(idx)] for k, v in feats.items()} if short > 0 else feats)
