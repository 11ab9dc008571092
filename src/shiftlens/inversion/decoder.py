"""The `decoder` inverter: a DeePSiM-style generator (Dosovitskiy & Brox 2016) from one tap's features to an image.

Unlike `optimise`, which searches for a pre-image of every target anew, a decoder is trained once per model and
layer (inversion/train.py) and then inverts a batch with one forward pass. The generator is fully connected layers
to a 7x7 grid, then up-convolutions doubling it to `out_size` (`generator_for`: 112 px for new decoders, 56 px in
format-1 files), then a bilinear upsampling to the canvas where needed. A decoder file is a torch checkpoint of plain
types only (`torch.load(weights_only=True)`): the generator's tensors and its `DecoderMeta` dumped to a dict.

Format 2 (this version) adds the training sources with their licences (`SourceRecord`) and keys objects by source
(`SOURCE/ID`); format-1 files (the first shipped decoders: one source, bare ids) still load.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import nn

from shiftlens.errors import ShiftlensError
from shiftlens.models.weights import sha256

FORMAT = "shiftlens-decoder"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
SHIPPED_DIR = Path(__file__).parent / "decoders"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


def explain(exc: ValidationError, names: dict[str, str] | None = None) -> str:
    """The first problem of a pydantic ValidationError in plain words, `FIELD VALUE: RULE`, without pydantic's
    wording; `names` maps a field to what the user typed for it (a CLI flag)."""
    err = exc.errors(include_url=False)[0]
    field = ".".join(str(x) for x in err["loc"]) or "value"
    name = (names or {}).get(field, field)
    ctx = err.get("ctx") or {}
    rules = {"greater_than_equal": f"use {ctx.get('ge')} or more", "greater_than": f"use more than {ctx.get('gt')}",
             "less_than_equal": f"use at most {ctx.get('le')}", "less_than": f"use less than {ctx.get('lt')}",
             "too_short": f"give at least {ctx.get('min_length')} {_entries(ctx.get('min_length'))}",
             "too_long": f"give at most {ctx.get('max_length')} {_entries(ctx.get('max_length'))}",
             "missing": "it is missing",
             "extra_forbidden": "it is not a setting"}
    if err["type"] == "value_error":  # a model validator's own words
        error = str(ctx.get("error", "invalid"))
        return f"{name}: {error}" if err["loc"] else error
    rule = rules.get(err["type"])
    if rule is None:
        kind = err["type"].split("_")[0]
        rule = {"int": "give an integer", "float": "give a number", "bool": "give true or false",
                "string": "give a text", "list": "give a list", "tuple": "give a list"}.get(kind, "give a valid value")
    value = err.get("input")
    shown = "" if err["type"] in ("missing",) or isinstance(value, dict) else f" {value!r}"
    return f"{name}{shown} is invalid: {rule}"


def _entries(n: object) -> str:
    return "entry" if n == 1 else "entries"


Count = Annotated[int, Field(ge=1)]
"""A size that cannot be 0: the tampered-file and CLI checks refuse it before any layer is built."""


class GeneratorConfig(_Record):
    """Everything needed to rebuild the generator's layers before its tensors are loaded. The bounds are checked
    when a file is read, before any layer is built, so tampered metadata cannot ask for an absurd network."""

    feature_dim: int = Field(ge=0, le=1 << 20)
    """0 while training has not measured it yet."""
    hidden: int = Field(512, ge=1, le=1 << 14)
    base: int = Field(7, ge=1, le=64)
    channels: list[Annotated[int, Field(ge=1, le=4096)]] = Field([64, 64, 32, 16], min_length=1, max_length=8)
    """Channels at base, 2*base, ... : one up-convolution per step after the first, so out_size = base * 2^(n-1)."""
    canvas: int = Field(224, ge=8, le=4096)
    arch: Literal["upconv"] = "upconv"
    """The layer layout `Generator` builds from these numbers (fc -> grid -> [up-conv 4x4 s2, conv 3x3] per
    doubling -> conv to RGB): recorded so a later layout can be told apart from this one."""

    @property
    def out_size(self) -> int:
        return self.base * 2 ** (len(self.channels) - 1)


GENERATOR_SIZES = {56: [64, 64, 32, 16], 112: [128, 128, 64, 32, 16], 224: [128, 128, 64, 32, 16, 8]}
"""Channels per output side (base 7): 56 px is the format-1 generator; 112 (the default of `inverter train`) and 224
are the ones of issue 25, each under 10 MB in fp16 with hidden 512 and 1280-d features."""


def generator_for(out_size: int, feature_dim: int = 0, canvas: int = 224, hidden: int = 512) -> GeneratorConfig:
    """The generator config giving `out_size` px (56, 112 or 224) on a `canvas` px canvas."""
    if out_size not in GENERATOR_SIZES:
        raise ShiftlensError(f"--size {out_size}: give one of {', '.join(map(str, GENERATOR_SIZES))} (px the "
                             "generator draws before any upsampling to the canvas)")
    if out_size > canvas:
        raise ShiftlensError(f"--size {out_size} is larger than the {canvas}px canvas: give at most {canvas}")
    return GeneratorConfig(feature_dim=feature_dim, hidden=hidden, channels=GENERATOR_SIZES[out_size], canvas=canvas)


class TrainSettings(_Record):
    """What `shiftlens inverter train` was asked for; a resume must ask for the same (except `steps`)."""

    spec: str
    weights: str = "imagenet"
    patches: str = "sample"
    """One source or several joined by `+` (`openclipart+sample`): inversion/objects.py."""
    per_category: Count = 20
    """Objects per category of a Debian source (tuxpaint, openclipart) or COCO, as `shiftlens run --per-category`."""
    mix: Literal["objects", "sources"] = "objects"
    """How a scene's objects are drawn: each training object equally likely (`objects`), or first a source, each
    equally likely, then one of its objects (`sources`)."""
    steps: Count = 640
    batch: Count = 16
    seed: int = Field(0, ge=0)
    """Non-negative: numpy's generators, which draw every scene from (seed, epoch), take no negative seed."""
    lr: float = Field(1e-3, gt=0)
    lr_half_life: int = Field(0, ge=0)
    """Steps over which the learning rate halves (exponential decay from step 0); 0 keeps it constant. It depends
    on the step only, never on `steps`, so a run continued to more steps is the same run."""
    warmup: int = Field(0, ge=0)
    """Steps of linear warm-up from lr/warmup to lr."""
    pool: Count = 128
    """Scenes rendered (and their features computed) per epoch; each is seen `passes` times, so a feature forward
    of the encoder, the expensive part on a CPU, serves several generator steps."""
    passes: Count = 4
    held_out: int = Field(2, ge=0)
    """Objects of each source never trained on, drawn with `random.Random(seed)` from its sorted keys."""
    sizes: tuple[Count, Count] = (60, 140)
    max_objects: Count = 3
    augment: bool = False
    """Show each training scene flipped (left-right, up-down) and with its colour channels permuted, drawn per scene
    from (seed, epoch): white stays white, and 7 training objects look like 56, so the generator has to read the
    position from the features instead of memorising where each object's features point."""
    pixel_weight: float = Field(1.0, ge=0)
    object_weight: float = Field(4.0, ge=0)
    """Extra pixel-loss weight on the object's pixels (not white in the truth): on a mostly white canvas the plain
    squared error is lowest for a pale blur, and the objects are what the decoder must place."""
    feature_weight: float = Field(0.05, ge=0)
    adversarial: bool = False
    adversarial_weight: float = Field(0.01, ge=0)
    comparator: str = ""
    """Module path of the encoder's conv stage the feature loss compares in; empty: the model's default."""
    precision: Literal["fp32", "bf16"] = "fp32"
    checkpoint_every: Count = 32
    validate_n: Count = 12
    generator: GeneratorConfig

    @model_validator(mode="after")
    def _sizes_fit(self) -> "TrainSettings":
        lo, hi = self.sizes
        if lo > hi or hi > self.generator.canvas:
            raise ValueError(f"sizes {lo}, {hi}: give the smallest, then the largest, at most the "
                             f"{self.generator.canvas}px canvas")
        return self


class StepLoss(_Record):
    step: int
    epoch: int
    total: float
    pixel: float
    feature: float
    adversarial: float | None = None


class Evaluation(_Record):
    """Validation on single-object scenes at seeded random positions and sizes (`evaluate` in train.py)."""

    step: int = 0
    n: int
    seed: int
    held_out_mae: float
    """Mean absolute pixel error (RGB in [0, 1], at the canvas) on held-out patches."""
    training_mae: float
    held_out_centroid_share: float
    """Share of held-out scenes whose reconstruction's object centroid is within `radius_px` of the truth's."""
    training_centroid_share: float
    held_out_centroid_error_px: float
    """Median distance of the two centroids on held-out scenes (the canvas diagonal where nothing was drawn)."""
    radius_px: float = 10.0
    threshold: float = 0.2


class SourceRecord(_Record):
    """A training source and its licence, recorded by `train` from the patches' provenance (objects.py)."""

    name: str
    spec: str
    objects: int = Field(ge=0)
    """Objects the source gave, held-out ones included."""
    held_out: int = Field(ge=0)
    skipped: int = Field(0, ge=0)
    """Objects left out because their mask vanishes at the smallest training size (not in `objects`)."""
    licence: str
    licences: list[str] = []
    """The distinct licences of its objects."""
    package: str | None = None
    version: str | None = None
    licence_file: str | None = None
    copyleft: bool = False
    """GPL material (Tux Paint's stamps): a decoder trained on it is for evaluation only, never shipped."""


FORMAT1_SOURCES = [SourceRecord(name="sample", spec="sample", objects=9, held_out=2,
                                licence="per object, see shiftlens/patches/sample/LICENCES.md",
                                licence_file="shiftlens/patches/sample/LICENCES.md")]
"""What format-1 files (trained on the bundled sample, before sources were recorded) were trained on."""


class DecoderMeta(_Record):
    """What a decoder inverts and how it was made: data, settings, losses and validation, inside the file."""

    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    model: str
    layer: str
    weights: str
    """The encoder's weights label (`imagenet`, `random (untrained)`, `file:NAME`)."""
    weights_id: str = ""
    """Which encoder weights exactly (`weights_identity`): `imagenet`, `random:SEED` or `sha256:HEX` of the
    checkpoint; the decoder only inverts features of those. Empty in files written before it was recorded."""
    untrained: bool = False
    feature_dim: int = Field(ge=1, le=1 << 20)
    canvas: int = Field(ge=8, le=4096)
    """The side decode() upsamples to: bounded, so a tampered file cannot ask it for an absurd image."""
    out_size: int = Field(ge=1, le=1 << 14)
    comparator: str
    training_patches: list[str]
    held_out_patches: list[str]
    settings: TrainSettings
    steps_done: int = 0
    epochs_done: int = 0
    losses: list[StepLoss] = []
    validation: list[Evaluation] = []
    train_seconds: float = 0.0
    versions: dict[str, str] = {}
    sources: list[SourceRecord] = []
    """Every training source with its licence (format 2); `training_sources` fills it in for format-1 files."""

    @property
    def spec(self) -> str:
        return f"{self.model}:{self.layer}"

    @property
    def qualified(self) -> bool:
        """Objects are keyed `SOURCE/ID` (format 2), not by bare id (format 1)."""
        return self.format_version >= 2

    @property
    def training_sources(self) -> list[SourceRecord]:
        if self.sources or self.format_version >= 2 or self.settings.patches != "sample":
            return list(self.sources)
        return list(FORMAT1_SOURCES)

    @model_validator(mode="after")
    def _agrees_with_its_generator(self) -> "DecoderMeta":
        g = self.settings.generator
        if (self.feature_dim, self.canvas, self.out_size) != (g.feature_dim, g.canvas, g.out_size):
            raise ValueError(f"feature_dim, canvas, out_size {self.feature_dim}, {self.canvas}, {self.out_size} "
                             f"differ from its generator's {g.feature_dim}, {g.canvas}, {g.out_size}")
        return self

    @property
    def encoder_weights(self) -> str:
        """`weights_id`, or for an older file what its settings say (a checkpoint's digest is then unknown: "")."""
        if self.weights_id:
            return self.weights_id
        if self.weights == "imagenet":
            return "imagenet"
        return f"random:{self.settings.seed}" if self.untrained else ""


def weights_identity(weights: str, seed: int) -> str:
    """The identity of the encoder weights `weights` (imagenet, random or a checkpoint path) with `seed`: what a
    decoder records and what its use is checked against."""
    if weights in ("imagenet", "random"):
        return "imagenet" if weights == "imagenet" else f"random:{seed}"
    path = Path(weights)
    return f"sha256:{sha256(path)}" if path.is_file() else f"file:{path.name}"


def _describe_weights(identity: str) -> str:
    if identity.startswith("random:"):
        return f"random (untrained) weights of seed {identity[7:]}"
    if identity.startswith("sha256:"):
        return f"the checkpoint of sha256 {identity[7:19]}..."
    return f"{identity} weights"


def check_encoder_weights(meta: DecoderMeta, path: Path | str, weights: str, seed: int) -> None:
    """A decoder inverts only features of the weights it was trained on: any other is one line, before any work."""
    made = meta.encoder_weights
    used = weights_identity(weights, seed)
    if not made:  # an old file trained on a checkpoint: only the label can be compared
        if meta.weights == f"file:{Path(weights).name}":
            return
        made = meta.weights
    if made != used:
        flags = f"--weights {weights}" + (f" --seed {seed}" if weights == "random" else "")
        raise ShiftlensError(f"decoder file {path} was trained on {meta.spec} features of "
                             f"{_describe_weights(made)}, but this run uses {_describe_weights(used)}: train a "
                             f"decoder with these weights (shiftlens inverter train --model {meta.spec} {flags}), "
                             "or use --inverter optimise")


def _up(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.2)]


class Generator(nn.Module):
    """Features (N, D) -> RGB (N, 3, out_size, out_size) in [0, 1].

    Features are standardised per dimension with statistics of the training data (buffers, set once by the trainer),
    so a layer of logits and a layer of pooled activations start on the same footing."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.register_buffer("feature_mean", torch.zeros(cfg.feature_dim))
        self.register_buffer("feature_std", torch.ones(cfg.feature_dim))
        self.fc = nn.Sequential(nn.Linear(cfg.feature_dim, cfg.hidden), nn.LeakyReLU(0.2),
                                nn.Linear(cfg.hidden, c[0] * cfg.base * cfg.base), nn.LeakyReLU(0.2))
        layers: list[nn.Module] = []
        for cin, cout in zip(c[:-1], c[1:]):
            layers += _up(cin, cout)
        layers.append(nn.Conv2d(c[-1], 3, 3, padding=1))
        self.up = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = (features.float() - self.feature_mean) / self.feature_std
        h = self.fc(z).view(-1, self.cfg.channels[0], self.cfg.base, self.cfg.base)
        # white is the canvas's background: a bias towards 1 lets the net start from a blank canvas
        return torch.sigmoid(self.up(h) + 2.0)


class Decoder:
    """A trained generator with its metadata: `decode(features)` -> images on the canvas."""

    def __init__(self, generator: Generator, meta: DecoderMeta, device: torch.device | str = "cpu",
                 source: str = "") -> None:
        self.device = torch.device(device)
        self.generator = generator.to(self.device).eval()
        self.meta = meta
        self.source = source

    @torch.no_grad()
    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D) features of the decoder's layer -> (N, 3, canvas, canvas) RGB in [0, 1], float32, on the device."""
        if not isinstance(features, torch.Tensor) or features.ndim != 2 or features.shape[1] != self.meta.feature_dim:
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ShiftlensError(f"decoder {self.source or self.meta.spec} takes (N, {self.meta.feature_dim}) features "
                                 f"of {self.meta.spec}, got {shape}: pass that layer's features")
        images = self.generator(features.to(self.device))
        return upsample(images, self.meta.canvas)

    def __repr__(self) -> str:
        return f"Decoder({self.meta.spec}, weights={self.meta.weights}, steps={self.meta.steps_done})"


def upsample(images: torch.Tensor, canvas: int) -> torch.Tensor:
    if images.shape[-1] == canvas:
        return images
    return F.interpolate(images, size=(canvas, canvas), mode="bilinear", align_corners=False).clamp(0, 1)


def checkpoint_dict(generator: Generator, meta: DecoderMeta, half: bool = True) -> dict:
    """The decoder file's content: plain types only, the tensors in fp16 (a decoder file is shipped in the package)."""
    state = {k: (v.half() if half and v.is_floating_point() and not k.startswith("feature_") else v).detach().cpu()
             for k, v in generator.state_dict().items()}
    return {"format": FORMAT, "format_version": meta.format_version, "meta": meta.model_dump(mode="json"),
            "generator": state}


def read_decoder_file(path: Path) -> tuple[DecoderMeta, dict]:
    """(meta, generator tensors) of a decoder file, or one line naming the file and what to do."""
    if not path.is_file():
        raise ShiftlensError(f"decoder file {path} does not exist: train one with `shiftlens inverter train --out "
                             f"{path}` or give another path")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ShiftlensError(f"decoder file {path} cannot be read ({type(exc).__name__}): it is not a shiftlens "
                             "decoder or is damaged; train it again with `shiftlens inverter train`") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("generator"), dict):
        raise ShiftlensError(f"decoder file {path} is not a shiftlens decoder (no {FORMAT!r} record): give a file "
                             "written by `shiftlens inverter train`")
    if data.get("format_version") not in READABLE_VERSIONS:
        raise ShiftlensError(f"decoder file {path} has format version {data.get('format_version')}, this shiftlens "
                             f"reads {', '.join(map(str, READABLE_VERSIONS))}: train it again with this version")
    try:
        meta = DecoderMeta.model_validate(data["meta"])
    except ValidationError as exc:
        raise ShiftlensError(f"decoder file {path} has invalid metadata ({explain(exc)}): train it again with "
                             "`shiftlens inverter train`") from None
    return meta, data["generator"]


def build_generator(meta: DecoderMeta, state: dict, path: Path | str) -> Generator:
    """The generator of a file, its layers' shapes compared with the file's tensors on the meta device first, so
    metadata that disagrees with the tensors allocates nothing."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in Generator(meta.settings.generator).state_dict().items()}
    got = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in state.items()}
    unmatched = sorted(set(shapes) ^ set(got))
    wrong = [f"{k} missing or unexpected" for k in unmatched] or [
        f"{k} has another shape" for k in shapes if tuple(shapes[k]) != got[k]]
    if wrong:
        raise ShiftlensError(f"decoder file {path}: its tensors do not fit its recorded generator ({wrong[0]}): "
                             "train it again")
    gen = Generator(meta.settings.generator)
    gen.load_state_dict({k: v.float() for k, v in state.items()})
    return gen


def shipped_decoders() -> dict[tuple[str, str], Path]:
    """(model, layer) -> the packaged decoder file, for every `MODEL_LAYER.pt` in inversion/decoders/."""
    out: dict[tuple[str, str], Path] = {}
    folder = Path(str(resources.files("shiftlens.inversion").joinpath("decoders")))
    for path in sorted(folder.glob("*.pt")) if folder.is_dir() else []:
        model, sep, layer = path.stem.rpartition("_")
        if sep:
            out[(model, layer)] = path
    return out


def decoder_file(arg: str | Path) -> Path:
    """A decoder file named on the command line: a path, or `shipped:MODEL:LAYER` for the packaged one (so the
    README's numbers for the shipped decoders come from a command that names no install path)."""
    text = str(arg)
    if not text.startswith("shipped:") or Path(arg).is_file():  # a user's file may be named so: it wins
        return Path(arg)
    model, _, layer = text.removeprefix("shipped:").rpartition(":")
    shipped = shipped_decoders()
    if (model, layer) not in shipped:
        have = ", ".join(f"shipped:{m}:{l}" for m, l in shipped) or "none"
        raise ShiftlensError(f"{text}: no such shipped decoder (shipped: {have}); give one of those or a decoder "
                             "file's path")
    return shipped[(model, layer)]


def load_decoder(source: str | Path, model: str, layer: str, device: torch.device | str = "cpu",
                 feature_dim: int | None = None, weights: str | None = None, seed: int = 0) -> Decoder:
    """The decoder for `model`'s `layer`: `source` is "shipped" (the packaged one) or a decoder file's path.

    A file made for another model or layer, (with `feature_dim`) for features of another size, or (with `weights`,
    the run's imagenet, random or PATH, and `seed`) for another encoder's weights, is refused with one line naming
    the file."""
    if str(source) == "shipped":
        shipped = shipped_decoders()
        if (model, layer) not in shipped:
            have = ", ".join(f"{m}:{l}" for m, l in shipped) or "none"
            raise ShiftlensError(f"no shipped decoder for {model}:{layer} (shipped: {have}): train one with "
                                 f"`shiftlens inverter train --model {model}:{layer} --out FILE` and use decoder:FILE")
        path = shipped[(model, layer)]
    else:
        path = Path(source)
    meta, state = read_decoder_file(path)
    if (meta.model, meta.layer) != (model, layer):
        raise ShiftlensError(f"decoder file {path} was made for {meta.model}:{meta.layer}, not {model}:{layer}: use a "
                             f"decoder trained for {model}:{layer} (shiftlens inverter train --model {model}:{layer})")
    if feature_dim is not None and feature_dim != meta.feature_dim:
        raise ShiftlensError(f"decoder file {path} decodes {meta.feature_dim}-d features of {meta.spec}, but "
                             f"{model}:{layer} gives {feature_dim}-d ones here: train a decoder for this model")
    if weights is not None:
        check_encoder_weights(meta, path, weights, seed)
    return Decoder(build_generator(meta, state, path), meta, device, source=str(path))
