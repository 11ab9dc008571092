"""run.json of `shiftlens arithmetic`: its typed record, registered with the store as the kind "arithmetic" (the
store knows no experiment; `store.RECORD_KINDS` learns this one when this module is imported)."""

from __future__ import annotations

from typing import Any, Literal

from shiftlens.analyses.arithmetic.config import ArithmeticConfig
from shiftlens.store import _Record, _RunBase, register_record_kind


class InversionRecord(_Record):
    """One (model, layer) of an arithmetic run inverted: which inverter, its settings, what it reached."""

    model: str
    layer: str
    inverter: Literal["optimise", "decoder"]
    settings: dict[str, Any]
    """The optimiser's InversionSettings fields, or the decoder's source, sha256 and training record."""
    key: str
    """What the stored images are reused against: the numbers' fingerprint, weights, patches and these settings."""
    images: int
    seconds: float
    median_feature_loss: float


@register_record_kind("arithmetic", "`shiftlens arithmetic`")
class ArithmeticRecord(_RunBase):
    """run.json of `shiftlens arithmetic` (kind "arithmetic"): its config, models, scenes and expressions."""

    kind: Literal["arithmetic"]
    config: ArithmeticConfig
    scenes: dict[str, str]
    """Each scene as its compact string with every size written out (`cat_01:75@10,20 ...`)."""
    expressions: dict[str, str]
    problems: int
    inversions: list[InversionRecord] = []
    """How each (model, layer) was turned back into images (`--inverter`); empty with `none`."""
    figures: list[str] = []


__all__ = ["ArithmeticRecord", "InversionRecord"]
