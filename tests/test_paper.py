"""The paper's published numbers beside a run's: only for comparable cells (paper networks, ImageNet weights)."""

from __future__ import annotations

import pandas as pd
import pytest

from shiftlens.paper import PUBLISHED, comparison


def similarity(weights: str, model: str = "alexnet", layer: str = "fc6", size: int = 125) -> pd.DataFrame:
    return pd.DataFrame({"model": model, "layer": layer, "weights": weights, "patch_size": size,
                         "anchor": ["TL", "TR", "C", "BL", "BR"], "mean": [0.8, 0.81, 0.9, 0.82, 0.83],
                         "std": 0.01, "n_patches": 200})


def test_published_tables_hold_every_cell_of_table_1_and_the_quoted_ones():
    t1 = PUBLISHED[PUBLISHED.table == "1"]
    assert len(t1) == 10 * 5 and t1.paper_mean.between(0.8, 1.0).all()
    cell = t1[(t1.model == "alexnet_aa") & (t1.layer == "fc6") & (t1.measure == "similarity C")]
    assert cell.paper_mean.item() == 0.936 and cell.paper_std.item() == 0.009
    assert set(PUBLISHED.table) == {"1", "2", "3"}


def test_comparison_puts_the_paper_beside_the_run_with_differences():
    sep = pd.DataFrame({"model": "alexnet", "layer": "fc6", "weights": "imagenet", "patch_size": 125,
                        "protocol": ["paper", "paper", "shuffled", "shuffled"],
                        "task": ["left_right", "top_bottom"] * 2, "acc_mean": [0.99, 0.9, 1.0, 1.0],
                        "acc_std": 0.05, "n_patches": 200})
    cmp = comparison({"similarity": similarity("imagenet"), "separability": sep})
    assert len(cmp) == 5 + 2  # five anchors of Table 1, two tasks of Table 3 (paper folds only)
    tl = cmp[cmp.measure == "similarity TL"].iloc[0]
    assert tl.paper_model == "AlexNet" and tl.paper_mean == 0.830 and tl["diff"] == pytest.approx(0.8 - 0.830)
    tb = cmp[cmp.measure == "separability top_bottom"].iloc[0]
    assert tb.paper_mean == 0.898 and tb.run_mean == 0.9


def test_no_comparison_for_untrained_weights_other_models_or_sizes():
    assert comparison({"similarity": similarity("random (untrained)")}) is None
    assert comparison({"similarity": similarity("imagenet", model="efficientnet_lite0", layer="pool")}) is None
    assert comparison({"similarity": similarity("imagenet", size=100)}) is None
    assert comparison({}) is None
