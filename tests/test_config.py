"""Config loading: every value's type is checked against RunConfig's fields, counting mistakes are refused, and the
TOML that `shiftlens config` prints reads back to the same config."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from shiftlens import config
from shiftlens.config import PRESETS, RunConfig, check_types, load, to_toml, with_overrides
from shiftlens.errors import ShiftlensError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "line, key, expected, shown",
    [
        ('sizes = ["75"]', "sizes", "a list of integers", "['75']"),
        ("sizes = [75.5]", "sizes", "a list of integers", "[75.5]"),
        ('max_patches = "2"', "max_patches", "an integer (or left out)", "'2'"),
        ('background = [255, 255, "a"]', "background", "a string or a list of integers", "[255, 255, 'a']"),
        ('models = [["a"]]', "models", "a list of strings", "[['a']]"),
        ('models = "alexnet"', "models", "a list of strings", "'alexnet'"),
        ("stride = 2.5", "stride", "an integer", "2.5"),
        ("stride = true", "stride", "an integer", "True"),
        ('site = "yes"', "site", "true or false", "'yes'"),
        ("keep_aspect = 1", "keep_aspect", "true or false", "1"),
        ('min_object_size = "big"', "min_object_size", "a number", "'big'"),
        ("coco_categories = [1, 2]", "coco_categories", "a list of strings", "[1, 2]"),
        ("analyses = [true]", "analyses", "a list of strings", "[True]"),
    ],
)
def test_a_value_of_the_wrong_type_is_one_line_naming_file_key_type_and_value(tmp_path, line, key, expected, shown):
    path = write(tmp_path, line + "\n")
    with pytest.raises(ShiftlensError) as err:
        load(str(path))
    message = str(err.value)
    assert message == f"config file {path}: {key} should be {expected}, got {shown}"


@pytest.mark.parametrize("name", sorted(f.name for f in dataclasses.fields(RunConfig)))
def test_every_field_is_type_checked(tmp_path, name):
    """A table fits no field: each one is refused, so a field added later is checked without more code."""
    path = write(tmp_path, f"{name} = {{ x = 1 }}\n")
    with pytest.raises(ShiftlensError, match=f"{name} should be"):
        load(str(path))


def test_an_integer_where_a_number_belongs_is_accepted_as_a_float(tmp_path):
    cfg = load(str(write(tmp_path, "min_object_size = 40\n")))
    assert cfg.min_object_size == 40.0 and isinstance(cfg.min_object_size, float)
    assert cfg.fingerprint() == dataclasses.replace(cfg, min_object_size=40.0).fingerprint()


def test_overrides_and_direct_configs_are_checked_the_same_way():
    base = load("quick")
    with pytest.raises(ShiftlensError, match=r"override: stride should be an integer, got '2'"):
        with_overrides(base, stride="2")
    with pytest.raises(ShiftlensError, match=r"override: sizes should be a list of integers, got \[75.5\]"):
        with_overrides(base, sizes=[75.5])
    with pytest.raises(ShiftlensError, match="unknown key 'strides'"):
        with_overrides(base, strides=4)
    assert with_overrides(base, stride=16, max_patches=None).stride == 16  # None = flag not given
    with pytest.raises(ShiftlensError, match="sizes should be a list of integers"):
        RunConfig(sizes=["75"]).validate()
    for name in PRESETS:  # the presets themselves pass
        check_types(PRESETS[name], name)
        load(name).validate()


def test_duplicate_sizes_are_refused():
    with pytest.raises(ShiftlensError, match=r"patch size 75 is given twice in \[75, 125, 75\]"):
        RunConfig(sizes=[75, 125, 75]).validate()


@pytest.mark.parametrize(
    "kw, expected",
    [
        ({"sizes": [75], "stride": 1000}, "use --stride 149 or less"),
        ({"sizes": [75], "stride": 150}, "use --stride 149 or less"),
        ({"sizes": [224], "stride": 1}, "use patch sizes below the 224px canvas"),
        ({"sizes": [75, 125], "stride": 100}, "125px patches at stride 100"),
    ],
)
def test_one_position_per_patch_is_refused_with_the_stride_that_works(kw, expected):
    with pytest.raises(ShiftlensError, match="every similarity would be 1.0") as err:
        RunConfig(**kw).validate()
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_two_positions_per_axis_are_enough():
    RunConfig(sizes=[75], stride=149).validate()
    RunConfig(sizes=[200], stride=24, canvas=224).validate()


def test_a_folder_given_as_config_file_is_called_a_folder(tmp_path):
    folder = tmp_path / "configs.toml"
    folder.mkdir()
    for given in (tmp_path, folder):
        with pytest.raises(ShiftlensError, match=f"config file {given} is a folder"):
            load(str(given))
    with pytest.raises(ShiftlensError, match="does not exist"):
        load(str(tmp_path / "missing.toml"))


def test_bad_toml_points_to_shiftlens_config(tmp_path):
    with pytest.raises(ShiftlensError, match="`shiftlens config`"):
        load(str(write(tmp_path, "stride = [unclosed\n")))
    with pytest.raises(ShiftlensError, match=r"\[run\] should be a table"):
        load(str(write(tmp_path, "run = 3\n")))


@pytest.mark.parametrize(
    "cfg",
    [
        load("quick"),
        load("paper"),
        with_overrides(load("quick"), max_patches=3, min_object_size=40.0, keep_aspect=True, sizes=[96],
                       models=["alexnet:fc6", "resnet50"], background=[0, 10, 20], out="somewhere/else"),
    ],
)
def test_to_toml_reads_back_to_the_same_config(tmp_path, cfg):
    path = tmp_path / "round.toml"
    path.write_text(to_toml(cfg))
    again = load(str(path))
    assert again == cfg and again.fingerprint() == cfg.fingerprint()


def test_a_run_table_is_read_like_the_top_level(tmp_path):
    cfg = load(str(write(tmp_path, '[run]\npreset = "paper"\nstride = 4\n')))
    assert cfg.stride == 4 and cfg.models == config.PRESETS["paper"]["models"]
