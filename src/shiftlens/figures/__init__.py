"""The figures stage: one module per analysis that draws figures, each registering its makers in `base`.

Importing this package registers every maker of a `shiftlens run` folder, in the order `make_all` draws them
(similarity, separability, invariance, location, its cross-object protocol); `units` registers the figures of the
units analysis's outputs. `arithmetic` draws a `shiftlens arithmetic` folder's figures, called by its run
(`shiftlens.api.arithmetic`).
"""

from shiftlens.figures import similarity, separability, invariance, location, cross_object, units  # noqa: F401  (registers, in this order)
from shiftlens.figures.base import (FIGURE_MAKERS, OUTPUT_FIGURES, make_all, offset_label, register_figure,
                                    register_output_figures, save, weights_note)

__all__ = ["FIGURE_MAKERS", "OUTPUT_FIGURES", "make_all", "offset_label", "register_figure", "register_output_figures",
           "save", "weights_note"]
