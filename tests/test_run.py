"""End to end: the results folder, resume after an interruption, config checks, and the CLI's bad-input lines."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from urllib.error import URLError

import pandas as pd
import pytest
import torch
import xarray as xr
from typer.testing import CliRunner

from shiftlens import api
from shiftlens.cli import app
from shiftlens.errors import ShiftlensError
from shiftlens.store import ResultsDir, file_key


def test_run_writes_every_output(tiny_config):
    result = api.run(tiny_config)
    out = Path(tiny_config.out)
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete" and info["fingerprint"] == tiny_config.fingerprint()
    assert info["models"]["efficientnet_lite0"]["weights"]["untrained"] is True
    assert {"torch", "numpy", "python"} <= set(info["versions"]) and info["precision"] in ("fp32", "bf16")
    assert set(info["timings"]) == {"efficientnet_lite0/p96", "efficientnet_lite0/p160"}
    sim = pd.read_csv(out / "tables" / "similarity.csv")
    assert list(sim.columns) == ["model", "layer", "weights", "patch_size", "anchor", "mean", "std", "n_patches"]
    assert len(sim) == 2 * 2 * 5 and (sim.n_patches == 2).all() and (sim.weights == "random (untrained)").all()
    per = pd.read_csv(out / "tables" / "similarity_per_patch.csv")
    assert len(per) == 2 * 2 * 2 * 5
    ds = xr.open_zarr(out / "maps.zarr", group="efficientnet_lite0/pool/p96", consolidated=False)
    assert ds["similarity"].dims == ("patch", "anchor", "y", "x") and ds["similarity"].shape == (2, 5, 5, 5)
    assert list(ds.anchor.values) == ["TL", "TR", "C", "BL", "BR"] and list(ds.y.values) == [0, 32, 64, 96, 128]
    # the zarr map and the per-patch table agree
    patch = str(ds.patch.values[0])
    row = per[(per.layer == "pool") & (per.patch_size == 96) & (per.patch == patch) & (per.anchor == "C")]
    assert float(ds["similarity"].sel(patch=patch, anchor="C").mean()) == pytest.approx(row["mean"].item(), abs=1e-6)
    assert (out / "figures" / "similarity_p96.png").is_file() and (out / "figures" / "similarity_p160.png").is_file()
    assert (out / "patches" / "p96" / f"{file_key(patch)}.png").is_file()
    assert result.computed == 4 and result.skipped == 0


class Interrupt(Exception):
    pass


class StopAfter:
    """A progress sink that kills the run after a number of images, like Ctrl-C in the middle of a patch."""

    def __init__(self, images: int) -> None:
        self.left = images

    def start(self, label, total): ...
    def stop(self): ...

    def advance(self, images):
        self.left -= images
        if self.left <= 0:
            raise Interrupt()


def test_interrupted_run_resumes_without_recomputing_and_ends_with_the_same_tables(tiny_config, tmp_path):
    reference = api.run(dataclasses.replace(tiny_config, out=str(tmp_path / "reference")))
    with pytest.raises(Interrupt):
        api.run(tiny_config, progress=StopAfter(25 + 10))  # first patch (25 positions) done, second half-way
    results = ResultsDir(tiny_config.out)
    done = sorted((results.root / "parts").rglob("*.npz"))
    assert len(done) == 1 and not list((results.root / "parts").rglob("*.tmp"))
    mtime = done[0].stat().st_mtime_ns
    resumed = api.run(tiny_config)
    assert resumed.skipped == 1 and resumed.computed == 3
    assert done[0].stat().st_mtime_ns == mtime  # not rewritten
    for name in ("similarity", "similarity_per_patch"):
        pd.testing.assert_frame_equal(resumed.tables[name], reference.tables[name], atol=1e-6, check_exact=False)
    again = api.run(tiny_config)
    assert again.computed == 0 and again.skipped == 4


def test_a_folder_from_another_config_is_refused_unless_forced(tiny_config):
    api.run(tiny_config)
    other = dataclasses.replace(tiny_config, stride=48)
    before = (Path(tiny_config.out) / "tables" / "similarity.csv").read_text()
    with pytest.raises(ShiftlensError, match="different config"):
        api.run(other)
    assert (Path(tiny_config.out) / "tables" / "similarity.csv").read_text() == before  # nothing damaged
    forced = api.run(other, force=True)
    assert forced.computed == 4
    assert json.loads((Path(tiny_config.out) / "run.json").read_text())["config"]["stride"] == 48


def test_alexnet_fc6_is_taken_before_its_inplace_relu(patch_dir, tmp_path):
    from shiftlens.config import RunConfig

    cfg = RunConfig(models=["alexnet:fc6,fc6relu,fc8"], patches=f"folder:{patch_dir}", sizes=[160], stride=64,
                    weights="random", out=str(tmp_path / "a"), site=False, max_patches=1)
    spec = api.parse_spec(cfg.models[0])
    model, _ = api.build_with_weights(spec.entry, "random")
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    from shiftlens.stream import FeatureExtractor

    ex = FeatureExtractor(model, [spec.entry.layer(l) for l in spec.layers], spec.entry.normalisation, torch.device("cpu"), "fp32")
    feats = ex(torch.randn(3, 3, 224, 224).to(memory_format=torch.channels_last))
    assert len(calls) == 1  # every tap from one forward pass
    assert (feats["fc6"] < 0).any() and (feats["fc6relu"] >= 0).all()
    torch.testing.assert_close(torch.relu(feats["fc6"]), feats["fc6relu"])
    api.run(cfg)


# --- the CLI -------------------------------------------------------------------------------------------------

runner = CliRunner()


def cli(*args: str):
    result = runner.invoke(app, list(args))
    text = (result.stdout or "") + (getattr(result, "stderr", "") or "")
    return result, text


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--models", "vgg99"], "unknown model 'vgg99'"),
        (["--models", "alexnet:fc9"], "unknown layer 'fc9' for model alexnet: valid layers are"),
        (["--patches", "folder:/no/such/dir"], "does not exist"),
        (["--stride", "0"], "stride 0 is invalid"),
        (["--sizes", "300"], "larger than the 224px canvas"),
        (["--sizes", "7x"], "--sizes"),
        (["--precision", "fp8"], "unknown precision"),
        (["--analyses", "sorcery"], "unknown analysis"),
        (["--stride", "60", "--analyses", "similarity,separability"], "needs at least 10 positions per patch"),
    ],
)
def test_cli_bad_input_is_one_clear_line(args, expected, tmp_path):
    result, text = cli("run", *args, "--out", str(tmp_path / "o"), "--weights", "random")
    assert result.exit_code == 2, text
    assert expected in text and "Traceback" not in text
    assert not (tmp_path / "o").exists()


def test_cli_unknown_preset_and_malformed_config(tmp_path):
    result, text = cli("run", "fastest")
    assert result.exit_code == 2 and "unknown preset 'fastest'" in text
    bad = tmp_path / "bad.toml"
    bad.write_text("stride = [unclosed\n")
    result, text = cli("run", str(bad))
    assert result.exit_code == 2 and "not valid TOML" in text and str(bad) in text
    typo = tmp_path / "typo.toml"
    typo.write_text("strides = 4\n")
    result, text = cli("run", str(typo))
    assert result.exit_code == 2 and "unknown key 'strides'" in text


def test_cli_offline_imagenet_names_the_file_and_the_cache(monkeypatch, patch_dir, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*a, **k):
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)  # torch.hub's own messages still run
    result, text = cli("run", "--models", "alexnet", "--patches", f"folder:{patch_dir}", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "Traceback" not in text
    assert not (tmp_path / "o").exists()  # checked before the results folder is made
    assert "alexnet-owt-7be5be79.pth" in text and str(tmp_path / "torch" / "hub" / "checkpoints") in text
    assert len([line for line in text.splitlines() if line.strip()]) == 1


def test_cli_dry_run_prints_plan_and_estimate(patch_dir, tmp_path):
    result, text = cli("run", "--patches", f"folder:{patch_dir}", "--stride", "32", "--weights", "random",
                       "--dry-run", "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, text
    assert "efficientnet_lite0" in text and "img/s" in text and "total:" in text
    assert "at stride 1 (every position, as the paper): 195,000 images" in text  # 3 models x 2 x (150² + 100²)
    assert not (tmp_path / "o").exists()


def test_cli_run_end_to_end_in_a_subprocess(patch_dir, tmp_path):
    """The installed entry point, as a user runs it; a corrupt part is recomputed and said, not a traceback."""
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "shiftlens", "run", "--models", "efficientnet_lite0", "--patches", f"folder:{patch_dir}", "--stride", "24",
           "--sizes", "125", "--weights", "random", "--out", str(out), "--no-site"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "results:" in done.stdout and "random (untrained)" in done.stdout
    part = next((out / "parts").rglob("*.npz"))
    part.write_bytes(b"truncated")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "1 finished part(s) are recomputed: its file is unreadable" in done.stderr
    assert "(1 parts computed, 1 resumed)" in done.stdout


def test_paper_dry_run_plans_the_full_protocol_without_coco(tmp_path):
    result, text = cli("run", "paper", "--models", "alexnet:fc6", "--weights", "random", "--dry-run",
                       "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, text
    assert "6,500,000" in text and "22,500 / 10,000" in text and " 200 " in text
    assert "at stride 1" not in text  # the run itself is at stride 1
    result, text = cli("run", "paper", "--models", "alexnet:fc6", "--weights", "random", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "needs COCO" in text
