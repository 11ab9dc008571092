import numpy as np
import pytest
import torch

from shiftlens import api
from conftest import part_meta
from shiftlens.analyses.base import anchors
from shiftlens.store import Part
from shiftlens.analyses.similarity import Similarity, cosine
from shiftlens.config import RunConfig


def test_anchor_indices_match_the_protocol():
    n = 150
    a = anchors(n)
    assert a["TL"] == 0 and a["TR"] == n - 1 and a["BL"] == (n - 1) * n and a["BR"] == n * n - 1
    assert a["C"] == (n // 2 - 1) * n + (n // 2 - 1)  # even n: (n/2 - 1, n/2 - 1)
    assert anchors(7)["C"] == 3 * 7 + 3  # odd n: the exact centre


def test_cosine_exact_for_identical_and_safe_for_zero_vectors():
    f = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -3.0], [0.1, 0.7, 0.3]])
    a = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    s = cosine(f, a)
    assert not torch.isnan(s).any()
    assert s[0, 0] == 1.0 and s[1, 1] == 1.0 and s[0, 1] == 0.0 and s[1, 0] == 0.0
    assert s[2, 0] == pytest.approx(-1.0, abs=1e-6)
    expected = float(np.dot([0.1, 0.7, 0.3], [1, 2, 3]) / np.linalg.norm([0.1, 0.7, 0.3]) / np.linalg.norm([1, 2, 3]))
    assert s[3, 0] == pytest.approx(expected, abs=1e-6)


def test_position_independent_tap_gives_a_map_of_exactly_one(constant_model, patch_dir, tmp_path):
    cfg = RunConfig(models=[constant_model], patches=f"folder:{patch_dir}", sizes=[40], stride=7, canvas=64,
                    weights="random", out=str(tmp_path / "o"), batch_size=3, site=False, analyses=["similarity"])
    result = api.run(cfg)
    parts = {(p.patch_id): p for p in api.ResultsDir(cfg.out).parts()}
    for part in parts.values():
        const = part.get("similarity", "const", "maps")
        assert const.shape == (5, 4, 4) and (const == 1.0).all()
        spatial = part.get("similarity", "spatial", "maps")
        assert (spatial < 0.9999).any()  # the position-dependent tap is not trivially 1
        # every map equals exactly 1 at its own anchor, even with anchors split across batches
        for k, idx in enumerate(anchors(4).values()):
            assert spatial[k].ravel()[idx] == 1.0
    table = result.tables["similarity"]
    const_rows = table[table.layer == "const"]
    assert (const_rows["mean"] == 1.0).all() and (const_rows["std"] == 0.0).all()


def test_tables_are_the_mean_and_population_std_of_per_patch_means():
    rng = np.random.default_rng(0)
    parts = [Part(part_meta(patch_id=f"p{i}"), {"similarity/fc/maps": rng.random((5, 3, 3)).astype(np.float32)})
             for i in range(4)]
    tables = Similarity.tables(parts, RunConfig())
    per_patch, summary = tables["similarity_per_patch"], tables["similarity"]
    assert list(summary.columns) == ["model", "layer", "weights", "patch_size", "anchor", "mean", "std", "n_patches"]
    assert list(per_patch.columns) == ["model", "layer", "weights", "patch_size", "patch", "category", "anchor", "mean"]
    means = np.array([p.arrays["similarity/fc/maps"][2].mean() for p in parts])  # anchor C
    row = summary[summary.anchor == "C"].iloc[0]
    assert row["mean"] == pytest.approx(means.mean()) and row["std"] == pytest.approx(means.std(ddof=0))
    assert row["n_patches"] == 4


def test_compiled_run_matches_eager_and_pads_the_last_batch(constant_model, patch_dir, tmp_path):
    """torch.compile changes speed, not numbers: maps equal the eager run's to float rounding, with a batch size that
    leaves a short last batch (padded to one shape) and anchors split across batches."""
    maps = {}
    for mode in ("off", "on"):
        cfg = RunConfig(models=[constant_model], patches=f"folder:{patch_dir}", sizes=[40], stride=7, canvas=64,
                        weights="random", out=str(tmp_path / mode), batch_size=3, compile=mode, site=False,
                        analyses=["similarity"])
        result = api.run(cfg)
        assert result.record.models[constant_model].compiled is (mode == "on")
        assert result.record.models[constant_model].batch_size == 3
        maps[mode] = {p.patch_id: p.get("similarity", "spatial", "maps") for p in api.ResultsDir(cfg.out).parts()}
    assert maps["on"].keys() == maps["off"].keys()
    for pid in maps["off"]:
        np.testing.assert_allclose(maps["on"][pid], maps["off"][pid], atol=1e-5)


def test_compile_failure_falls_back_to_eager(constant_model, patch_dir, tmp_path, monkeypatch):
    import shiftlens.stream as stream_mod

    def broken(fn, **kw):
        def call(*a):
            raise RuntimeError("no C++ compiler found")
        return call

    monkeypatch.setattr(stream_mod.torch, "compile", broken)
    cfg = RunConfig(models=[constant_model], patches=f"folder:{patch_dir}", sizes=[40], stride=7, canvas=64,
                    weights="random", out=str(tmp_path / "o"), batch_size=3, compile="on", site=False,
                    analyses=["similarity"])
    result = api.run(cfg)
    assert result.record.models[constant_model].compiled is False
    assert any("torch.compile failed" in n and "no C++ compiler" in n for n in result.record.notes)
    part = next(iter(api.ResultsDir(cfg.out).parts()))
    assert (part.get("similarity", "const", "maps") == 1.0).all()


def test_auto_batch_and_compile_resolve_per_device():
    from shiftlens.stream import COMPILE_MIN_IMAGES, resolve_batch_size, resolve_compile

    cpu = torch.device("cpu")
    assert resolve_batch_size(0, cpu) == 16 and resolve_batch_size(5, cpu) == 5
    from shiftlens.models import parse_spec

    for name in ("alexnet", "alexnet_aa", "alexnet_aa3"):  # fc-heavy: measured fastest at 64 on the CPU
        assert resolve_batch_size(0, cpu, parse_spec(name).entry.auto_batch) == 64
        assert resolve_batch_size(8, cpu, parse_spec(name).entry.auto_batch) == 8
    assert resolve_batch_size(0, cpu, parse_spec("resnet50").entry.auto_batch) == 16
    assert resolve_compile("auto", cpu, COMPILE_MIN_IMAGES) and not resolve_compile("auto", cpu, COMPILE_MIN_IMAGES - 1)
    assert resolve_compile("on", cpu, 1) and not resolve_compile("off", cpu, 10 ** 9)
