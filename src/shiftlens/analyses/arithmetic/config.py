"""The config of `shiftlens arithmetic`: what decides an arithmetic run's numbers, recorded typed in its run.json
(`arithmetic.record.ArithmeticRecord.config`), as `shiftlens run`'s `RunConfig` is in its. A leaf: it imports only
the leaf `shiftlens.config`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from shiftlens.config import folder_name

# The default demo, after the paper's Fig. 6 with copies of one bundled object at the quick preset's first size:
# three minus the top two leaves the lower-left one; two at the top plus one at the lower right gives three.
DEMO_SCENES = {
    "three": "flower_01@20,20 flower_01@20,129 flower_01@129,20",
    "top_two": "flower_01@20,20 flower_01@20,129",
    "lower_right": "flower_01@129,129",
}
DEMO_EXPRESSIONS = {"subtraction": "three - top_two", "addition": "top_two + lower_right"}
DEMO_PATCH = "flower_01"


@dataclass
class ArithmeticConfig:
    """Everything that decides an arithmetic run's numbers (and where they go)."""

    scenes: dict[str, str] = field(default_factory=lambda: dict(DEMO_SCENES))
    """Compact scene strings by name (TOML scenes are converted to these)."""
    expressions: dict[str, str] = field(default_factory=lambda: dict(DEMO_EXPRESSIONS))
    models: list[str] = field(default_factory=lambda: ["efficientnet_lite0:pool,fc"])
    weights: str = "imagenet"
    patches: str = "sample"
    size: int = 75
    """Side in px of an object written without `:SIZE`, and of the benchmark's objects (the quick preset's first)."""
    stride: int = 16
    """Grid step in px of the retrieval candidates and of the benchmark's random positions."""
    problems: int = 9
    seed: int = 0
    canvas: int = 224
    background: list[int] = field(default_factory=lambda: [255, 255, 255])
    keep_aspect: bool = False
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 0
    out: str | None = None
    """The results folder; None: results/arithmetic, plus each setting that differs from the demo's (with_out)."""
    inverter: str = "auto"
    """How the expressions' operands and results become images: auto (the shipped decoder where there is one for
    the model and layer, else optimise), optimise, decoder, decoder:PATH, or none."""
    inversion_steps: int = 200
    """Gradient steps of the optimise inverter (docs/inversion.md)."""

    def fingerprint(self) -> str:
        """The numbers' identity; the inverter only changes the images, which are keyed on their own
        (analyses/arithmetic/inversions.py), so changing it keeps the folder and its numbers."""
        values = {k: v for k, v in dataclasses.asdict(self).items() if k not in _NOT_NUMBERS}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]

    def with_out(self) -> "ArithmeticConfig":
        """This config with its results folder: the given one, or one of its own named from what differs from the
        demo's settings (the inverter included: other images are kept apart from the demo's)."""
        if self.out is not None:
            return self
        mine = {k: v for k, v in dataclasses.asdict(self).items() if k not in _NOT_NAMED}
        out = folder_name("arithmetic", mine, dataclasses.asdict(ArithmeticConfig()), self.fingerprint())
        return dataclasses.replace(self, out=out)


_NOT_NUMBERS = ("out", "device", "batch_size", "inverter", "inversion_steps")
_NOT_NAMED = ("out", "device", "batch_size")
