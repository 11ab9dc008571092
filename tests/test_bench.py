"""Smoke tests of the benchmark machinery with tiny sizes. Speed is never asserted here."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from conftest import blob_rgba
from shiftlens import bench
from shiftlens.canvases import CanvasRenderer, grid


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 7, stride=8)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


@pytest.fixture(scope="module")
def tiny_model() -> str:
    from shiftlens.canvases import Normalisation
    from shiftlens.models import LayerSpec, ModelEntry, register

    register(ModelEntry(name="test_bench_tiny", description="tiny test network", build=TinyNet,
                        normalisation=Normalisation(),
                        layers={"pool": LayerSpec("pool", "pool", "pooled"), "fc": LayerSpec("fc", "fc", "logits")},
                        default_layers=("pool", "fc"), logits_layer="fc"))
    return "test_bench_tiny"


def test_reused_buffer_renders_exactly_like_a_fresh_batch():
    rng = np.random.default_rng(0)
    pool: dict = {}
    for size, width in ((30, 22), (45, 45), (20, 31)):  # renderers one after another share the pooled buffer
        rgba = blob_rgba(max(size, width))[:size, :width]
        r = CanvasRenderer(rgba, canvas=64, pool=pool)
        ys, xs = grid(64, max(size, width), 3)
        order = rng.permutation(len(ys))
        for bs in (16, 5, 16, 3, 9):
            for s in range(0, len(order), bs):
                i = order[s : s + bs]
                assert torch.equal(r.render(ys[i], xs[i]), r.render(ys[i], xs[i], reuse=True))


def test_unit_grid_gives_whole_batches():
    for bs in (8, 32, 64):
        n = bench.unit_side(bs, 300)
        assert (n * n) % bs == 0
        p, s = bench.unit_grid(n)
        assert len(grid(224, p, s)[0]) == n * n


def test_auto_choice_needs_small_error_and_more_speed():
    errs = {"bf16": {"map": 0.001, "table": 0.0}}
    assert bench.auto_choice(errs, {"fp32": 10, "bf16": 30}) == "bf16"
    assert bench.auto_choice({"bf16": {"map": 0.01, "table": 0.0}}, {"fp32": 10, "bf16": 30}) == "fp32"
    assert bench.auto_choice(errs, {"fp32": 30, "bf16": 10}) == "fp32"


def test_bench_runs_end_to_end_with_tiny_sizes(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the baseline is still found through the source checkout
    st = bench.Settings(models=(tiny_model,), device="cpu", batch_size=8, rounds=1, unit_seconds=0.01,
                        png_models=(tiny_model,), png_images=8, svm=False, memory=False, peak=True)
    info = bench.run_bench(st)
    m = info["models"][tiny_model]
    for prec in ("fp32", "bf16"):
        v = m["precisions"][prec]
        assert v["forward_ips"] > 0 and v["pipeline_ips"] > 0 and v["pipeline_vs_forward"] > 0
        assert v["compiled"] and v["compile_error"] is None  # the compiled path ran, not its eager fallback
    assert m["flops_per_image"] > 0
    assert 0 <= m["precision_error"]["bf16"]["map"] < 1
    assert m["png_baseline_ips"] > 0 and m["speedup_vs_png"]["best"] > 0
    assert set(info["matmul_peak_gflops"]) == {"fp32", "bf16"}
    assert info["auto_precision"]["choice"] == "fp32"  # no real-weights error measured in this run
    out = tmp_path / "results.json"
    bench.write(info, out)
    assert json.loads(out.read_text())["models"][tiny_model]["unit"]["images"] % 8 == 0
    assert any(isinstance(x, str) for x in bench.report(info))


def test_svm_row_is_skipped_or_measured(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "shiftlens.analyses.svm", None)  # as if the solver did not exist yet
    res = bench.svm_bench(bench.Settings(svm_grids=(10,)), torch.device("cpu"), lambda s: None)
    assert res["available"] is False and "not available" in res["note"]


def test_svm_bench_compares_both_solvers_on_sub_grids_of_one_feature_grid():
    st = bench.Settings(svm_grids=(15, 19, 38), compile=False)  # strides 10 (not a sub-grid: skipped), 8 and 4
    res = bench.svm_bench(st, torch.device("cpu"), lambda s: None)
    assert [x["samples"] for x in res["sizes"]] == [361, 1444] and [x["stride"] for x in res["sizes"]] == [8, 4]
    assert res["samples"] == 1444 and res["svm_speedup"] == res["sizes"][-1]["svm_speedup"] > 0
    assert res["svm_acc_diff"] <= 1.0
    for x in res["sizes"]:
        assert x["acc_torch"] == pytest.approx(x["acc_sklearn"], abs=0.01)
