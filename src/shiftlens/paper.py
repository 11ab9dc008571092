"""The paper's published numbers (Lee, Yang & Wang 2020), and a table that puts a run's values beside them.

Only comparable runs get the table: the paper's networks with ImageNet weights, at the paper's patch sizes (125 px =
its "large" Tables 1 and 3, 75 px = "small", Tables 2 and 4). The values are typed in from the paper as
docs/protocol.md quotes them; where the paper gives no std (most of Table 3) the column is empty.
"""

from __future__ import annotations

import pandas as pd

from shiftlens.analyses.base import ANCHORS

LARGE, SMALL = 125, 75
MODELS = {"alexnet": "AlexNet", "resnet50": "ResNet-50", "mobilenet_v2": "MobileNetV2",
          "alexnet_aa": "AlexNet-AA", "resnet50_aa": "ResNet-50-AA", "mobilenet_v2_aa": "MobileNetV2-AA"}
"""shiftlens model name -> the paper's; the anti-aliased ones are Bin-5, as the paper's."""

_TABLE1 = """
alexnet fc6 0.830 0.030 0.823 0.031 0.928 0.012 0.822 0.031 0.816 0.032
alexnet fc7 0.949 0.016 0.946 0.018 0.977 0.007 0.945 0.015 0.944 0.017
alexnet fc8 0.918 0.032 0.908 0.043 0.955 0.016 0.912 0.032 0.908 0.035
resnet50 fc 0.945 0.022 0.935 0.044 0.961 0.015 0.942 0.025 0.930 0.042
mobilenet_v2 fc 0.931 0.029 0.920 0.040 0.954 0.017 0.930 0.027 0.917 0.041
alexnet_aa fc6 0.826 0.029 0.819 0.032 0.936 0.009 0.819 0.031 0.811 0.032
alexnet_aa fc7 0.947 0.016 0.945 0.020 0.981 0.006 0.944 0.016 0.941 0.019
alexnet_aa fc8 0.930 0.028 0.916 0.051 0.970 0.010 0.925 0.029 0.911 0.045
resnet50_aa fc 0.948 0.023 0.943 0.031 0.975 0.011 0.948 0.028 0.938 0.035
mobilenet_v2_aa fc 0.943 0.024 0.934 0.034 0.970 0.012 0.941 0.025 0.934 0.033
"""


def _similarity_rows() -> list[dict]:
    rows = []
    for line in _TABLE1.strip().splitlines():
        model, layer, *values = line.split()
        for i, anchor in enumerate(ANCHORS):
            rows.append(dict(table="1", model=model, layer=layer, patch_size=LARGE, measure=f"similarity {anchor}",
                             paper_mean=float(values[2 * i]), paper_std=float(values[2 * i + 1])))
    # Table 2 (small patches): the paper's text quotes two cells.
    for anchor, value in (("TL", 0.754), ("C", 0.874)):
        rows.append(dict(table="2", model="alexnet", layer="fc6", patch_size=SMALL, measure=f"similarity {anchor}",
                         paper_mean=value, paper_std=None))
    return rows


def _separability_rows() -> list[dict]:
    table3 = [("alexnet", "fc6", 0.999, 0.002, 0.898, 0.126), ("alexnet", "fc7", 0.995, None, 0.896, None),
              ("alexnet", "fc8", 0.984, None, 0.896, None), ("resnet50", "fc", 0.992, None, 0.889, None),
              ("mobilenet_v2", "fc", 0.989, None, 0.884, None)]
    rows = []
    for model, layer, lr, lr_std, tb, tb_std in table3:
        for task, mean, std in (("left_right", lr, lr_std), ("top_bottom", tb, tb_std)):
            rows.append(dict(table="3", model=model, layer=layer, patch_size=LARGE, measure=f"separability {task}",
                             paper_mean=mean, paper_std=std))
    return rows


PUBLISHED = pd.DataFrame(_similarity_rows() + _separability_rows())
"""One row per published cell: table, model, layer, patch_size, measure, paper_mean, paper_std."""


def _run_values(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The run's cells in the published table's keys, ImageNet weights only (the paper's numbers are for those)."""
    frames = []
    sim = tables.get("similarity")
    if sim is not None and not sim.empty:
        frames.append(pd.DataFrame({"model": sim.model, "layer": sim.layer, "weights": sim.weights,
                                    "patch_size": sim.patch_size, "measure": "similarity " + sim.anchor,
                                    "run_mean": sim["mean"], "run_std": sim["std"], "n_patches": sim.n_patches}))
    sep = tables.get("separability")
    if sep is not None and not sep.empty:
        sep = sep[sep.protocol == "paper"]  # the paper's own fold protocol
        frames.append(pd.DataFrame({"model": sep.model, "layer": sep.layer, "weights": sep.weights,
                                    "patch_size": sep.patch_size, "measure": "separability " + sep.task,
                                    "run_mean": sep.acc_mean, "run_std": sep.acc_std, "n_patches": sep.n_patches}))
    if not frames:
        return pd.DataFrame()
    values = pd.concat(frames, ignore_index=True)
    return values[values.weights == "imagenet"]


def comparison(tables: dict[str, pd.DataFrame]) -> pd.DataFrame | None:
    """`tables/paper_comparison.csv`: the paper's value beside the run's and their difference, for every published
    cell the run measured with ImageNet weights; None when the run measured none of them."""
    values = _run_values(tables)
    if values.empty:
        return None
    merged = PUBLISHED.merge(values, on=["model", "layer", "patch_size", "measure"], how="inner")
    if merged.empty:
        return None
    merged["diff"] = merged.run_mean - merged.paper_mean
    merged.insert(1, "paper_model", merged.model.map(MODELS))
    return merged[["table", "paper_model", "model", "layer", "weights", "patch_size", "measure", "paper_mean",
                   "paper_std", "run_mean", "run_std", "diff", "n_patches"]]
