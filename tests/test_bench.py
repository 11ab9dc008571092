"""Smoke tests of the benchmark (`benchmarks/`, run from the repository root) with tiny sizes: structure and
invariants only. Speed is never asserted here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from benchmarks import common, memory, precision, report, svm_speed, targets
from benchmarks.run import run_bench
from conftest import blob_rgba
from shiftlens.canvases import CanvasRenderer, grid

REPO = Path(__file__).resolve().parents[1]


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


@pytest.fixture(scope="module")
def tiny_run(tiny_model) -> dict:
    """One whole benchmark run on the tiny network (compiled, both CPU precisions, PNG baseline), once."""
    st = common.Settings(models=(tiny_model,), device="cpu", batch_size=8, rounds=1, unit_seconds=0.01,
                         png_models=(tiny_model,), png_images=8, svm=False, memory=False, peak=True)
    return run_bench(st)


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
        n = common.unit_side(bs, 300)
        assert (n * n) % bs == 0
        p, s = common.unit_grid(n)
        assert len(grid(224, p, s)[0]) == n * n


def test_auto_choice_needs_small_error_and_more_speed():
    errs = {"bf16": {"map": 0.001, "table": 0.0}}
    assert precision.auto_choice(errs, {"fp32": 10, "bf16": 30}) == "bf16"
    assert precision.auto_choice({"bf16": {"map": 0.01, "table": 0.0}}, {"fp32": 10, "bf16": 30}) == "fp32"
    assert precision.auto_choice(errs, {"fp32": 30, "bf16": 10}) == "fp32"


def test_forward_pipeline_and_png_sections_run_on_a_tiny_model(tiny_run, tiny_model):
    m = tiny_run["models"][tiny_model]
    for prec in ("fp32", "bf16"):
        v = m["precisions"][prec]
        assert v["forward_ips"] > 0 and v["pipeline_ips"] > 0 and v["pipeline_vs_forward"] > 0
        assert v["compiled"] and v["compile_error"] is None  # the compiled path ran, not its eager fallback
        assert len(v["rounds"]) == 1
    assert m["flops_per_image"] > 0
    assert m["unit"]["images"] % 8 == 0  # whole batches
    assert 0 <= m["precision_error"]["bf16"]["map"] < 1
    assert m["png_baseline_ips"] > 0 and m["speedup_vs_png"]["best"] > 0
    assert m["best_precision"] in ("fp32", "bf16")
    assert set(tiny_run["matmul_peak_gflops"]) == {"fp32", "bf16"}
    assert tiny_run["auto_precision"]["choice"] == "fp32"  # no real-weights error measured in this run
    assert "svm" not in tiny_run and "peak_rss_mb" not in tiny_run


def test_pipeline_unit_saves_a_part_a_run_could_read(tiny_model, tmp_path):
    from shiftlens.store import ResultsDir

    built = common.build(tiny_model)
    patch = common.bench_patches(1)[0][0]
    rgba = patch.resized(64)
    cfg = common.unit_config(tiny_model, 64, 40, 8, torch.device("cpu"), str(tmp_path))
    results = ResultsDir(tmp_path)
    with common.extractor(built, torch.device("cpu"), "fp32", False, 8) as ex:
        part = common.pipeline_unit(ex, built, patch, rgba, cfg, results)
    assert results.part_state(part.meta) is None  # the stored part matches the metadata a run would expect
    stored = results.load_part(results.part_path(tiny_model, 64, patch.id))
    assert stored.meta == part.meta and stored.meta.untrained and stored.n == 5
    assert set(stored.arrays) == set(part.arrays) and any(k.startswith("similarity/pool/") for k in stored.arrays)


def test_targets_table_is_the_single_source_of_json_and_report(tiny_run, tmp_path):
    assert tiny_run["targets"] == targets.evaluate(tiny_run)
    names = [r["target"] for r in tiny_run["targets"]]
    assert names and all(any(n.startswith(t.name) for t in targets.TARGETS) for n in names)
    out = tmp_path / "results.json"
    report.write(tiny_run, out)
    assert json.loads(out.read_text())["targets"] == tiny_run["targets"]
    table = report.target_table(tiny_run)
    assert list(table.columns[0].cells) == names
    assert list(table.columns[2].cells) == [r["goal"] for r in tiny_run["targets"]]
    rendered = report.report(tiny_run)
    assert rendered[1].title == table.title and any(isinstance(x, str) and x.startswith("took") for x in rendered)


def test_targets_read_every_section_and_compare_both_ways():
    info = {"models": {"alexnet": {"precisions": {"fp32": {"pipeline_vs_forward": 0.8}},
                                   "speedup_vs_png": {"auto": 3.0, "auto_precision": "fp32", "best": 6.0,
                                                      "best_precision": "bf16"}}},
            "svm": {"samples": 5625, "svm_speedup": 25.0, "svm_acc_diff": 1.5},
            "peak_rss_mb": {"ratio_4_vs_1": 1.05}}
    rows = {r["target"]: (r["value"], r["met"]) for r in targets.evaluate(info)}
    assert rows == {"pipeline_vs_forward alexnet fp32": (0.8, False), "speedup_vs_png alexnet (bf16)": (6.0, True),
                    "speedup_vs_png alexnet (fp32, auto)": (3.0, False), "svm_speedup (5,625 samples)": (25.0, True),
                    "svm_acc_diff (points)": (1.5, False), "peak_rss 4 patches / 1 patch": (1.05, True)}
    assert targets.evaluate({"models": {}}) == []  # a skipped section gives no row
    assert common.Settings().png_models == targets.png_models() == ("alexnet", "resnet50")


def test_committed_results_targets_follow_from_their_numbers():
    info = json.loads((REPO / "benchmarks" / "results.json").read_text())
    assert [(r["target"], r["value"], r["met"]) for r in targets.evaluate(info)] == \
        [(r["target"], r["value"], r["met"]) for r in info["targets"]]


def test_memory_child_runs_a_function_in_a_fresh_process():
    res = memory.in_fresh_process(model="efficientnet_lite0", patches=1, stride=149, device="cpu", batch_size=4)
    assert 100 < res["peak_rss_mb"] < 8_000  # torch alone is larger than 100 MB
    assert res["cuda_peak_mb"] is None or res["cuda_peak_mb"] > 0


def test_peak_rss_is_the_childs_own_not_its_parents():
    """ru_maxrss survives exec on Linux: a child of a 1.5 GB parent would report 1.5 GB before doing anything."""
    code = "from benchmarks.rss import peak_rss_mb; print(peak_rss_mb())"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    big = bytearray(1200 * 2**20)
    big[::4096] = b"\1" * len(big[::4096])  # touch every page, so the parent's resident memory is 1.2 GB
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                 check=True).stdout)
    from benchmarks.rss import peak_rss_mb

    assert peak_rss_mb() > 1200 and 1 < child < 400
    del big


def test_memory_child_failure_is_reported_not_raised():
    st = common.Settings(memory_model="no_such_model")
    res = memory.peak_rss(st, torch.device("cpu"), lambda s: None)
    assert res["available"] is False and "no_such_model" in res["note"]


def test_sub_grids_pick_the_coarser_grids_positions_out_of_the_fine_one():
    size, stride = common.unit_grid(38)  # 75 px at stride 4
    ys, xs = grid(224, size, stride)
    stride_n, pick = svm_speed.sub_grid(19, 38, size, stride)
    assert stride_n == 8
    assert np.array_equal(np.stack([ys[pick], xs[pick]]), np.stack(grid(224, size, 8)))
    assert svm_speed.sub_grid(15, 38, size, stride) is None  # stride 10: not a multiple of 4


def test_svm_bench_compares_both_solvers_on_real_features():
    st = common.Settings(svm_grids=(15, 19), compile=False)  # 15 is not a sub-grid of 19 (stride 8): skipped
    res = svm_speed.svm_bench(st, torch.device("cpu"), lambda s: None)
    assert [x["samples"] for x in res["sizes"]] == [361] and res["sizes"][0]["stride"] == 8
    assert res["samples"] == 361 and res["svm_speedup"] == res["sizes"][-1]["svm_speedup"] > 0
    assert res["svm_acc_diff"] <= 1.0
    for x in res["sizes"]:
        assert x["acc_torch"] == pytest.approx(x["acc_sklearn"], abs=0.01)


def test_shiftlens_bench_outside_the_repository_is_one_line(tmp_path, monkeypatch):
    from shiftlens.cli import app

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["bench", "--quick"])
    assert res.exit_code == 2
    assert "python -m benchmarks" in res.output and "Traceback" not in res.output


def test_shiftlens_bench_runs_the_benchmarks_package_from_the_repository_root(monkeypatch, capfd):
    from shiftlens.cli import app

    monkeypatch.chdir(REPO)
    res = CliRunner().invoke(app, ["bench", "--help"])
    assert res.exit_code == 0
    assert "usage: python -m benchmarks" in capfd.readouterr().out  # the subprocess's own help
