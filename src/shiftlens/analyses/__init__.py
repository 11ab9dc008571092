"""Analyses of the feature stream. Importing this package registers every analysis in ANALYSIS_REGISTRY."""

from shiftlens.analyses import class_prob, consistency, invariance, location, separability, similarity, units  # noqa: F401  (registers)
from shiftlens.analyses.base import ANALYSIS_REGISTRY, ANCHORS, Analysis, PatchContext, anchors, register_analysis

__all__ = ["ANALYSIS_REGISTRY", "ANCHORS", "Analysis", "PatchContext", "anchors", "register_analysis"]
