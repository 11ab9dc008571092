"""Models and taps: a registry from names to networks, their preprocessing and their named layers."""

from shiftlens.models.external import custom
from shiftlens.models.registry import REGISTRY, LayerSpec, ModelEntry, ModelSpec, parse_spec, register, split_specs
from shiftlens.models.taps import Taps
from shiftlens.models.weights import UNTRAINED, build_with_weights

__all__ = ["REGISTRY", "LayerSpec", "ModelEntry", "ModelSpec", "Taps", "UNTRAINED", "build_with_weights", "custom",
           "parse_spec", "register", "split_specs"]
