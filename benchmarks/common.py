"""What every section of the benchmark shares: its settings, timing, the patches, and one pipeline unit.

A pipeline unit is what a run does for one (model, size, patch), through the public API: `api.run_patch` (render,
forward with every tap, analyses) and `ResultsDir.save_part` (one atomic part file with its `PartMeta`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from benchmarks.targets import png_models
from shiftlens import api
from shiftlens.canvases import grid
from shiftlens.config import RunConfig
from shiftlens.errors import ShiftlensError
from shiftlens.models import ModelSpec, build_with_weights, parse_spec
from shiftlens.patches import Patch, load_patches
from shiftlens.store import Part, PartMeta, ResultsDir, WeightsRecord
from shiftlens.stream import FeatureExtractor, resolve_batch_size

MODELS = ("alexnet", "resnet50", "mobilenet_v2", "efficientnet_lite0")
REAL_WEIGHTS = {"efficientnet_lite0"}
"""Models whose ImageNet weights ship with the package; the others run with random weights (speed does not depend
on weight values, and their ImageNet weights need a download)."""
CANVAS = 224
WHITE = (255, 255, 255)

Log = Callable[[str], None]


def precisions_for(device: torch.device) -> list[str]:
    return ["fp32", "bf16", "fp16"] if device.type == "cuda" else ["fp32", "bf16"]


@dataclass
class Settings:
    """The benchmark's knobs; `preset(quick=True)` shrinks every section to run in a few minutes."""

    quick: bool = False
    device: str = "auto"
    models: tuple[str, ...] = MODELS
    precisions: tuple[str, ...] | None = None
    """None: every precision the device has."""
    batch_size: int = 0
    """0: each model's auto batch size on the device (as a run uses it), for every section."""
    compile: bool = True
    """Compile the pipeline and the bare forward alike, as long runs do (`--compile auto`)."""
    rounds: int = 3
    unit_seconds: float = 4.0
    """Target duration of one timed pipeline unit (one patch's grid)."""
    patch_size: int = 75
    png_models: tuple[str, ...] = png_models()
    png_images: int = 256
    error_patches: int = 10
    error_sizes: tuple[int, ...] = (75, 125)
    error_stride: int = 8
    svm_grids: tuple[int, ...] = (19, 75, 150)
    """n x n positions of a 75 px patch: strides 8, 2 and 1 (the paper's)."""
    svm: bool = True
    memory: bool = True
    memory_model: str = "efficientnet_lite0"
    memory_stride: int = 16
    peak: bool = True

    @classmethod
    def preset(cls, quick: bool, **overrides: Any) -> "Settings":
        """The full or quick mode; overrides that are None keep the mode's value."""
        base: dict[str, Any] = {}
        if quick:
            base = dict(quick=True, rounds=2, unit_seconds=1.5, png_images=64, error_patches=2, error_stride=24,
                        svm_grids=(19, 38, 75), memory_stride=32)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Seconds of `fn()` (waiting for the device before and after) and its result."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def unit_grid(n: int, canvas: int = CANVAS, near: int = 75) -> tuple[int, int]:
    """(patch size, stride) giving exactly n positions per axis, patch size as close to `near` as possible."""
    for p in sorted(range(16, canvas + 1), key=lambda p: (abs(p - near), p)):
        if n == 1:
            return p, canvas
        for s in range(1, canvas):
            if (canvas - p) // s + 1 == n:
                return p, s
    raise ShiftlensError(f"no grid with {n} positions per axis on a {canvas}px canvas: ask for fewer positions")


def unit_side(batch_size: int, images: float, max_side: int = 150) -> int:
    """The side n of an n x n grid whose n*n images are whole batches, as close as possible to `images`."""
    sides = [n for n in range(1, max_side + 1) if (n * n) % batch_size == 0] or [max_side]
    return min(sides, key=lambda n: abs(math.log(n * n / max(images, 1))))


def bench_patches(n: int) -> tuple[list[Patch], str]:
    """The first n bundled sample patches (real photographs), padded with seeded synthetic blobs when n is larger
    than the sample (the full mode's precision error asks for more patches than it has)."""
    patches = load_patches(RunConfig(patches="sample"))[:n]
    if len(patches) == n:
        return patches, "sample"
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :96] / 96
    while len(patches) < n:
        rgba = np.zeros((96, 96, 4), np.uint8)
        rgba[..., :3] = rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)
        rgba[..., 3] = np.where((yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.16, 255, 0)
        patches.append(Patch(id=f"synthetic_{len(patches):02d}", category="synthetic", rgba=rgba, source="synthetic"))
    return patches, "sample+synthetic"


def sample_count() -> int:
    return len(load_patches(RunConfig(patches="sample")))


def batch_for(st: Settings, name: str, device: torch.device) -> int:
    """The batch size a run would use for this model (`--batch-size 0` = the model's auto size on the device)."""
    return resolve_batch_size(st.batch_size, device, parse_spec(name).entry.auto_batch)


@dataclass
class Built:
    """A model as a run builds it: its spec, the network in eval mode, and its weights' typed provenance."""

    spec: ModelSpec
    model: torch.nn.Module
    weights: WeightsRecord


def build(name: str) -> Built:
    """The model with its packaged ImageNet weights where it has them, else random weights (seed 0)."""
    spec = parse_spec(name)
    model, prov = build_with_weights(spec.entry, "imagenet" if spec.entry.name in REAL_WEIGHTS else "random", 0)
    return Built(spec, model, api.weights_record(prov, model))


def unit_config(model: str, size: int, stride: int, batch_size: int, device: torch.device, out: str) -> RunConfig:
    """A run's config for one timed unit: the model's default layers, similarity only, no website."""
    return RunConfig(models=[model], patches="sample", sizes=[size], stride=stride, batch_size=batch_size,
                     device=device.type, precision="fp32", out=out, site=False, analyses=["similarity"])


def extractor(built: Built, device: torch.device, precision: str, compile: bool, pad_to: int) -> FeatureExtractor:
    """The run's extractor for this model (use it in a `with` block: closing drops hooks and compiled graph)."""
    layers = [built.spec.entry.layer(l) for l in built.spec.layers]
    return FeatureExtractor(built.model, layers, built.spec.entry.normalisation, device, precision, compile=compile,
                            pad_to=pad_to)


def part_meta(built: Built, patch: Patch, rgba: np.ndarray, cfg: RunConfig) -> PartMeta:
    """The metadata a run stores with this unit's part."""
    positions = len(grid(cfg.canvas, rgba.shape[0], cfg.stride)[0])
    return PartMeta(model=built.spec.key, weights=built.weights.label, untrained=built.weights.untrained,
                    patch_size=rgba.shape[0], patch_id=patch.id, category=patch.category,
                    n=int(round(math.sqrt(positions))), fingerprint=cfg.fingerprint(), patch_digest=patch.digest(),
                    weights_digest=built.weights.digest, net_stride=built.spec.entry.net_stride)


def pipeline_unit(ex: FeatureExtractor, built: Built, patch: Patch, rgba: np.ndarray, cfg: RunConfig,
                  results: ResultsDir, meta: PartMeta | None = None) -> Part:
    """The real pipeline for one patch: render, forward with all taps, similarity, store (one part file)."""
    arrays = api.run_patch(ex, built.spec, built.weights.label, patch, rgba, cfg)
    meta = meta or part_meta(built, patch, rgba, cfg)
    results.save_part(meta, arrays)
    return Part(meta, arrays)
