"""A run's configuration: presets, TOML files and command-line overrides merged into one validated object.

The fingerprint of the fields that change results lets a results folder refuse a run from another config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shiftlens.errors import ShiftlensError

ANALYSES = ("similarity", "separability", "location", "invariance", "consistency")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class RunConfig:
    """Everything that defines a run. Field names are the TOML keys and the CLI flags."""

    models: list[str] = field(default_factory=lambda: ["efficientnet_lite0:pool,fc,class"])
    patches: str = "sample"
    sizes: list[int] = field(default_factory=lambda: [75, 125])
    stride: int = 8
    canvas: int = 224
    background: list[int] = field(default_factory=lambda: [255, 255, 255])
    keep_aspect: bool = False
    square_crop: bool = False
    coco_categories: list[str] = field(
        default_factory=lambda: ["car", "airplane", "boat", "dog", "bird", "zebra", "orange", "banana", "clock", "laptop"]
    )
    per_category: int = 20
    min_object_size: float = 37.5
    max_patches: int | None = None
    weights: str = "imagenet"
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 0  # 0 = auto: the size measured fastest on the device (stream.AUTO_BATCH)
    compile: str = "auto"  # auto | on | off: torch.compile each model (auto: runs of COMPILE_MIN_IMAGES or more)
    analyses: list[str] = field(default_factory=lambda: ["similarity"])
    svm: str = "auto"
    seed: int = 0
    out: str = "results/quick"
    site: bool = True

    # Fields that do not change any number in the results; everything else is fingerprinted.
    _NOT_FINGERPRINTED = ("device", "batch_size", "compile", "out", "site", "svm")

    def fingerprint(self) -> str:
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in self._NOT_FINGERPRINTED}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "RunConfig":
        if not self.models:
            raise ShiftlensError("no models given: pass --models, e.g. --models efficientnet_lite0")
        if self.stride < 1:
            raise ShiftlensError(f"stride {self.stride} is invalid: use --stride 1 or more (1 = every position)")
        if self.canvas < 1:
            raise ShiftlensError(f"canvas {self.canvas} is invalid: use a positive canvas size such as 224")
        if not self.sizes:
            raise ShiftlensError("no patch sizes given: pass --sizes, e.g. --sizes 75,125")
        for s in self.sizes:
            if s < 1:
                raise ShiftlensError(f"patch size {s} is invalid: sizes must be positive, e.g. --sizes 75,125")
            if s > self.canvas:
                raise ShiftlensError(
                    f"patch size {s} is larger than the {self.canvas}px canvas: use sizes up to {self.canvas}"
                )
        if len(self.background) != 3 or not all(0 <= int(c) <= 255 for c in self.background):
            raise ShiftlensError(f"background {self.background} is invalid: give three values 0-255, e.g. [255, 255, 255]")
        if self.precision not in PRECISIONS:
            raise ShiftlensError(f"unknown precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        if self.device not in DEVICES:
            raise ShiftlensError(f"unknown device {self.device!r}: use one of {', '.join(DEVICES)}")
        if self.batch_size < 0:
            raise ShiftlensError(f"batch size {self.batch_size} is invalid: use 1 or more (0 = auto)")
        if self.compile not in ("auto", "on", "off"):
            raise ShiftlensError(f"unknown compile mode {self.compile!r}: use auto, on or off")
        unknown = [a for a in self.analyses if a not in ANALYSES]
        if unknown:
            raise ShiftlensError(f"unknown analysis {unknown[0]!r}: choose from {', '.join(ANALYSES)}")
        if not self.analyses:
            raise ShiftlensError(f"no analyses selected: choose from {', '.join(ANALYSES)}")
        if "invariance" in self.analyses and "similarity" not in self.analyses:
            raise ShiftlensError("invariance is computed from the similarity maps: add similarity to --analyses")
        if self.svm not in ("auto", "torch", "sklearn"):
            raise ShiftlensError(f"unknown SVM solver {self.svm!r}: use auto, torch or sklearn")
        if self.per_category < 1:
            raise ShiftlensError(f"per_category {self.per_category} is invalid: use 1 or more")
        if self.max_patches is not None and self.max_patches < 1:
            raise ShiftlensError(f"max_patches {self.max_patches} is invalid: use 1 or more, or leave it out")
        return self


PRESETS: dict[str, dict[str, Any]] = {
    # Minutes on a laptop CPU: the bundled objects, EfficientNet-Lite0 with its packaged ImageNet weights,
    # positions every 8 px. Everything the package measures, on real weights, offline.
    "quick": {"analyses": list(ANALYSES)},
    # The study at full scale: COCO patches, stride 1, the paper's networks and taps (6.5 million images each).
    "paper": {
        "models": [
            "alexnet:fc6,fc7,fc8",
            "resnet50:fc",
            "mobilenet_v2:fc",
            "alexnet_aa:fc6,fc7,fc8",
            "resnet50_aa:fc",
            "mobilenet_v2_aa:fc",
        ],
        "patches": "coco",
        "stride": 1,
        "precision": "fp32",
        "analyses": list(ANALYSES),
        "out": "results/paper",
    },
}


def _field_names() -> set[str]:
    return {f.name for f in dataclasses.fields(RunConfig)}


def from_mapping(values: dict[str, Any], source: str) -> RunConfig:
    """Build a config from a preset or a parsed TOML table, rejecting keys that do not exist."""
    unknown = sorted(set(values) - _field_names())
    if unknown:
        raise ShiftlensError(
            f"{source}: unknown key {unknown[0]!r}; valid keys are {', '.join(sorted(_field_names()))}"
        )
    try:
        return RunConfig(**values)
    except TypeError as exc:  # pragma: no cover - dataclass signature mismatch
        raise ShiftlensError(f"{source}: {exc}") from None


def load(preset_or_file: str) -> RunConfig:
    """A preset name (`quick`, `paper`) or the path of a TOML config file."""
    if preset_or_file in PRESETS:
        return from_mapping(dict(PRESETS[preset_or_file]), f"preset {preset_or_file}")
    path = Path(preset_or_file)
    if path.suffix.lower() == ".toml" or path.exists():
        if not path.is_file():
            raise ShiftlensError(f"config file {path} does not exist: give a preset ({', '.join(PRESETS)}) or a TOML file")
        try:
            values = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ShiftlensError(f"config file {path} is not valid TOML ({exc}): fix the file or start from `shiftlens config`") from None
        values = values.get("run", values)
        base = values.pop("preset", "quick")
        if base not in PRESETS:
            raise ShiftlensError(f"config file {path}: unknown preset {base!r}; use one of {', '.join(PRESETS)}")
        merged = {**PRESETS[base], **values}
        return _typed(from_mapping(merged, f"config file {path}"), f"config file {path}")
    raise ShiftlensError(f"unknown preset {preset_or_file!r}: use one of {', '.join(PRESETS)} or a path to a .toml file")


def _typed(cfg: RunConfig, source: str) -> RunConfig:
    """Check the types a TOML file can get wrong (a string where a list belongs, and so on)."""
    expected = {
        "models": list, "sizes": list, "analyses": list, "background": list, "coco_categories": list,
        "stride": int, "canvas": int, "batch_size": int, "per_category": int, "seed": int,
        "patches": str, "weights": str, "device": str, "precision": str, "out": str, "svm": str, "compile": str,
        "keep_aspect": bool, "square_crop": bool, "site": bool,
    }
    for name, typ in expected.items():
        value = getattr(cfg, name)
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise ShiftlensError(f"{source}: {name} should be a {typ.__name__}, got {value!r}")
    return cfg


def with_overrides(cfg: RunConfig, **overrides: Any) -> RunConfig:
    """Apply CLI flags that were given (None means: not given)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(cfg, **given)


def split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_sizes(text: str) -> list[int]:
    try:
        return [int(s) for s in split_list(text)]
    except ValueError:
        raise ShiftlensError(f"--sizes {text!r} is invalid: give integers separated by commas, e.g. 75,125") from None


def parse_models(text: str) -> list[str]:
    """Model specs are separated by ';' or by a space, because ',' separates the layers of one model."""
    parts = [p.strip() for chunk in text.split(";") for p in chunk.split()]
    return [p for p in parts if p]
