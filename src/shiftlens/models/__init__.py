"""Models and taps: a registry from names to networks, their preprocessing, their named layers and their stride.

Importing the package registers the built-in models (zoo) and the `torchvision:` / `timm:` spec resolvers
(external), as timm's package does; every import of a models module runs this first.
"""

from shiftlens.models.registry import REGISTRY, SPEC_RESOLVERS, LayerSpec, ModelEntry, ModelSpec, register, register_resolver
from shiftlens.models import zoo  # noqa: F401  (registers the built-in models)
from shiftlens.models.external import custom  # (registers the torchvision: and timm: resolvers)
from shiftlens.models.specs import parse_spec, split_specs
from shiftlens.models.taps import Taps
from shiftlens.models.weights import UNTRAINED, build_with_weights

__all__ = ["REGISTRY", "SPEC_RESOLVERS", "LayerSpec", "ModelEntry", "ModelSpec", "Taps", "UNTRAINED",
           "build_with_weights", "custom", "parse_spec", "register", "register_resolver", "split_specs"]
