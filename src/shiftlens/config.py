"""A run's configuration: presets, TOML files and command-line overrides merged into one validated object.

The fingerprint of the fields that change results lets a results folder refuse a run from another config.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from shiftlens.errors import ShiftlensError

ANALYSES = ("similarity", "separability", "location", "invariance", "consistency", "class", "units")
"""The analyses a run may select, in the paper's order (tables, site): checked here, before the analyses (and torch)
are imported; each registers itself under one of these names (analyses.base.register_analysis refuses any other, and
tests/test_analyses.py checks that every one is registered)."""
STUDY_ANALYSES = [a for a in ANALYSES if a != "units"]
"""What the presets run: the units analysis is asked for by name (`--analyses ...,units`), its figures add time."""
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
EXECUTORS = ("local", "ray")


@dataclass
class RunConfig:
    """Everything that defines a run. Field names are the TOML keys and the CLI flags.

    Each field's docstring is its flag's help (`cli.OPTIONS`; `{NAME}` stands for the constant NAME of this
    module); `metadata` says how the flag differs from `--field-name` taking one value: `flags` (its spellings, or
    None for a TOML key without a flag), `repeat` (given more than once), `unset` (what leaving it out means, where
    that is not the presets' value).
    """

    models: list[str] = field(default_factory=lambda: ["efficientnet_lite0:pool,fc"],
                              metadata={"flags": ("--models", "-m"), "repeat": True})
    """model specs, e.g. alexnet:fc6,fc7,fc8 or efficientnet_lite0@random; several: separate with spaces or ';', or
    repeat --models (a model's name after a comma starts a new spec)"""
    patches: str = "sample"
    """sample, folder:DIR, coco:ANN.json:IMAGES (a COCO annotations file and its image folder), tuxpaint[:CATEGORY,...]
    or openclipart[:CATEGORY,...] (Debian packages; shiftlens patches SOURCE lists them)"""
    sizes: list[int] = field(default_factory=lambda: [75, 125])
    """patch sides in pixels, e.g. 75,125"""
    stride: int = 8
    """pixels between positions (1 = every position)"""
    canvas: int = field(default=224, metadata={"flags": None})
    """side of the square canvas in pixels"""
    protocol: str = "paste"
    """paste (a patch moves on the canvas) or crop (a window moves over a larger image: --patches images or image:PATH,
    sizes above the canvas)"""
    shift: str = "move"
    """move (over a fixed background) or circular (the canvas rolls with wrap-around)"""
    background: str | list[int] = "white"  # also [r, g, b] in a TOML file (canvases/background.py)
    """white, black, gray, mean (ImageNet mean pixel), #RRGGBB, image:PATH or texture:NAME (brick, grass, gravel)"""
    keep_aspect: bool = field(default=False, metadata={"flags": ("--keep-aspect/--square",)})
    """keep the patch's aspect ratio (pad) instead of the paper's square stretch"""
    square_crop: bool = field(default=False, metadata={"flags": ("--square-crop/--bbox-crop",)})
    """COCO: reproduce the original scripts' square crop (w = h)"""
    coco_categories: list[str] = field(
        default_factory=lambda: ["car", "airplane", "boat", "dog", "bird", "zebra", "orange", "banana", "clock", "laptop"],
        metadata={"flags": None},
    )
    """COCO: the categories whose objects become patches"""
    per_category: int = field(default=20, metadata={"flags": None})
    """objects a run takes per category (the first that pass, in sorted path order)"""
    min_object_size: float = field(default=37.5, metadata={"flags": None})
    """skip masks whose width and height are both below this (px)"""
    max_patches: int | None = None
    """use only the first N patches"""
    weights: str = "imagenet"
    """imagenet | random | PATH to a checkpoint"""
    device: str = "auto"
    """auto | cpu | cuda"""
    precision: str = "auto"
    """auto | fp32 | bf16 | fp16"""
    batch_size: int = 0  # 0 = auto: the size measured fastest on the device (stream.AUTO_BATCH)
    """images per forward pass (0 = auto: 16 on a CPU, 128 on CUDA)"""
    compile: str = "auto"  # auto: runs of COMPILE_MIN_IMAGES or more
    """torch.compile each model: auto (runs of 3,000+ images per model), on or off"""
    analyses: list[str] = field(default_factory=lambda: ["similarity"])
    """comma-separated, from: {ANALYSES}"""
    svm: str = "auto"
    """separability solver: auto or torch (the batched solver), sklearn (the libsvm reference)"""
    seed: int = 0
    """seed for random weights and shuffled folds"""
    out: str | None = field(default=None, metadata={"unset": "results/PRESET, plus each setting that differs from the "
                                                              "preset"})  # default_out
    """results folder"""
    preset: str = field(default="quick", metadata={"flags": None})
    """the preset this config starts from: names the default folder, changes no number"""
    site: bool = True
    """build the results website at the end"""
    executor: str = "local"  # shiftlens.executors; the same results
    """local (this process) or ray (workers on a Ray cluster; needs the ray extra, see README)"""
    ray_address: str | None = field(default=None, metadata={"unset": "start a local Ray"})
    """auto or HOST:PORT of a running Ray cluster"""
    workers: int = 0  # or one per share of the cluster's CPUs
    """Ray workers (0 = auto: one per GPU, or one per 4 CPUs)"""
    units_topk: int = 9  # exemplars: the canvases that drive a unit most
    """units analysis: exemplars kept per unit"""
    units: list[int] = field(default_factory=list)  # and to its site
    """units analysis: unit indices to add to its figures, e.g. 3,17"""

    # Fields that do not change any number in the results; everything else is fingerprinted.
    _NOT_FINGERPRINTED = ("device", "batch_size", "compile", "out", "site", "svm", "executor", "ray_address", "workers",
                          "units", "preset")

    def fingerprint(self) -> str:
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in self._NOT_FINGERPRINTED}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "RunConfig":
        check_types(self.to_dict(), "config")
        if not self.models:
            raise ShiftlensError("no models given: pass --models, e.g. --models efficientnet_lite0")
        if self.stride < 1:
            raise ShiftlensError(f"stride {self.stride} is invalid: use --stride 1 or more (1 = every position)")
        if self.canvas < 1:
            raise ShiftlensError(f"canvas {self.canvas} is invalid: use a positive canvas size such as 224")
        if not self.sizes:
            raise ShiftlensError("no patch sizes given: pass --sizes, e.g. --sizes 75,125")
        repeated = sorted({s for s in self.sizes if self.sizes.count(s) > 1})
        if repeated:
            raise ShiftlensError(f"patch size {repeated[0]} is given twice in {self.sizes}: give each size once")
        if self.protocol not in ("paste", "crop"):
            raise ShiftlensError(f"unknown protocol {self.protocol!r}: use paste or crop")
        if self.shift not in ("move", "circular"):
            raise ShiftlensError(f"unknown shift {self.shift!r}: use move or circular")
        if self.protocol == "crop":
            self._validate_crop()
        for s in self.sizes if self.protocol == "paste" else []:
            if s < 1:
                raise ShiftlensError(f"patch size {s} is invalid: sizes must be positive, e.g. --sizes 75,125")
            if s > self.canvas:
                raise ShiftlensError(
                    f"patch size {s} is larger than the {self.canvas}px canvas: use sizes up to {self.canvas}"
                )
            if self.shift == "circular" and self.stride >= self.canvas:  # ceil(canvas / stride) shifts per axis
                raise ShiftlensError(f"stride {self.stride} gives one circular shift of the {self.canvas}px canvas, so "
                                     f"nothing can shift: use --stride {self.canvas // 2} or less")
            if self.shift == "move" and s + self.stride > self.canvas:  # (canvas - s) // stride + 1 positions per axis
                fix = (f"use --stride {self.canvas - s} or less" if s < self.canvas
                       else f"use patch sizes below the {self.canvas}px canvas")
                raise ShiftlensError(
                    f"{s}px patches at stride {self.stride} have one position on the {self.canvas}px canvas, so "
                    f"nothing can shift and every similarity would be 1.0: {fix} (2+ positions per axis)"
                )
        if isinstance(self.background, list) and (len(self.background) != 3
                                                  or not all(0 <= int(c) <= 255 for c in self.background)):
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
        if self.executor not in EXECUTORS:
            raise ShiftlensError(f"unknown executor {self.executor!r}: use one of {', '.join(EXECUTORS)}")
        if self.workers < 0:
            raise ShiftlensError(f"workers {self.workers} is invalid: use 1 or more (0 = auto)")
        negative = [u for u in self.units if u < 0]
        if negative:
            raise ShiftlensError(f"--units {negative[0]} is out of range: unit indices start at 0")
        if self.units_topk < 1:
            raise ShiftlensError(f"units_topk {self.units_topk} is invalid: use 1 or more exemplars per unit")
        if self.preset not in PRESETS:
            raise ShiftlensError(f"unknown preset {self.preset!r}: use one of {', '.join(PRESETS)}")
        if self.out is not None and "://" in self.out:
            raise ShiftlensError(f"--out {self.out}: object-store URLs are not supported; give a folder (with --executor "
                                 "ray, one every node mounts at the same path, e.g. NFS)")
        if self.max_patches is not None and self.max_patches < 1:
            raise ShiftlensError(f"max_patches {self.max_patches} is invalid: use 1 or more, or leave it out")
        self._refuse_unused()
        return self

    def _refuse_unused(self) -> None:
        """A setting whose analysis, executor or patch source is not in the run would be ignored: one line instead."""
        defaults = {f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
                    for f in dataclasses.fields(self)}
        unused = [
            ("workers", f"--workers {self.workers}", self.executor != "ray",
             "is for the Ray executor: add --executor ray"),
            ("ray_address", f"--ray-address {self.ray_address}", self.executor != "ray",
             "is for the Ray executor: add --executor ray"),
            ("units", f"--units {','.join(map(str, self.units))}", "units" not in self.analyses,
             "is for the units analysis: add units to --analyses (e.g. --analyses similarity,units)"),
            ("svm", f"--svm {self.svm}", "separability" not in self.analyses,
             "is the separability analysis's solver: add separability to --analyses"),
            ("units_topk", f"--units-topk {self.units_topk}", "units" not in self.analyses,
             "is for the units analysis: add units to --analyses"),
            ("square_crop", "--square-crop", not self.patches.startswith("coco"),
             "crops COCO objects: use it with --patches coco:ANNOTATIONS.json:IMAGES"),
        ]
        for name, flag, ignored, why in unused:
            if ignored and getattr(self, name) != defaults[name]:
                raise ShiftlensError(f"{flag} {why}, or leave {flag.split()[0]} out")

    def _validate_crop(self) -> None:
        """--protocol crop: sizes are the side the image is resized to, so each must leave the window room to move."""
        if self.shift != "move":
            raise ShiftlensError("--shift circular is for the paste protocol: use --shift move with --protocol crop")
        if self.keep_aspect:
            raise ShiftlensError("--keep-aspect is for pasted patches: --protocol crop uses each image's centred square")
        if self.background not in ("white", [255, 255, 255]):
            raise ShiftlensError(f"--background {self.background} has no effect with --protocol crop (the window is all "
                                 "image): leave --background out")
        for s in self.sizes:
            if s < self.canvas + self.stride:  # (s - canvas) // stride + 1 window positions per axis
                raise ShiftlensError(
                    f"crop size {s} gives fewer than 2 window positions per axis on the {self.canvas}px canvas at "
                    f"stride {self.stride}: for --protocol crop, sizes are the side the image is resized to; use "
                    f"sizes of {self.canvas + self.stride} or more, e.g. --sizes {self.canvas + 8 * self.stride}"
                )


PRESETS: dict[str, dict[str, Any]] = {
    # Minutes on a laptop CPU: the bundled objects, EfficientNet-Lite0 (the default network) beside Lite1 and Lite2,
    # all with their packaged ImageNet weights, positions every 8 px. Everything the package measures, on three real
    # networks, offline.
    "quick": {"models": ["efficientnet_lite0:pool,fc", "efficientnet_lite1:pool,fc", "efficientnet_lite2:pool,fc"],
              "analyses": list(STUDY_ANALYSES)},
    # The quick preset's networks and stride on photographic Tux Paint stamps (Debian's tuxpaint-stamps-default, read
    # where apt installed it): ten categories of the package with ImageNet counterparts where it has them, up to 20
    # objects each, the first in sorted path order that pass the rules of docs/patches.md; the paper's sizes.
    "stamps": {"models": ["efficientnet_lite0:pool,fc", "efficientnet_lite1:pool,fc", "efficientnet_lite2:pool,fc"],
               "patches": "tuxpaint:" + ",".join(["animals/birds", "animals/fish", "animals/insects", "animals/mammals",
                                                  "food/fruit", "food/vegetables", "hobbies/music", "household/tools",
                                                  "plants/flowers", "vehicles"]),
               "per_category": 20, "sizes": [75, 125], "stride": 8, "analyses": list(STUDY_ANALYSES),
               "out": "results/stamps"},
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
        "analyses": list(STUDY_ANALYSES),
    },
}


@functools.cache
def field_docs() -> dict[str, str]:
    """Each RunConfig field's docstring (the string right after it) on one line, `{NAME}` filled in with this
    module's constant NAME (a tuple as `a, b, c`): the flags' help (cli.OPTIONS)."""
    import ast
    import inspect
    import re

    body = ast.parse(inspect.getsource(RunConfig)).body[0].body
    constants = globals()
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            text = " ".join(after.value.value.split())
            docs[node.target.id] = re.sub(r"\{([A-Z_]+)\}", lambda m: ", ".join(constants[m.group(1)]), text)
    return docs


def _field_names() -> set[str]:
    return {f.name for f in dataclasses.fields(RunConfig)}


@functools.cache
def _field_types() -> dict[str, Any]:
    """Each field's type, read from RunConfig's annotations so that a new field is checked without more code."""
    hints = typing.get_type_hints(RunConfig)
    return {name: hints[name] for name in _field_names()}


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
_PLURALS = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        return f"a list of {_PLURALS.get(args[0], _describe(args[0]))}"
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        described = " or ".join(_describe(a) for a in kept)
        return f"{described} (or left out)" if len(kept) < len(args) else described
    return _TYPE_NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def _conform(value: Any, hint: Any) -> tuple[bool, Any]:
    """(whether `value` has type `hint`, the value with integers made floats where a float is expected)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        if not isinstance(value, list):
            return False, value
        items = [_conform(v, args[0]) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            ok, conformed = _conform(value, arg)
            if ok:
                return True, conformed
        return False, value
    if hint is type(None):
        return value is None, value
    if isinstance(value, bool) and hint is not bool:  # True is an int to Python, not to a config
        return False, value
    if hint is float and isinstance(value, int):
        return True, float(value)
    return isinstance(value, hint), value


def check_types(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Check each value against its RunConfig field's type; the values back, integers made floats where a float
    is expected. A mismatch is one line naming the source, the key, the expected type and the value."""
    types_ = _field_types()
    checked = {}
    for key, value in values.items():
        if key not in types_:
            raise ShiftlensError(f"{source}: unknown key {key!r}; valid keys are {', '.join(sorted(types_))}")
        ok, checked[key] = _conform(value, types_[key])
        if not ok:
            raise ShiftlensError(f"{source}: {key} should be {_describe(types_[key])}, got {value!r}")
    return checked


def from_mapping(values: dict[str, Any], source: str) -> RunConfig:
    """Build a config from a preset or a parsed TOML table, rejecting keys that do not exist and values of the
    wrong type."""
    return RunConfig(**check_types(values, source))


def load(preset_or_file: str) -> RunConfig:
    """A preset name (`quick`, `paper`) or the path of a TOML config file."""
    if preset_or_file in PRESETS:
        return from_mapping({**PRESETS[preset_or_file], "preset": preset_or_file}, f"preset {preset_or_file}")
    path = Path(preset_or_file)
    if path.suffix.lower() == ".toml" or path.exists():
        if path.is_dir():
            raise ShiftlensError(f"config file {path} is a folder: give a preset ({', '.join(PRESETS)}) or a TOML file")
        if not path.is_file():
            raise ShiftlensError(f"config file {path} does not exist: give a preset ({', '.join(PRESETS)}) or a TOML file")
        try:
            values = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ShiftlensError(f"config file {path} is not valid TOML ({exc}): fix the file or start from "
                                 "the output of `shiftlens config`") from None
        values = values.get("run", values)
        if not isinstance(values, dict):
            raise ShiftlensError(f"config file {path}: [run] should be a table of settings: start from `shiftlens config`")
        base = values.pop("preset", "quick")
        if not isinstance(base, str):
            raise ShiftlensError(f"config file {path}: preset should be a string ({', '.join(PRESETS)}), got {base!r}")
        if base not in PRESETS:
            raise ShiftlensError(f"config file {path}: unknown preset {base!r}; use one of {', '.join(PRESETS)}")
        return from_mapping({**PRESETS[base], **values, "preset": base}, f"config file {path}")
    raise ShiftlensError(f"unknown preset {preset_or_file!r}: use one of {', '.join(PRESETS)} or a path to a .toml file")


def with_overrides(cfg: RunConfig, **overrides: Any) -> RunConfig:
    """Apply CLI flags that were given (None means: not given), checked like a config file's values."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(cfg, **check_types(given, "override"))


def _slug(value: Any) -> str:
    """A setting's value as a piece of a folder name: paths by their last part, `coco:ANN:IMAGES` as `coco` (the
    paper preset's placeholder stands for any COCO folder), lists joined by `+`, anything else as `_`."""
    if isinstance(value, list):
        return "+".join(_slug(v) for v in value)
    if isinstance(value, dict):
        return "+".join(_slug(k) for k in value)
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if text.startswith("coco:"):
        text = "coco"
    head, at, weights = text.partition("@")
    kind, sep, rest = head.partition(":")
    if sep and ("/" in rest or "." in rest):  # folder:DIR, image:PATH: the kind and the file's or folder's name
        head = f"{kind}:{Path(rest.rstrip('/')).stem}"
    elif not sep and ("/" in head or head.endswith((".pth", ".pt"))):  # a checkpoint path
        head = Path(head).stem
    if at:
        head += "@" + Path(weights).stem
    return "".join(c if c.isalnum() or c in "+@.-" else "_" for c in head).strip("._") or "_"


def folder_name(base: str, values: Mapping[str, Any], defaults: Mapping[str, Any], fingerprint: str) -> str:
    """`results/BASE-KEY-VALUE-...` for each value that differs from the defaults (keys as their flags are spelt);
    names over 80 characters keep the keys and add the config's fingerprint instead of the values."""
    differ = [(k.replace("_", "-"), _slug(v)) for k, v in values.items() if _slug(v) != _slug(defaults[k])]
    name = "-".join([base] + [f"{k}-{v}" for k, v in differ])
    if len(name) > 80:
        name = "-".join([base] + [k for k, _ in differ] + [fingerprint[:8]])
    return f"results/{name}"


def default_out(cfg: RunConfig) -> str:
    """The results folder of a config that names none: `results/PRESET`, then each setting that changes results and
    differs from the preset, e.g. `shiftlens run --models efficientnet_lite0` -> results/quick-models-efficientnet_lite0.
    A function of the config alone, so the same config (from flags or a TOML file) finds its folder to resume."""
    base = load(cfg.preset).to_dict()
    mine = {k: v for k, v in cfg.to_dict().items() if k not in RunConfig._NOT_FINGERPRINTED}
    return folder_name(cfg.preset, mine, base, cfg.fingerprint())


def with_out(cfg: RunConfig) -> RunConfig:
    """The config with its results folder: the given `out`, or `default_out`."""
    return cfg if cfg.out is not None else dataclasses.replace(cfg, out=default_out(cfg))


def to_toml(cfg: RunConfig) -> str:
    """The config as a TOML file that `load` reads back to the same config (unset optional fields left out)."""
    import tomli_w

    return tomli_w.dumps({k: v for k, v in cfg.to_dict().items() if v is not None})


def split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_sizes(text: str) -> list[int]:
    try:
        return [int(s) for s in split_list(text)]
    except ValueError:
        raise ShiftlensError(f"--sizes {text!r} is invalid: give integers separated by commas, e.g. 75,125") from None
