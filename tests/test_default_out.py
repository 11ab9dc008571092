"""A config that names no results folder gets one of its own, and a refusal offers a free folder before --force."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shiftlens import api, config
from shiftlens.analyses.arithmetic.config import ArithmeticConfig
from shiftlens.cli import app
from shiftlens.errors import ShiftlensError


def out_of(preset: str, **overrides) -> str:
    return config.with_out(config.with_overrides(config.load(preset), **overrides)).out


def test_the_readme_examples_without_out_each_get_their_own_folder():
    """Every README `run` example without --out, after the quick start: none lands on results/quick but the quick
    start itself, and no two share a folder."""
    examples = [dict(), dict(models=["efficientnet_lite0"]), dict(models=["alexnet:fc6", "alexnet_aa:fc6"], sizes=[125]),
                dict(models=["torchvision:convnext_tiny:avgpool", "timm:resnet18:global_pool"], weights="random"),
                dict(background="texture:brick"), dict(background="mean"), dict(shift="circular"),
                dict(protocol="crop", patches="images", sizes=[320]),
                dict(models=["resnet50", "resnet50_aps"], weights="random", shift="circular"),
                dict(models=["alexnet:fc6@noflip.pth", "alexnet:fc6@flip.pth"])]
    outs = [out_of("quick", **kw) for kw in examples]
    assert outs[0] == "results/quick"
    assert len(set(outs)) == len(outs), outs
    assert outs[1] == "results/quick-models-efficientnet_lite0"
    assert out_of("quick", models=["efficientnet_lite0:pool,fc"], background="texture:brick") == \
        "results/quick-models-efficientnet_lite0_pool_fc-background-texture_brick"
    assert all(len(Path(o).name) <= 80 for o in outs)


def test_the_paper_preset_keeps_its_folder_for_any_coco_and_a_toml_file_finds_the_same_folder(tmp_path):
    assert out_of("paper") == "results/paper"
    assert out_of("paper", patches="coco:annotations/instances_train2017.json:train2017") == "results/paper"
    assert out_of("paper", stride=2) == "results/paper-stride-2"
    toml = tmp_path / "my.toml"
    toml.write_text(config.to_toml(config.with_overrides(config.load("paper"), stride=2)))
    assert "out" not in toml.read_text() and config.with_out(config.load(str(toml))).out == "results/paper-stride-2"
    given = config.with_overrides(config.load("quick"), stride=4, out="here")
    assert config.with_out(given).out == "here"


def test_settings_that_change_no_number_share_the_folder_and_long_names_use_the_fingerprint():
    assert out_of("quick", device="cpu", batch_size=8, compile="off", workers=3) == "results/quick"
    long = out_of("quick", models=[f"alexnet:fc{i}" for i in (6, 7, 8)] * 1 + ["resnet50:fc", "mobilenet_v2:fc"],
                  background="texture:gravel", sizes=[50, 60, 70])
    assert re.fullmatch(r"results/quick-models-sizes-background-[0-9a-f]{8}", long), long


def test_the_refusal_offers_a_free_folder_first_and_says_what_force_deletes(tiny_config):
    api.run(tiny_config)
    other = dataclasses.replace(tiny_config, stride=48)
    with pytest.raises(ShiftlensError) as exc:
        api.run(other)
    message = str(exc.value)
    free = f"{tiny_config.out}-2"
    assert message.index(f"--out {free}") < message.index("--force")
    assert "--force would delete its 4 part(s), 3 table(s)" in message and "\n" not in message
    Path(free).mkdir()
    with pytest.raises(ShiftlensError, match=re.escape(f"--out {tiny_config.out}-3")):
        api.run(other)


def test_a_run_without_out_writes_into_its_own_folder_and_ends_with_the_site(tiny_config, tmp_path, monkeypatch):
    """The CLI's quick start and a second config side by side, both without --out; the run prints the site."""
    monkeypatch.chdir(tmp_path)
    toml = tmp_path / "tiny.toml"
    values = config.to_toml(dataclasses.replace(tiny_config, out=None, site=True, sizes=[96]))
    toml.write_text(values)
    first = CliRunner().invoke(app, ["run", str(toml)])
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(app, ["run", str(toml), "--stride", "48"])
    assert second.exit_code == 0, second.output
    folders = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert len(folders) == 2 and all(f.startswith("quick-") for f in folders), folders
    site = re.search(r"site: (\S+)", second.output)
    assert site and Path(site.group(1), "index.html").is_file(), second.output


def test_arithmetic_without_out_gets_a_folder_of_its_own():
    assert ArithmeticConfig().with_out().out == "results/arithmetic"
    assert ArithmeticConfig(inverter="optimise", inversion_steps=100).with_out().out == \
        "results/arithmetic-inverter-optimise-inversion-steps-100"
    assert ArithmeticConfig(problems=30, device="cpu").with_out().out == "results/arithmetic-problems-30"
    assert ArithmeticConfig(out="x").with_out().out == "x"


def test_config_says_where_its_results_would_go():
    result = CliRunner().invoke(app, ["config", "paper", "--stride", "2"])
    assert result.exit_code == 0, result.output
    assert "# results go to results/paper-stride-2 " in result.output
    assert config.load("quick").out is None and "out" not in config.to_toml(config.load("quick"))
