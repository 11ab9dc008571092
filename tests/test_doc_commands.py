"""Every command in README.md and docs/*.md runs as written (tools/doc_commands.py extracts them).

Each file's ```bash commands run in order in a fresh folder, in this process (tiny time per command):

- `shiftlens run` and `shiftlens arithmetic`: with `--dry-run` (every check, nothing computed; the warm-up timing
  of `api.estimate` is replaced by a constant, it has its own test). A folder that a later command of the same file
  reads (`report`, `serve`, `units visualise`) is made by a tiny real run of the command that writes it:
  `TINY_RUN` / `TINY_ARITHMETIC` instead of its own values of those options, into the folder the command as written
  names or derives. A folder another document's command makes with `--out` (README's `results/units` for
  docs/units.md) is made by that command first.
- `shiftlens config`, `models`, `report`: run for real (`> FILE` writes the output there).
- `shiftlens serve`, `bench`, `inverter train`, `inverter evaluate`, `units visualise`: their arguments parsed by the real command line
  (unknown flags fail); `serve` also needs its folder's site.
- `bash FILE`, `python FILE`: the file exists; `pip install -e '.[EXTRA]'`: the extra exists; `python3 -m venv`,
  `ray start`: not shiftlens's, skipped. Any other command fails: teach this test about it.

Stand-ins for the user's own files (`STAND_INS`): a tiny COCO at the documented paths (`/shared/` is made inside
the fresh folder), `my_scenes.toml` = docs/arithmetic.md's TOML example, `my_decoder.pt` = the shipped Lite0 pool
decoder; without CUDA, `--device cuda` runs as `--device cpu`.
"""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from shiftlens import api
from shiftlens.cli import app
from tools.doc_commands import ROOT, DocCommand, commands, documented_files

TINY_RUN = ["--models", "efficientnet_lite0:pool", "--sizes", "75", "--stride", "74", "--max-patches", "1",
            "--weights", "random", "--analyses", "similarity", "--compile", "off"]
TINY_ARITHMETIC = ["--models", "efficientnet_lite0:pool", "--weights", "random", "--problems", "0", "--stride", "74",
                   "--inverter", "none"]
READS_FOLDER = {("report",): 0, ("serve",): 0, ("units", "visualise"): 0}  # subcommand -> index of its folder argument
PARSE_ONLY = {("serve",), ("bench",), ("inverter", "train"), ("inverter", "evaluate"), ("units", "visualise")}
RUNS = {("config",), ("models",), ("report",), ("patches",)}
DRY_RUNS = {("run",), ("arithmetic",)}


def make_coco(root: Path, annotations: str, images: str) -> None:
    """One photo per paper category, its object a polygon: what the paper preset's COCO selection reads."""
    from shiftlens.config import load

    categories = load("paper").coco_categories
    folder = root / images
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    data = {"images": [], "annotations": [], "licenses": [{"id": 1, "name": "CC BY 2.0", "url": ""}],
            "categories": [{"id": i, "name": c, "supercategory": "x"} for i, c in enumerate(categories, 1)]}
    for i, _ in enumerate(categories, 1):
        name = f"{i:012d}.jpg"
        Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(folder / name)
        data["images"].append({"id": i, "file_name": name, "width": 160, "height": 120, "license": 1})
        data["annotations"].append({"id": 100 + i, "image_id": i, "category_id": i, "bbox": [20, 20, 80, 60],
                                    "area": 4800, "iscrowd": 0,
                                    "segmentation": [[20, 20, 100, 20, 100, 80, 60, 80, 20, 60]]})
    (root / annotations).parent.mkdir(parents=True, exist_ok=True)
    (root / annotations).write_text(json.dumps(data))


def toml_example(doc: Path) -> str:
    """The first ```toml block of a document."""
    text = doc.read_text()
    return re.search(r"```toml\n(.*?)```", text, re.S).group(1)


def stand_ins(here: Path) -> None:
    make_coco(here, "annotations/instances_train2017.json", "train2017")
    make_coco(here, "shared/coco/annotations/instances_train2017.json", "shared/coco/train2017")
    (here / "my_scenes.toml").write_text(toml_example(ROOT / "docs" / "arithmetic.md"))
    from shiftlens.inversion.decoder import shipped_decoders

    shutil.copy(shipped_decoders()[("efficientnet_lite0", "pool")], here / "my_decoder.pt")


def localised(words: list[str], here: Path) -> list[str]:
    """The user's paths made real in the test's folder: /shared/ is a folder of it; cuda is the CPU without one."""
    words = [w.replace("/shared/", f"{here}/shared/") for w in words]
    if not torch.cuda.is_available():
        words = ["cpu" if w == "cuda" and i and words[i - 1] == "--device" else w for i, w in enumerate(words)]
    return words


def _source_installed(source: str) -> bool:
    """Whether a Debian patch source's package is where apt installs it (other sources are always there)."""
    from shiftlens.patches.debian import PACKAGES

    package = PACKAGES.get(source.partition(":")[0])
    return package is None or package.root.is_dir()


def subcommand(words: list[str]) -> tuple[str, ...]:
    return tuple(words[:2]) if words[:1] in (["units"], ["inverter"]) else tuple(words[:1])


def invoke(words: list[str]) -> str:
    result = CliRunner().invoke(app, words)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"raised {result.exception!r}") from result.exception
    assert result.exit_code == 0, f"exit code {result.exit_code}: {result.output.strip()[-600:]}"
    return result.output


def parse_only(words: list[str]) -> None:
    """Parse the arguments with the real command line, without running the command."""
    command = typer.main.get_command(app)
    args = list(words)
    while hasattr(command, "commands"):  # a group (typer ships its own click: no isinstance on click's classes)
        name, args = args[0], args[1:]
        assert name in command.commands, f"no command {name!r}"
        command = command.commands[name]
    if words[0] == "bench":  # its options are the benchmark package's
        from benchmarks.__main__ import parser

        try:
            parser().parse_args(args)
        except SystemExit as exc:
            raise AssertionError(f"benchmark options {args} do not parse") from exc
        return
    try:
        command.make_context(words[-1], args)
    except Exception as exc:  # a usage error (typer's own click class), which formats itself
        if not hasattr(exc, "format_message"):
            raise
        raise AssertionError(exc.format_message()) from None


def tiny(words: list[str], overrides: list[str]) -> list[str]:
    """The command with the tiny run's options instead of its own (each option of `overrides` takes a value)."""
    replaced = set(overrides[::2])
    kept, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word in replaced:
            skip = True
        else:
            kept.append(word)
    return kept + overrides


def tiny_decoder(words: list[str], here: Path) -> None:
    """A decoder file a later command of the same document reads (`--inverter decoder:FILE`), written by a tiny real
    `inverter train` for the command's model, layer, weights and seed: one step of a tiny generator on the bundled
    objects, so the later command checks a real file of the right model and weights."""
    from shiftlens.inversion.decoder import GeneratorConfig
    from shiftlens.inversion.train import TrainSettings, train

    def opt(name: str, default: str | None = None) -> str | None:
        return words[words.index(name) + 1] if name in words else default

    settings = TrainSettings(spec=opt("--model"), weights=opt("--weights", "imagenet"), patches="sample",
                             seed=int(opt("--seed", "0")), steps=1, batch=2, pool=2, passes=1, held_out=1,
                             max_objects=1, checkpoint_every=1, validate_n=1,
                             generator=GeneratorConfig(feature_dim=0, hidden=16, base=4, channels=[8, 8, 4]))
    train(settings, here / opt("--out"))


def check(command: DocCommand, here: Path, read_later: set[str]) -> None:
    name = Path(command.argv[0]).name
    words = localised(command.argv[1:], here)
    if name in ("bash", "python") or (name == "python3" and words[:1] != ["-m"]):
        assert (ROOT / words[0]).is_file(), f"{words[0]} does not exist in the repository"
        return
    if name == "pip" or name.endswith("/pip") or command.argv[0].endswith("bin/pip"):
        extras = re.findall(r"\[(\w+)]", " ".join(words))
        declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("optional-dependencies", {})
        assert all(e in declared for e in extras), f"extras {extras} not all in pyproject.toml {sorted(declared)}"
        return
    if name in ("ray",) or command.argv[:3] == ["python3", "-m", "venv"]:
        return
    assert name == "shiftlens", "a command this test does not know: teach tests/test_doc_commands.py about it"
    kind = subcommand(words)
    if kind == ("patches",) and not _source_installed(words[1]):
        parse_only(words)  # that Debian package is not on this machine (CI installs tuxpaint-stamps-default)
        return
    if kind in READS_FOLDER or kind in PARSE_ONLY:
        parse_only(words)
    if kind == ("inverter", "train") and "--out" in words and words[words.index("--out") + 1] in read_later:
        tiny_decoder(words, here)
    if kind in READS_FOLDER:
        folder = words[len(kind)]
        assert (here / folder).is_dir(), f"{folder} is made by no command before it in this file"
    if kind == ("serve",):
        assert (here / words[1] / "site" / "index.html").is_file() or (here / words[1] / "run.json").is_file()
    if kind in RUNS:
        output = invoke(words)
        if command.stdout:
            (here / command.stdout).write_text(output)
    elif kind in DRY_RUNS:
        output = invoke(words + ([] if "--dry-run" in words else ["--dry-run"]))
        out = re.search(r"results would go to (\S+)", output.replace("\n", " "))
        assert out, f"the dry run names no results folder: {output[-300:]}"
        if "--dry-run" not in words:  # as written it runs for real: what only a dry run may leave out is missing
            assert "a run needs" not in output, f"planned, but would not run: {output[-400:]}"
        if out.group(1) in read_later:
            invoke(tiny(words, TINY_RUN if kind == ("run",) else TINY_ARITHMETIC) + ["--out", out.group(1)])
    elif kind not in PARSE_ONLY:
        raise AssertionError(f"shiftlens {' '.join(kind)}: teach tests/test_doc_commands.py how to check it")


DOCS = [d for d in documented_files() if commands(d)]


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_every_documented_command_runs_as_written(doc: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(api, "estimate", lambda p, warmup_batches=2: {s.key: 100.0 for s in p.models})
    stand_ins(tmp_path)
    found = commands(doc)
    read_later = {c.argv[1 + len(subcommand(c.argv[1:]))] for c in found
                  if Path(c.argv[0]).name == "shiftlens" and subcommand(c.argv[1:]) in READS_FOLDER}
    read_later |= {w.split(":", 1)[1] for c in found for w in c.argv if w.startswith("decoder:")}  # decoder files
    written_here = {c.argv[c.argv.index("--out") + 1] for c in found if "--out" in c.argv[:-1]}
    prelude = [c for other in DOCS if other != doc for c in commands(other)  # a folder another document makes
               if "--out" in c.argv[:-1] and c.argv[c.argv.index("--out") + 1] in read_later - written_here]
    failures = []
    for command in prelude + found:
        try:
            check(command, tmp_path, read_later)
        except AssertionError as exc:
            failures.append(f"{command}\n    {exc}")
    assert not failures, "documented commands that do not run as written:\n" + "\n".join(failures)


def test_the_check_fails_on_a_flag_or_preset_that_does_not_exist(tmp_path, monkeypatch):
    """What the test above would report for a typo in the docs: an unknown flag, preset, model or subcommand."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(api, "estimate", lambda p, warmup_batches=2: {s.key: 100.0 for s in p.models})
    doc = tmp_path / "doc.md"
    for line in ("shiftlens run --stirde 4", "shiftlens run quik", "shiftlens run --models alexnet:fc9",
                 "shiftlens arithmetic --problem 3", "shiftlens units visualise results --unit 3",
                 "shiftlens bench --quik", "shiftlens inverter train --model efficientnet_lite0:pool --out d.pt --stepz 3",
                 "shiftlens config paper --strid 2", "shiftlens run paper", "shiftlens serve results/none", "shiftlens frobnicate", "frob --x"):
        doc.write_text(f"```bash\n{line}   # a comment\n```\n")
        (command,) = commands(doc)
        with pytest.raises(AssertionError):
            check(command, tmp_path, set())


def test_the_extractor_joins_continuations_and_splits_chains(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("text\n```bash\n# only a comment\nshiftlens a --x \"b c\" \\\n    --y 1  # says why\n"
                   "shiftlens report r && shiftlens serve r\nshiftlens config > my.toml\n```\n```python\nx = 1\n```\n")
    found = commands(doc)
    assert [c.argv for c in found] == [["shiftlens", "a", "--x", "b c", "--y", "1"], ["shiftlens", "report", "r"],
                                       ["shiftlens", "serve", "r"], ["shiftlens", "config"]]
    assert [c.line for c in found] == [4, 6, 6, 7] and found[-1].stdout == "my.toml"


def test_the_manifest_example_of_docs_patches_is_the_format_folder_reads(tmp_path):
    """docs/patches.md's manifest.json, with its three files, loads as it says: ids, categories, licences, classes."""
    from shiftlens.models.imagenet_classes import class_indices
    from shiftlens.patches.folder import load_folder

    manifest = json.loads(re.search(r"```json\n(.*?)```", (ROOT / "docs" / "patches.md").read_text(), re.S).group(1))
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[4:16, 4:16] = 200
    for entry in manifest["patches"]:
        (tmp_path / entry["file"]).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgba, "RGBA").save(tmp_path / entry["file"])
    patches = {p.id: p for p in load_folder(tmp_path)}
    assert sorted(patches) == ["dog_03", "lamp", "tabby"]
    assert patches["dog_03"].licence == "CC BY 4.0" and patches["dog_03"].provenance["author"] == "A. Photographer"
    assert patches["lamp"].licence == "unknown" and patches["tabby"].category == "cat"
    assert class_indices(patches["tabby"].category, patches["tabby"].provenance) == [281, 282]
    assert class_indices(patches["lamp"].category, patches["lamp"].provenance) == [846]


def test_a_run_that_asks_for_a_manifest_edit_points_to_the_doc(tmp_path):
    from shiftlens.config import RunConfig

    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[5:35, 5:35] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "robot_01.png")
    p = api.plan(RunConfig(models=["efficientnet_lite0:pool"], patches=f"folder:{tmp_path}", sizes=[75], stride=74,
                           analyses=["similarity", "class"], device="cpu"))
    (note,) = [n for n in p.notes if "manifest.json" in n]
    doc = re.search(r"\((docs/\w+\.md)\)", note).group(1)
    assert "robot_01" in note and "imagenet_classes" in (ROOT / doc).read_text()
