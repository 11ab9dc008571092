"""Images from features: natural pre-images by gradient descent on the image with image priors (Mahendran &
Vedaldi), for any model and layer; the same optimiser maximises a unit or draws a caricature.

`invert(model, layer, targets, normalisation, ...)` -> InversionResult; `optimise(net, objective, ...)` is the
engine behind it; docs/inversion.md gives the defaults and what they reach on EfficientNet-Lite0.
"""

from shiftlens.inversion.maximise import MaximisationResult, caricature, maximise_unit
from shiftlens.inversion.network import FeatureNet, load_feature_net
from shiftlens.inversion.objectives import Caricature, FeatureMatch, Objective, UnitActivation
from shiftlens.inversion.optimise import InversionResult, InversionSettings, Progress, invert, optimise

__all__ = ["Caricature", "FeatureMatch", "FeatureNet", "InversionResult", "InversionSettings", "MaximisationResult",
           "Objective", "Progress", "UnitActivation", "caricature", "invert", "load_feature_net", "maximise_unit",
           "optimise"]
