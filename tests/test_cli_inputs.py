"""The CLI's input side: help that fits 80 columns, `shiftlens config`, one-line refusals (counting mistakes,
unwritable results folders, bad ports) and a server that shrugs off a path no file can have."""

from __future__ import annotations

import errno
import http.client
import re
import threading
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from shiftlens import config
from shiftlens.cli import app
from test_arithmetic import CANVAS, linear_model  # noqa: F401  (the fixture registers test_linear)

runner = CliRunner()


def cli(*args: str, **env: str):
    result = runner.invoke(app, list(args), env=env or None)
    text = (result.stdout or "") + (getattr(result, "stderr", "") or "")
    return result, text


def one_line_error(result, text: str) -> str:
    assert result.exit_code == 2, text
    assert "Traceback" not in text, text
    assert result.exception is None or isinstance(result.exception, SystemExit), text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    return lines[0]


def squeeze(text: str) -> str:
    """Help text without box drawing and whitespace: wrapped lines join up again."""
    return re.sub(r"[\s│╭╮╰╯─]+", "", text)


@pytest.mark.parametrize("command", ["run", "config"])
def test_help_at_80_columns_shows_every_option_in_full(command):
    result, text = cli(command, "--help", COLUMNS="80")
    assert result.exit_code == 0, text
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    params = typer.main.get_command(app).commands[command].params
    assert any(p.name == "patches" for p in params) and any(p.name == "analyses" for p in params)
    for param in params:
        if param.help:
            assert squeeze(param.help) in squeeze(text), f"--{param.name}: help cut off at 80 columns"


def test_config_command_prints_toml_that_loads_back(tmp_path):
    args = ["--models", "alexnet:fc6 resnet50", "--sizes", "75", "--stride", "16", "--max-patches", "3", "--no-site",
            "--out", str(tmp_path / "o")]
    result, text = cli("config", *args)
    assert result.exit_code == 0, text
    path = tmp_path / "effective.toml"
    path.write_text(result.stdout)
    loaded = config.load(str(path))
    assert loaded.models == ["alexnet:fc6", "resnet50"] and loaded.sizes == [75] and loaded.max_patches == 3
    assert loaded == config.with_overrides(config.load("quick"), models=["alexnet:fc6", "resnet50"], sizes=[75], stride=16,
                                           max_patches=3, site=False, out=str(tmp_path / "o"))
    again, _ = cli("config", str(path))  # a file in, the same config out
    assert again.exit_code == 0 and again.stdout == result.stdout
    paper, _ = cli("config", "paper")
    path.write_text(paper.stdout)
    assert config.load(str(path)) == config.load("paper")


def test_bad_toml_points_to_the_config_command_which_exists(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("stride = [unclosed\n")
    line = one_line_error(*cli("run", str(bad)))
    assert "`shiftlens config`" in line
    result, text = cli("config")
    assert result.exit_code == 0 and "stride = 8" in text


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--sizes", "75,75"], "patch size 75 is given twice"),
        (["--sizes", "75", "--stride", "1000"], "every similarity would be 1.0: use --stride 149 or less"),
        (["--sizes", "224"], "use patch sizes below the 224px canvas"),
        (["--workers", "2"], "--workers 2 is for the Ray executor: add --executor ray, or leave --workers out"),
        (["--ray-address", "auto"], "--ray-address auto is for the Ray executor: add --executor ray"),
        (["--units", "3,17"], "--units 3,17 is for the units analysis: add units to --analyses"),
        (["--units-topk", "3"], "--units-topk 3 is for the units analysis: add units to --analyses"),
        (["--analyses", "similarity", "--svm", "sklearn"], "--svm sklearn is the separability analysis's solver"),
        (["--square-crop"], "--square-crop crops COCO objects: use it with --patches coco:"),
        (["--units=-1", "--analyses", "similarity,units"], "--units -1 is out of range: unit indices start at 0"),
    ],
)
@pytest.mark.parametrize("command", ["run", "config"])
def test_counting_mistakes_are_refused_in_one_line(tmp_path, command, args, expected):
    line = one_line_error(*cli(command, *args, "--out", str(tmp_path / "o")))
    assert expected in line
    assert not (tmp_path / "o").exists()


def test_a_layer_given_twice_is_refused_in_one_line(tmp_path):
    line = one_line_error(*cli("run", "--models", "efficientnet_lite0:pool,pool", "--out", str(tmp_path / "o")))
    assert "model 'efficientnet_lite0': layer 'pool' is given twice" in line
    assert not (tmp_path / "o").exists()


def test_a_folder_as_config_file_is_called_a_folder(tmp_path):
    for command in ("run", "config"):
        line = one_line_error(*cli(command, str(tmp_path)))
        assert f"config file {tmp_path} is a folder" in line


def test_toml_type_errors_are_one_line(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('max_patches = "2"\n')
    line = one_line_error(*cli("run", str(path)))
    assert line == f"error: config file {path}: max_patches should be an integer (or left out), got '2'"


def test_rich_markup_in_a_message_is_printed_as_is(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("run = 3\n")
    assert "[run] should be a table" in one_line_error(*cli("config", str(path)))


@pytest.mark.parametrize("args", [
    lambda d: ["--models", f"efficientnet_lite0:pool@{d}"],
    lambda d: ["--weights", str(d)],
])
def test_a_folder_given_as_weights_is_called_a_folder(patch_dir, tmp_path, args):
    """`model@DIR` said the folder does not exist (issue 22)."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    line = one_line_error(*cli("run", *args(folder), "--patches", f"folder:{patch_dir}", "--sizes", "75", "--no-site",
                               "--out", str(tmp_path / "o")))
    assert line == (f"error: weights file {folder} is a folder, and a file is needed: give a checkpoint file, "
                    "imagenet or random")
    assert not (tmp_path / "o").exists()


def test_a_folder_given_as_background_image_is_called_a_folder(tmp_path):
    line = one_line_error(*cli("run", "--background", f"image:{tmp_path}", "--out", str(tmp_path / "o")))
    assert line.startswith(f"error: background image {tmp_path} is a folder, and a file is needed: give image:PATH")
    assert not (tmp_path / "o").exists()


def test_models_help_says_how_specs_are_split():
    """The help named ';' and repeating, the README spaces too (issue 27); split_specs takes all three, and a model's
    name after a comma starts a new spec."""
    from shiftlens.models.specs import split_specs

    result, text = cli("run", "--help", COLUMNS="80")
    assert squeeze("separate with spaces or ';', or repeat --models (a model's name after a comma starts a new "
                   "spec)") in squeeze(text)
    readme = Path(__file__).parents[1] / "README.md"
    assert squeeze("several separated by spaces or `;`, or `--models` repeated; in a comma list a name of a model "
                   "starts a new spec, so `alexnet:fc6,fc7,resnet50` is two") in squeeze(readme.read_text())
    assert split_specs(["alexnet:fc6 resnet50;mobilenet_v2", "alexnet_aa:fc6,fc7,resnet50_aa"]) == [
        "alexnet:fc6", "resnet50", "mobilenet_v2", "alexnet_aa:fc6,fc7", "resnet50_aa"]


def test_arithmetic_no_site_names_no_site_among_its_results(tmp_path, patch_dir, linear_model):  # noqa: F811
    """`--no-site` still printed `site/index.html` among the results (issue 22)."""
    f = tmp_path / "a.toml"
    f.write_text(f'canvas = {CANVAS}\nsize = 16\nstride = 8\nproblems = 0\nweights = "random"\ninverter = "none"\n'
                 f'models = ["test_linear:linear"]\npatches = "folder:{patch_dir}"\ndevice = "cpu"\n'
                 '[scenes]\ntwo = "cat_00@0,0 cup_01@30,30"\none = "cup_01@30,30"\n[expressions]\nsub = "two - one"\n')
    out = tmp_path / "out"
    result, text = cli("arithmetic", str(f), "--no-site", "--out", str(out))
    assert result.exit_code == 0, text
    assert f"results: {out.resolve()}  (figures/, tables/)" in text and "site/index.html" not in text
    assert not (out / "site").exists()


# --- unwritable results -------------------------------------------------------------------------------------


def test_run_into_a_file_as_parent_folder_is_one_line(patch_dir, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = blocker / "sub"
    line = one_line_error(*cli("run", "--models", "efficientnet_lite0:pool", "--weights", "random", "--patches",
                               f"folder:{patch_dir}", "--sizes", "75", "--stride", "32", "--max-patches", "1",
                               "--no-site", "--out", str(out)))
    assert line.startswith(f"error: cannot write {out}") and line.endswith("choose a writable --out")
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize(
    "exc, expected",
    [
        (lambda out: PermissionError(errno.EACCES, "Permission denied", str(out / "run.json")),
         lambda out: f"error: cannot write {out / 'run.json'}: Permission denied: choose a writable --out"),
        (lambda out: OSError(errno.ENOSPC, "No space left on device"),  # a write() names no file
         lambda out: f"error: cannot write {out}: No space left on device: choose a writable --out"),
        (lambda out: OSError(errno.EROFS, "Read-only file system", str(out.parent)),
         lambda out: f"error: cannot write {out.parent}: Read-only file system: choose a writable --out"),
        (lambda out: PermissionError(errno.EACCES, "Permission denied", "/elsewhere/weights.pth"),
         lambda out: "error: cannot use /elsewhere/weights.pth: Permission denied"),
    ],
)
def test_run_write_refusals_are_one_line(monkeypatch, tmp_path, exc, expected):
    from shiftlens import api

    out = tmp_path / "results"

    def refuse(*args, **kwargs):
        raise exc(out)

    monkeypatch.setattr(api, "run", refuse)
    line = one_line_error(*cli("run", "--no-site", "--out", str(out)))
    assert line == expected(out)


def test_other_os_errors_keep_their_traceback(monkeypatch, tmp_path):
    """An I/O error that is not about writing the results is a bug to report, not a bad input."""
    from shiftlens import api

    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error", "/dev/somewhere")

    monkeypatch.setattr(api, "run", broken)
    result, _ = cli("run", "--no-site", "--out", str(tmp_path / "o"))
    assert isinstance(result.exception, OSError) and result.exit_code == 1


def test_report_into_an_unwritable_results_folder_is_one_line(monkeypatch, tmp_path):
    import shiftlens.site

    asked = []

    def refuse(results_dir, max_cells=shiftlens.site.SITE_CELLS):
        asked.append(max_cells)
        raise PermissionError(errno.EACCES, "Permission denied", str(Path(results_dir) / "site"))

    monkeypatch.setattr(shiftlens.site, "build", refuse)
    line = one_line_error(*cli("report", str(tmp_path)))
    assert line.startswith(f"error: cannot write {tmp_path / 'site'}: Permission denied: ")
    assert "writable" in line
    one_line_error(*cli("report", str(tmp_path), "--every-position"))
    assert asked == [shiftlens.site.SITE_CELLS, 0]  # --every-position keeps every position of the patches' maps


# --- serve ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_serve_refuses_a_port_out_of_range(tmp_path, port):
    line = one_line_error(*cli("serve", str(tmp_path), "--port", port))
    assert f"port {port} is invalid: use 0-65535" in line
    assert not (tmp_path / "site").exists()


def test_server_answers_a_nul_byte_path_with_400_and_no_traceback(tmp_path, capfd):
    from shiftlens.errors import ShiftlensError
    from shiftlens.site import make_server

    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<p>shiftlens</p>")
    with pytest.raises(ShiftlensError, match="port 70000 is invalid"):
        make_server(site, 70000)
    server = make_server(site, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        statuses = {}
        for path in ("/%00", "/a%00b.html", "/index.html"):
            conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
            conn.request("GET", path)
            statuses[path] = conn.getresponse().status
            conn.close()
    finally:
        server.shutdown()
        server.server_close()
    assert statuses == {"/%00": 400, "/a%00b.html": 400, "/index.html": 200}
    assert "Traceback" not in capfd.readouterr().err


def test_a_run_that_fails_mid_bar_stops_its_progress_bar(monkeypatch, tmp_path):
    """A Ray node lost mid-run ended with the bar still live, the terminal's cursor hidden (issue 22)."""
    from shiftlens import api
    from shiftlens.errors import ShiftlensError

    bars = []

    def fails_mid_bar(cfg, progress, **kwargs):
        progress.start("model 75px", 100)
        progress.advance(10)
        bars.append(progress.bar)
        raise ShiftlensError("every node of the local Ray is dead: run the same command again")

    monkeypatch.setattr(api, "run", fails_mid_bar)
    result, text = cli("run", "--no-site", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "Traceback" not in text
    assert text.strip().splitlines()[-1] == "error: every node of the local Ray is dead: run the same command again"
    assert bars and not bars[0].live.is_started


def test_run_and_config_flags_are_the_config_fields_with_their_docstrings():
    """Said once (issue 23): each RunConfig field with a flag is one option of run and config (and of leaderboard,
    less what it chooses itself), named after it, its help the field's docstring and what leaving it out means."""
    import dataclasses

    fields = dataclasses.fields(config.RunConfig)
    docs = config.field_docs()
    assert set(docs) == {f.name for f in fields}, "every RunConfig field says what it is in a docstring"
    flags = {f.name for f in fields if f.metadata.get("flags", ()) is not None}
    commands = typer.main.get_command(app).commands
    run, conf, board = ({p.name: p for p in commands[c].params} for c in ("run", "config", "leaderboard"))
    assert set(run) == flags | {"preset", "dry_run", "force"} and set(conf) == flags | {"preset"}
    assert set(board) < set(run) and {"models", "patches", "sizes", "stride", "workers", "out", "seed"} <= set(board)
    for name in flags:
        assert run[name].help.startswith(docs[name] + " (") and run[name].default is None, name
        assert run[name].opts == conf[name].opts and run[name].help == conf[name].help, name
    assert (run["keep_aspect"].opts, run["keep_aspect"].secondary_opts) == (["--keep-aspect"], ["--square"])
    assert run["models"].multiple and run["models"].opts == ["--models", "-m"] and run["batch_size"].opts == ["--batch-size"]
    assert "similarity, separability, location" in run["analyses"].help
