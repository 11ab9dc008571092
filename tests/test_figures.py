"""Every figure kind reads cleanly: no text on text, no text on another panel, no legend on data (issue 27).

The study figures are made from a tiny random-weights run of every study analysis, with its parts cloned under
the paper's model names to give both a one-row and a six-row figure with long labels; the unit figures from a
units run (with and without a synthetic image); the arithmetic figures from a tiny `shiftlens arithmetic` run.
Each figure is checked as its maker saves it (tests/figure_layout.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from shiftlens import api, figures
from shiftlens.figures import units as unit_figures
from shiftlens.config import STUDY_ANALYSES, RunConfig
from shiftlens.store import Part, ResultsDir

from conftest import write_patch_dir
from figure_layout import checking_save, layout_problems
from test_units import units_model  # noqa: F401  (fixture: registers the tiny test network)
from test_arithmetic import linear_model, tiny_arithmetic_toml  # noqa: F401  (fixture: registers test_linear)

PAPER_MODELS = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


def patch_save(monkeypatch, fn) -> None:
    """Each maker saves through its own module's `save` (figures/NAME.py): swap it in every module that registered
    one."""
    for module in {sys.modules[maker.__module__] for maker in figures.FIGURE_MAKERS}:
        monkeypatch.setattr(module, "save", fn)


# -- the checker itself -----------------------------------------------------------------------------------------
def test_checker_finds_text_on_text_and_a_legend_on_data():
    fig, axes = plt.subplots(1, 2, figsize=(6, 3))
    axes[0].set_title("a title long enough to run into the next panel's title " * 2)
    axes[1].set_title("right")
    axes[1].plot([0, 1], [0, 1], label="a line under the legend")
    axes[1].legend(loc="center")
    problems = layout_problems(fig)
    plt.close(fig)
    assert any("overlaps text 'right'" in p for p in problems)
    assert any("legend covers the line" in p for p in problems)

    fig, ax = plt.subplots(figsize=(4, 3), layout="constrained")
    ax.plot([0, 1], [0, 1], label="line")
    ax.set_title("title")
    ax.set_xlabel("x (px)")
    ax.legend(loc="upper left")  # the line runs from lower left to upper right: the corner is empty
    fig.suptitle("suptitle")
    assert layout_problems(fig) == []
    plt.close(fig)


def test_checker_finds_bars_under_a_legend_and_crowded_ticks():
    fig, (ax, crowded) = plt.subplots(1, 2, figsize=(6, 3))
    ax.bar([0, 1], [1, 1], label="bars")
    ax.legend(loc="center")
    crowded.set_xticks(np.arange(20), [f"label {i}" for i in range(20)])
    problems = layout_problems(fig)
    plt.close(fig)
    assert any("legend covers the bar" in p for p in problems)
    assert any("'label 0' overlaps text 'label 1'" in p for p in problems)


# -- the study figures ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("figures")
    cfg = RunConfig(models=["efficientnet_lite0:pool,fc"], patches=f"folder:{write_patch_dir(root / 'in', n=4)}",
                    sizes=[75], stride=32, weights="random", out=str(root / "out"), batch_size=32, site=False,
                    analyses=list(STUDY_ANALYSES), device="cpu", compile="off")
    api.run(cfg)
    rd = ResultsDir(root / "out")
    return rd, rd.read_run(), rd.parts()


def _as_models(parts: list[Part], models: list[str], layers: list[str]) -> list[Part]:
    """The parts again under each model name, keeping only `layers` (one figure row per model and layer)."""
    out = []
    for model in models:
        for p in parts:
            arrays = {k: v for k, v in p.arrays.items() if k.split("/")[1] in layers or k.split("/")[1] not in
                      ("pool", "fc")}
            out.append(Part(p.meta.model_copy(update={"model": model}), arrays))
    return out


@pytest.mark.parametrize("models,layers", [(PAPER_MODELS[:1], ["fc"]), (PAPER_MODELS, ["pool", "fc"])],
                         ids=["one row", "six rows"])
def test_study_figures_read_cleanly(study, tmp_path, monkeypatch, models, layers):
    rd, record, parts = study
    found: dict[str, list[str]] = {}
    patch_save(monkeypatch, checking_save(figures.save, found))
    written = figures.make_all(_as_models(parts, models, layers), tmp_path, record)
    names = {p.name for p in written}
    assert {"similarity_p75.png", "separability_p75.png", "invariance_tau_p75.png",
            "location_error_p75.png"} <= names == set(found)
    assert {k: v for k, v in found.items() if v} == {}


def test_similarity_and_location_maps_have_position_ticks_and_labels(study, tmp_path, monkeypatch):
    rd, record, parts = study
    seen = {}

    def keep(fig, path):
        fig.canvas.draw()
        seen[path.name] = fig
        return path

    patch_save(monkeypatch, keep)
    figures.make_all(parts, tmp_path, record)
    for name, where in (("similarity_p75.png", "top-left corner"), ("location_error_p75.png", "centre")):
        fig = seen[name]
        maps = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
        bottom = maps[-1]
        ticks = [float(t) for t in bottom.get_xticks() if bottom.get_xlim()[0] <= t <= bottom.get_xlim()[1]]
        assert len(ticks) >= 2 and max(ticks) <= record.config.canvas  # positions in px on the canvas
        assert "(px)" in bottom.get_xlabel() and where in fig.get_suptitle()
        assert "(px)" in maps[0].get_ylabel()
        plt.close(fig)


def test_separability_error_bars_fit_the_axes(study, tmp_path, monkeypatch):
    rd, record, parts = study
    seen = {}
    patch_save(monkeypatch, lambda fig, path: seen.setdefault(path.name, fig) and path)
    # a part whose folds spread widely: mean + std above 1
    spread = []
    for p in parts:
        arrays = dict(p.arrays)
        for k, v in arrays.items():
            if k.startswith("separability/") and "/acc_" in k:
                arrays[k] = np.where(np.arange(v.shape[-1]) % 2 == 0, 1.0, 0.55).astype(v.dtype) * np.ones_like(v)
        spread.append(Part(p.meta, arrays))
    figures.separability.separability_bars(spread, tmp_path, record)
    fig = seen["separability_p75.png"]
    for ax in fig.axes:
        lo, hi = ax.get_ylim()
        for coll in ax.collections:
            for seg in coll.get_segments():
                assert lo <= seg[:, 1].min() and seg[:, 1].max() <= hi
    plt.close(fig)


# -- the unit figures ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("with_synthetic", [False, True], ids=["tiles", "tiles and synthetic image"])
def test_unit_figures_read_cleanly(tmp_path, monkeypatch, units_model, with_synthetic):  # noqa: F811
    from PIL import Image

    from shiftlens.analyses.units import UnitOutputs

    monkeypatch.setattr("shiftlens.analyses.units.FEATURED", 3)
    cfg = RunConfig(models=[f"{units_model}:grid,pool"], patches=f"folder:{write_patch_dir(tmp_path / 'in')}",
                    sizes=[32], canvas=96, stride=16, weights="random", out=str(tmp_path / "out"), batch_size=16,
                    site=False, analyses=["similarity", "units"], device="cpu", compile="off", units_topk=4, units=[1])
    api.run(cfg)
    rd = ResultsDir(tmp_path / "out")
    record = rd.read_run()
    units = UnitOutputs(rd, rd.parts(), record.config)
    found: dict[str, list[str]] = {}
    monkeypatch.setattr(unit_figures, "save", checking_save(unit_figures.save, found))
    synthetic = {}
    if with_synthetic:
        (rd.root / "figures" / "units").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((96, 96, 3), 128, np.uint8)).save(rd.root / "figures" / "units" / "s.png")
        synthetic = {1: Path("figures/units/s.png")}
    for g in units.groups:
        unit_figures.unit_figure(g, rd, record, synthetic)
    assert len(found) == len(units.groups) >= 2
    assert {k: v for k, v in found.items() if v} == {}


# -- the arithmetic figures ---------------------------------------------------------------------------------------
def test_arithmetic_figures_read_cleanly(tmp_path, monkeypatch, linear_model):  # noqa: F811
    from typer.testing import CliRunner

    from shiftlens.figures import arithmetic as arithmetic_figures
    from shiftlens.cli import app

    found: dict[str, list[str]] = {}
    monkeypatch.setattr(arithmetic_figures, "_save", checking_save(arithmetic_figures._save, found))
    patches = write_patch_dir(tmp_path / "patches")
    f = tiny_arithmetic_toml(tmp_path, patches)
    result = CliRunner().invoke(app, ["arithmetic", str(f), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert {"arithmetic_expr_sub.png", "arithmetic_retrieval.png"} <= set(found)
    assert {k: v for k, v in found.items() if v} == {}


def test_exemplar_mosaic_frames_each_canvas_in_grey():
    white = [np.ones((4, 4, 3), np.float32)] * 3
    m = unit_figures.mosaic(white)
    assert m.shape == (2 * 4 + 3 * 2, 2 * 4 + 3 * 2, 3)
    assert np.all(m[:2] == unit_figures.GAP_GREY) and np.all(m[:, 6:8] == unit_figures.GAP_GREY)  # frame, gap
    assert np.all(m[2:6, 2:6] == 1.0) and np.all(m[8:12, 8:12] == 1.0)  # canvases; the empty fourth cell is white


@pytest.mark.parametrize("fields,words", [({}, "patch's top-left corner"), ({"shift": "circular"}, "rolled"),
                                          ({"protocol": "crop", "sizes": [288]}, "window")])
def test_map_axes_say_what_a_position_is(fields, words):
    assert words in figures.offset_label(RunConfig(**fields))
