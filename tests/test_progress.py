"""The Python API reports progress when asked: rich bars (progress=True), a callback, or nothing by default."""

from __future__ import annotations

import dataclasses
import re

import pytest

from shiftlens import api
from shiftlens.progress import CallbackProgress, RichProgress, Silent, make_progress


def test_a_callback_hears_every_bar_from_zero_to_its_total(tiny_config):
    calls: list[tuple[str, int, int]] = []
    api.run(tiny_config, progress=lambda label, done, total: calls.append((label, done, total)))
    labels = list(dict.fromkeys(label for label, _, _ in calls))
    assert labels == ["efficientnet_lite0 96px", "efficientnet_lite0 160px"]
    for label in labels:
        seen = [(done, total) for lab, done, total in calls if lab == label]
        assert seen[0][0] == 0 and seen[-1][0] == seen[-1][1] > 0  # starts at 0, ends at the total
        assert [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) > 2


def test_progress_true_draws_the_command_lines_bars_on_stderr(tiny_config, capsys):
    api.run(dataclasses.replace(tiny_config, sizes=[96]), progress=True)
    err = capsys.readouterr().err
    assert "efficientnet_lite0 96px" in err and "img/s" in err


def test_what_progress_accepts():
    assert isinstance(make_progress(None), Silent) and isinstance(make_progress(False), Silent)
    assert isinstance(make_progress(True), RichProgress)
    assert isinstance(make_progress(print), CallbackProgress)
    bar = RichProgress()
    assert make_progress(bar) is bar
    with pytest.raises(TypeError, match="progress=3"):
        make_progress(3)


def test_a_compiling_bar_says_so_until_the_first_images():
    heard = []
    progress = CallbackProgress(lambda label, done, total: heard.append(label))
    progress.start("m 75px · compiling the forward pass", 10)
    progress.advance(5)
    assert heard == ["m 75px", "m 75px"]
    bar = RichProgress()
    bar.start("m 75px · compiling the forward pass", 10)
    assert "compiling" in bar.bar.tasks[0].description
    bar.advance(5)
    assert bar.bar.tasks[0].description == "m 75px"
    bar.stop()


def test_run_help_shows_what_each_preset_sets():
    from typer.testing import CliRunner

    from shiftlens.cli import app

    output = CliRunner().invoke(app, ["run", "--help"]).output
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())  # the help's box, unwrapped
    assert "(quick, stamps presets: 8; paper preset: 1)" in text  # --stride
    assert "paper preset: fp32" in text and "(default: imagenet)" in text
    assert "results/PRESET, plus each setting that differs" in text
