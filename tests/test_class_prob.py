"""The class analysis: softmax probability of the patch's ImageNet classes at every position, from the logits tap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import part_meta
from shiftlens.analyses.base import PatchContext, anchors
from shiftlens.analyses.class_prob import ARRAY_KEY, CLASSES_KEY, NO_SET, ClassProb
from shiftlens.canvases import grid
from shiftlens.config import RunConfig
from shiftlens.errors import ShiftlensError
from shiftlens.models.imagenet_classes import class_indices
from shiftlens.store import Part


def ctx(category: str = "zebra", logits_layer: str | None = "fc") -> PatchContext:
    ys, xs = grid(64, 40, 8)
    n = int(round(np.sqrt(len(ys))))
    return PatchContext(model="m", weights="w", layers=["pool"], patch_id="p", category=category, patch_size=40,
                        ys=ys, xs=xs, n=n, anchors=anchors(n), config=RunConfig(), device=torch.device("cpu"),
                        logits_layer=logits_layer)


def test_map_is_the_summed_softmax_of_the_patch_classes_in_any_batch_order():
    c = ctx()
    n2 = c.n * c.n
    logits = torch.randn(n2, 1000, generator=torch.Generator().manual_seed(0))
    a = ClassProb(c)
    order = torch.randperm(n2, generator=torch.Generator().manual_seed(1))
    for chunk in order.split(7):
        a.update(chunk, {"fc": logits[chunk]})
    out = a.finish()
    got = out[ARRAY_KEY]
    assert out[CLASSES_KEY].tolist() == class_indices("zebra")
    want = torch.softmax(logits, 1)[:, class_indices("zebra")].sum(1).view(c.n, c.n).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert ClassProb.extra_layers("fc") == ["fc"] and ClassProb.extra_layers(None) == []


def test_unmapped_category_gets_no_map_and_a_model_without_logits_is_refused():
    a = ClassProb(ctx(category="widget"))
    a.update(torch.arange(4), {"fc": torch.zeros(4, 1000)})
    out = a.finish()
    assert ARRAY_KEY not in out and out[CLASSES_KEY].size == 0  # no map; the empty set says why in the table
    with pytest.raises(ShiftlensError, match="no logits layer"):
        ClassProb(ctx(logits_layer=None))
    b = ClassProb(ctx())
    with pytest.raises(ShiftlensError, match="1000 ImageNet class scores"):
        b.update(torch.arange(4), {"fc": torch.zeros(4, 10)})


def test_table_has_one_row_per_part_with_a_map_or_an_empty_set():
    m = np.array([[0.1, 0.2], [0.3, 0.4]], np.float32)
    parts = [Part(part_meta(patch_id="a", n=2), {ARRAY_KEY: m, CLASSES_KEY: np.array([1, 2], np.int16)}),
             Part(part_meta(patch_id="b", n=2), {}),
             Part(part_meta(patch_id="c", n=2), {CLASSES_KEY: np.zeros(0, np.int16)})]
    df = ClassProb.tables(parts, RunConfig())["class_prob"]
    assert list(df.columns) == ["model", "layer", "weights", "patch_size", "patch", "category", "mean_prob",
                                "min_prob", "max_prob", "n_classes", "classes"]
    assert df.patch.tolist() == ["a", "c"] and df.mean_prob.iloc[0] == pytest.approx(0.25)
    assert df.n_classes.tolist() == [2, 0] and np.isnan(df.mean_prob.iloc[1]) and df.classes.iloc[1] == NO_SET
    assert ClassProb.tables([parts[1]], RunConfig()) == {}
