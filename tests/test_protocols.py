"""The protocols end to end: textured and image backgrounds, circular shifts, the crop window; what run.json and the
results folder record, resume with a changed background, and one-line refusals."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import xarray as xr
from PIL import Image
from typer.testing import CliRunner

from shiftlens import api
from shiftlens.canvases import parse_background
from shiftlens.cli import app
from shiftlens.errors import ShiftlensError


@pytest.fixture
def tiny(tiny_config, constant_model):
    """The tiny config with the conftest's cheap test network (a strided conv tap that depends on position)."""
    return dataclasses.replace(tiny_config, models=[f"{constant_model}:spatial"])


def _small(cfg, **fields):
    return dataclasses.replace(cfg, sizes=[96], max_patches=1, **fields)


def test_texture_background_is_recorded_written_and_changes_the_numbers(tiny, tmp_path):
    white = api.run(_small(tiny, out=str(tmp_path / "white")))
    textured = api.run(_small(tiny, background="texture:grass", out=str(tmp_path / "grass")))
    run = json.loads((textured.out / "run.json").read_text())
    assert run["config"]["background"] == "texture:grass"
    png = np.asarray(Image.open(textured.out / "background.png"))
    assert np.array_equal(png, parse_background("texture:grass", 224).image)
    assert not (white.out / "background.png").exists()  # a flat colour needs no image
    a, b = white.tables["similarity"]["mean"].to_numpy(), textured.tables["similarity"]["mean"].to_numpy()
    assert a.shape == b.shape and not np.allclose(a, b)


def test_a_changed_background_image_recomputes_the_parts_and_an_unchanged_one_is_reused(tiny, tmp_path):
    path = tmp_path / "bg.png"
    Image.fromarray(np.full((64, 64, 3), 30, np.uint8)).save(path)
    cfg = _small(tiny, background=f"image:{path}")
    first = api.run(cfg)
    again = api.run(cfg)
    assert (first.computed, again.computed, again.skipped) == (1, 0, 1)
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(path)
    changed = api.run(cfg)
    assert changed.computed == 1
    assert (np.asarray(Image.open(changed.out / "background.png")) == 200).all()
    with pytest.raises(ShiftlensError, match="different config"):  # another background is another config
        api.run(dataclasses.replace(cfg, background="gray"))
    assert api.run(dataclasses.replace(cfg, background="gray"), force=True).computed == 1
    assert not (changed.out / "background.png").exists()  # --force removed the previous run's own file


def test_circular_run_covers_the_full_period(tiny, tmp_path):
    result = api.run(_small(tiny, shift="circular", stride=56, out=str(tmp_path / "circ")))
    assert result.record.positions == {96: 16}
    ds = xr.open_zarr(result.out / "maps.zarr", group="test_constant/spatial/p96", consolidated=False)
    assert list(ds.y.values) == [0, 56, 112, 168] and ds.attrs["shift"] == "circular"


def test_crop_run_slides_the_window_and_writes_the_resized_image(tiny, tmp_path):
    cfg = dataclasses.replace(tiny, protocol="crop", patches="images", sizes=[288], max_patches=1,
                              out=str(tmp_path / "crop"))
    result = api.run(cfg)
    assert result.record.positions == {288: 9} and [p.id for p in result.record.patches] == ["cat_01"]
    png = np.asarray(Image.open(next((result.out / "patches" / "p288").glob("*.png"))))
    assert png.shape == (288, 288, 4)
    ds = xr.open_zarr(result.out / "maps.zarr", group="test_constant/spatial/p288", consolidated=False)
    assert list(ds.x.values) == [0, 32, 64] and ds.attrs["protocol"] == "crop"
    sim = result.tables["similarity"]
    assert len(sim) == 5 and (sim["mean"] < 1).all()


def _one_line(args):
    result = CliRunner().invoke(app, args)
    text = (result.stdout or "") + (getattr(result, "stderr", "") or "")
    lines = [line for line in text.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), text
    return lines[0]


def test_bad_protocol_input_is_one_line(tmp_path):
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((100, 150, 3), np.uint8)).save(small)
    out = ["--out", str(tmp_path / "o"), "--no-site", "--models", "efficientnet_lite0"]
    assert "small.png is 150x100, smaller than the 224px canvas" in _one_line(
        ["run", "--protocol", "crop", "--patches", f"image:{small}", "--sizes", "288", *out])
    assert "unknown texture 'wood': use one of brick, grass, gravel" in _one_line(
        ["run", "--background", "texture:wood", *out])
    assert "#RRGGBB" in _one_line(["run", "--background", "#12", *out])
    assert "sizes are the side the image is resized to" in _one_line(
        ["run", "--protocol", "crop", "--patches", "images", *out])
    assert "circular is for the paste protocol" in _one_line(
        ["run", "--protocol", "crop", "--shift", "circular", "--patches", "images", "--sizes", "288", *out])
    assert "unknown protocol 'slide'" in _one_line(["run", "--protocol", "slide", *out])
    assert not (tmp_path / "o").exists()
