"""The units analysis (issue 12): position vs identity per unit with known answers, running top-k against brute
force, the cross-part accumulator's shards under interruption and recomputation, and `units visualise`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from shiftlens import api
from shiftlens.analyses.base import PatchContext, anchors
from shiftlens.analyses.unit_state import UnitAccumulator, shard_paths, shard_summary
from shiftlens.analyses.units import UnitOutputs, Units, merge_topk, open_units
from shiftlens.cli import app
from shiftlens.config import RunConfig
from shiftlens.errors import ShiftlensError
from shiftlens.store import ResultsDir

from conftest import part_meta

N = 6  # 6 x 6 positions
PATCHES = ["a", "b", "c", "d"]


def synthetic_feats(i: int) -> torch.Tensor:
    """(N*N, 4) features of patch i: unit 0 = the x position, unit 1 = the patch's identity, unit 2 = constant,
    unit 3 = position x identity (no main effect of either)."""
    ys, xs = np.divmod(np.arange(N * N), N)
    sign = 1.0 if i % 2 else -1.0
    f = np.stack([xs.astype(float), np.full(N * N, 3.0 * i + 1), np.full(N * N, 7.0), sign * (xs - (N - 1) / 2)], 1)
    return torch.as_tensor(f, dtype=torch.float32)


def run_synthetic(root: Path, feats_of=synthetic_feats, patches=PATCHES, topk: int = 3, batch: int = 7):
    """Stream hand-made features through the units analysis as api.run does; returns the UnitOutputs."""
    results = ResultsDir(root)
    cfg = RunConfig(models=["m"], sizes=[75], stride=8, canvas=75 + 8 * (N - 1), out=str(root), units_topk=topk,
                    analyses=["units"])
    acc = UnitAccumulator(results, "m", 75)
    for i, pid in enumerate(patches):
        ctx = PatchContext(model="m", weights="imagenet", layers=["L"], patch_id=pid, category="c", patch_size=75,
                           ys=np.zeros(N * N), xs=np.zeros(N * N), n=N, anchors=anchors(N), config=cfg,
                           device=torch.device("cpu"), states={"units": acc})
        a = Units(ctx)
        f = feats_of(i)
        order = torch.randperm(N * N, generator=torch.Generator().manual_seed(i))
        for s in range(0, N * N, batch):
            idx = order[s:s + batch]
            a.update(idx, {"L": f[idx]})
        meta = part_meta(model="m", patch_size=75, patch_id=pid, n=N)
        results.save_part(meta, a.finish())
        acc.saved(pid)
    acc.close()
    return UnitOutputs(results, results.parts(), cfg)


def test_known_answers_position_identity_interaction(tmp_path):
    out = run_synthetic(tmp_path)
    (g,) = out.groups
    s = g.shares()
    assert s["position_share"][0] == pytest.approx(1.0, abs=1e-12)  # unit = x position
    assert s["identity_share"][0] == pytest.approx(0.0, abs=1e-12)
    assert s["identity_share"][1] == pytest.approx(1.0, abs=1e-12)  # unit = patch identity
    assert s["position_share"][1] == pytest.approx(0.0, abs=1e-12)
    assert not g.live[2] and np.isnan(s["position_share"][2])  # constant: silent, no shares
    assert s["interaction_share"][3] == pytest.approx(1.0, abs=1e-12)
    # the tuning map of the position unit is the x coordinate of the grid
    np.testing.assert_allclose(g.tuning[0], np.tile(np.arange(N, dtype=float), (N, 1)), atol=1e-12)
    # against the two-way decomposition of the full tensor
    full = np.stack([synthetic_feats(i).numpy().astype(np.float64) for i in range(len(PATCHES))])  # (N_p, P, D)
    np.testing.assert_allclose(g.total, full.reshape(-1, 4).var(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g.position, full.mean(0).var(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g.identity, full.mean(1).var(0), rtol=1e-10, atol=1e-12)
    row = out.tables()["units"].iloc[0]
    assert row.n_silent == 1 and row.n_units == 4 and row.n_patches == 4 and row.n_positions == N * N
    assert row.frac_position_dominant == pytest.approx(1 / 3)  # unit 0 of the three live units
    assert row.effective_position_units == pytest.approx(1.0)  # only unit 0 has position variance


def test_running_topk_equals_brute_force(tmp_path):
    rng = np.random.default_rng(0)
    data = [torch.as_tensor(rng.normal(size=(N * N, 5)), dtype=torch.float32) for _ in PATCHES]
    out = run_synthetic(tmp_path, feats_of=lambda i: data[i], topk=5, batch=5)
    (g,) = out.groups
    full = np.stack([d.numpy() for d in data])  # (patches, positions, units)
    for u in range(5):
        flat = full[:, :, u].ravel()
        best = np.argsort(-flat, kind="stable")[:5]
        np.testing.assert_array_equal(g.ex_patch[u], best // (N * N))
        np.testing.assert_array_equal(g.ex_pos[u], best % (N * N))
        np.testing.assert_allclose(g.ex_value[u], flat[best], rtol=1e-6)


def test_merge_topk_takes_the_best_across_parts():
    values = np.array([[[5.0, 1.0]], [[4.0, 3.0]]])  # 2 parts, 1 unit, k=2
    positions = np.array([[[10, 11]], [[20, 21]]])
    v, p, q = merge_topk(values, positions, 3)
    assert v.tolist() == [[5.0, 4.0, 3.0]] and p.tolist() == [[0, 1, 1]] and q.tolist() == [[10, 20, 21]]


# ------------------------------------------------------------------------------------------------ through api.run
class Interrupt(Exception):
    pass


class StopAfter:
    def __init__(self, images: int) -> None:
        self.left = images

    def start(self, label, total): ...
    def stop(self): ...

    def advance(self, images, worker=None):
        self.left -= images
        if self.left <= 0:
            raise Interrupt()


class UnitsNet(nn.Module):
    """`grid`: a 4-channel stride-8 convolution averaged onto a 3 x 3 grid (36 units, linear in the pixels, so they
    code where things are); `pool`: its global average (4 units)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 8, stride=8)
        self.grid = nn.AdaptiveAvgPool2d(3)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.grid(self.conv(x))).flatten(1)


@pytest.fixture(scope="module")
def units_model() -> str:
    from shiftlens.canvases import Normalisation
    from shiftlens.models import LayerSpec, ModelEntry, register

    register(ModelEntry(name="test_units", description="test network: a 3 x 3 grid of conv units and their mean",
                        build=UnitsNet, normalisation=Normalisation(), input_size=96,
                        layers={n: LayerSpec(n, n, n) for n in ("grid", "pool")}, default_layers=("grid", "pool")))
    return "test_units"


@pytest.fixture
def units_config(tmp_path, patch_dir, units_model, monkeypatch):
    monkeypatch.setattr("shiftlens.analyses.units.FEATURED", 2)  # two units per kind in the figures: faster
    return RunConfig(models=[f"{units_model}:grid,pool"], patches=f"folder:{patch_dir}", sizes=[32, 48], canvas=96,
                     stride=16, weights="random", out=str(tmp_path / "out"), batch_size=16, site=False,
                     analyses=["similarity", "units"], device="cpu", units_topk=4, compile="off")


def shares(result) -> pd.DataFrame:
    return result.tables["units_per_unit"]


def test_run_writes_units_outputs_and_resumes_to_identical_shares(units_config, tmp_path):
    reference = api.run(dataclasses.replace(units_config, out=str(tmp_path / "reference")))
    root = Path(units_config.out)
    # stopped in the second patch of the first size: part 1 saved, but the size's shard never written
    with pytest.raises(Interrupt):
        api.run(units_config, progress=StopAfter(25 + 10))
    assert len(list((root / "parts").glob("*/p*/*.npz"))) == 1
    assert not shard_paths(ResultsDir(root), "test_units", 32)
    resumed = api.run(units_config)
    assert resumed.computed == 4 and resumed.skipped == 0  # the saved part was in no shard: recomputed
    again = api.run(units_config)
    assert again.computed == 0 and again.skipped == 4
    pd.testing.assert_frame_equal(shares(again), shares(reference), rtol=1e-9, check_exact=False)
    pd.testing.assert_frame_equal(again.tables["units"], reference.tables["units"], rtol=1e-9, check_exact=False)
    ds = open_units(root / "maps.zarr", "test_units", "grid", 32)
    assert ds.sizes["unit"] == len(shares(again).query("layer == 'grid' and patch_size == 32"))
    assert ds.attrs["untrained"] and ds.sizes["rank"] == 4
    assert any(p.name.startswith("units_") for p in again.figures)


def test_a_lost_cross_part_state_has_its_parts_recomputed_in_the_same_run(units_config, tmp_path, monkeypatch):
    """Issue 23: the driver recounts after each size; a state that was never written (as a Ray worker killed with
    finished parts in it) has those parts computed again within the run, and the tables equal an intact run's."""
    from shiftlens.analyses.unit_state import UnitAccumulator

    reference = api.run(dataclasses.replace(units_config, out=str(tmp_path / "reference")))
    lost = []
    close = UnitAccumulator.close

    def lose_the_first(self):
        if not lost:
            lost.append((self.size, sorted(self.held)))
            self.sums.clear()  # the process holding it is gone: nothing written
            return
        close(self)

    monkeypatch.setattr(UnitAccumulator, "close", lose_the_first)
    logs: list[str] = []
    result = api.run(units_config, log=logs.append)
    assert [(size, len(held)) for size, held in lost] == [(32, 2)]
    assert any("test_units 32px: 2 part(s) are recomputed: its units contribution was never saved" in line
               for line in logs), logs
    assert result.computed == 6 and shard_summary(ResultsDir(units_config.out), "test_units", 32)["parts"] == 2
    for name in ("units", "units_per_unit"):
        assert ((Path(units_config.out) / "tables" / f"{name}.csv").read_bytes()
                == (reference.out / "tables" / f"{name}.csv").read_bytes())


def test_recomputed_part_invalidates_the_shard_that_held_it(units_config):
    first = api.run(units_config)
    results = ResultsDir(units_config.out)
    assert shard_summary(results, "test_units", 32) == {"shards": 1, "parts": 2}
    # a part's file goes bad: it is recomputed, the shard naming it is dropped, its neighbour redone too
    victim = sorted((results.root / "parts").glob("*/p32/*.npz"))[0]
    victim.write_bytes(b"truncated")
    again = api.run(units_config)
    assert again.computed == 2 and again.skipped == 2
    assert shard_summary(results, "test_units", 32) == {"shards": 1, "parts": 2}
    pd.testing.assert_frame_equal(shares(again), shares(first), rtol=1e-9, check_exact=False)


# ------------------------------------------------------------------------------------------------ visualise
@pytest.fixture(scope="module")
def units_run(tmp_path_factory, units_model) -> RunConfig:
    from conftest import write_patch_dir

    root = tmp_path_factory.mktemp("units_run")
    cfg = RunConfig(models=[f"{units_model}:grid,pool"], patches=f"folder:{write_patch_dir(root / 'patches')}",
                    sizes=[32], canvas=96, stride=16, weights="random", out=str(root / "out"), batch_size=16,
                    site=False, analyses=["units"], device="cpu", compile="off")
    api.run(cfg)
    return cfg


def test_visualise_raises_the_unit_and_records_the_image(units_run):
    units_config = units_run
    args = ["units", "visualise", units_config.out, "--model", "test_units:grid", "--unit", "5", "--steps", "40",
            "--size", "32", "--tv-weight", "0.05"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "gain" in result.output
    from shiftlens.figures.units import read_synthetic

    (img,) = read_synthetic(ResultsDir(units_config.out)).images
    assert img.unit == 5 and img.untrained and (Path(units_config.out) / img.file).is_file()
    # far above its value at the random start (measured: -0.146 -> 1.08, a gain of 8.4 times the size of the start value)
    assert img.value > 0 > img.start_value and img.gain > 5


@pytest.mark.parametrize("args, expected", [
    (["--model", "test_units:grid", "--unit", "99999"], "unit 99999 is out of range"),
    (["--model", "test_units:nope", "--unit", "1"], "layer nope was not tapped"),
    (["--model", "other:grid", "--unit", "1"], "model other is not in the run"),
    (["--model", "test_units:grid", "--unit", "1", "--device", "tpu"], "--device tpu: unknown device; use one of auto"),
    (["--model", "test_units:grid", "--unit", "1", "--device", "cuda"], "--device cuda: no CUDA device is available"),
    (["--model", "test_units:grid", "--unit", "1", "--position", "0,0"], "--position picks the canvas of a caricature"),
    (["--model", "test_units:grid", "--caricature", "--unit", "1"], "--unit is not used by --caricature"),
    (["--model", "test_units:grid", "--caricature", "--size", "64"], "--size is not used by --caricature"),
])
def test_visualise_bad_input_is_one_line(units_run, args, expected, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without CUDA
    result = CliRunner().invoke(app, ["units", "visualise", units_run.out, *args])
    assert result.exit_code == 2, result.output
    assert expected in result.output and len(result.output.strip().splitlines()) == 1


def test_visualise_never_writes_through_a_link(units_run, tmp_path):
    """Issue 22: figures/units as a link to a folder outside the results: refused, nothing written there."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(units_run.out, copy)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(copy / "figures" / "units", ignore_errors=True)
    (copy / "figures" / "units").symlink_to(elsewhere)
    result = CliRunner().invoke(app, ["units", "visualise", str(copy), "--model", "test_units:grid", "--unit", "5",
                                      "--steps", "2", "--size", "32"])
    assert result.exit_code == 2 and "symbolic link" in result.output, result.output
    assert list(elsewhere.iterdir()) == []


@pytest.fixture(scope="module")
def silent_run(tmp_path_factory) -> RunConfig:
    """A run of a network whose unit 0 is rectified and silent on noise but fires on dark parts of the canvases
    (test_inversion.DarkSpot), and whose unit 1 never fires."""
    from conftest import write_patch_dir
    from test_inversion import DarkSpot

    from shiftlens.canvases import Normalisation
    from shiftlens.models import LayerSpec, ModelEntry, register

    from test_inversion import TopLeftPixel

    for name, net in (("test_silent", DarkSpot), ("test_topleft", TopLeftPixel)):
        register(ModelEntry(name=name, description="test network: rectified units", build=net,
                            normalisation=Normalisation(mean=(0, 0, 0), std=(1, 1, 1)), input_size=96,
                            layers={"out": LayerSpec("out", "out", "rectified units")}, default_layers=("out",)))
    root = tmp_path_factory.mktemp("silent_run")
    cfg = RunConfig(models=["test_silent:out", "test_topleft:out"], patches=f"folder:{write_patch_dir(root / 'patches')}", sizes=[32],
                    canvas=96, stride=32, weights="random", out=str(root / "out"), batch_size=16, site=False,
                    analyses=["similarity"], device="cpu", compile="off")
    api.run(cfg)
    return cfg


def test_visualise_climbs_from_a_canvas_when_noise_leaves_the_unit_silent(silent_run):
    from shiftlens.figures.units import read_synthetic

    args = ["units", "visualise", silent_run.out, "--model", "test_silent:out", "--steps", "20", "--size", "96"]
    result = CliRunner().invoke(app, [*args, "--unit", "0"])
    assert result.exit_code == 0, result.output
    assert "climbed from the run's canvas" in result.output
    (img,) = read_synthetic(ResultsDir(silent_run.out)).images
    assert img.kind == "maximise" and img.patch in {"cat_00", "cup_01"} and img.position is not None
    assert img.start_value > 0 and img.value > img.start_value
    assert img.seed == 0  # from a canvas the jitter keeps the asked seed
    result = CliRunner().invoke(app, [*args, "--unit", "1"])
    assert result.exit_code == 2 and "nothing here drives it" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_visualise_records_the_seed_it_climbed_from(silent_run):
    from shiftlens.inversion import InversionSettings
    from shiftlens.figures.units import read_synthetic

    live = next(k for k in range(16) if float(InversionSettings(size=96, seed=k).start_image()[0, 0, 0, 0]) > 0.5)
    assert live > 0  # seed 0 leaves the unit silent, so the optimiser moves on
    args = ["units", "visualise", silent_run.out, "--model", "test_topleft:out", "--unit", "0", "--steps", "5",
            "--size", "96", "--seed", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    img = next(i for i in read_synthetic(ResultsDir(silent_run.out)).images if i.model == "test_topleft")
    assert img.seed == live and img.patch is None and img.start_value > 0


def test_units_memory_benchmark_measures_the_accumulator_in_a_fresh_process():
    from benchmarks.units_memory import measure

    res = measure(400, 256)
    assert res["positions"] == 400 and res["units"] == 256
    assert res["bound_mb"] == pytest.approx(400 * 256 * 8 / 2**20, abs=0.05)
    assert res["peak_with_shard_write_mb"] >= 0 and res["write_shard_s"] >= 0


def test_requested_units_are_checked_against_each_layer_before_any_work(units_config):
    """--units 99999 was dropped silently (issue 22): grid has 36 units at this canvas, pool 4."""
    with pytest.raises(ShiftlensError, match=r"--units 99999 is out of range: test_units:grid has 36 units, "
                                             r"test_units:pool has 4 units; give indices from 0 to 35"):
        api.plan(dataclasses.replace(units_config, units=[3, 99999]))
    with pytest.raises(ShiftlensError, match="--units -1 is out of range: unit indices start at 0"):
        api.plan(dataclasses.replace(units_config, units=[-1]))
    notes = api.plan(dataclasses.replace(units_config, units=[3, 10, 35])).notes
    assert [n for n in notes if n.startswith("--units")] == [
        "--units 10 is beyond the 4 units of test_units:pool: only the other layers' figures show it",
        "--units 35 is beyond the 4 units of test_units:pool: only the other layers' figures show it"]
    assert not Path(units_config.out).exists()


def test_visualise_calls_a_file_a_file_and_a_missing_folder_missing(tmp_path):
    (tmp_path / "afile").write_text("x")
    for path, says in ((tmp_path / "afile", "is a file, and a folder is needed"),
                       (tmp_path / "nope", "does not exist")):
        result = CliRunner().invoke(app, ["units", "visualise", str(path), "--model", "m:l", "--unit", "1"])
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
        assert f"results folder {path} {says}" in result.output.replace("\n", "")
