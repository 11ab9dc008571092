"""Issue 22, the third hostile round: links in a results folder, a user's files inside maps.zarr and site, clearing
that stops halfway, damaged tables, a hand-edited run.json, another command's folder, the lock file, permissions and
images of every bit depth."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shiftlens import api
from shiftlens.config import RunConfig
from shiftlens.errors import ShiftlensError
from shiftlens.store import MANIFEST, ResultsDir, atomic_dir, atomic_write_text


@pytest.fixture
def small(constant_model, patch_dir, tmp_path) -> RunConfig:
    return RunConfig(models=[constant_model], patches=f"folder:{patch_dir}", sizes=[40], stride=8, canvas=64,
                     weights="random", out=str(tmp_path / "out"), batch_size=8, site=False, analyses=["similarity"])


@pytest.fixture
def finished(small) -> RunConfig:
    api.run(small)
    return small


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and "pydantic" not in message.lower() and "Field required" not in message
    assert "Unexpected keyword" not in message
    return message


def outside(tmp_path: Path) -> Path:
    """A user's folder outside --out, with files that must survive anything shiftlens does."""
    d = tmp_path / "precious"
    (d / "p1").mkdir(parents=True)
    (d / "keep.txt").write_text("mine")
    (d / "p1" / "x.png").write_bytes(b"not ours")
    (d / "p1" / "y.npz").write_bytes(b"not ours")
    return d


@pytest.mark.parametrize("link", ["patches/p999", "parts/evil", "maps.zarr", "site", "tables/extra.csv"])
def test_force_never_deletes_through_a_link_and_deletes_nothing(finished, tmp_path, link):
    out, target = Path(finished.out), outside(tmp_path)
    where = out / link
    if where.is_dir():  # maps.zarr: replace the folder by a link to the user's
        import shutil

        shutil.rmtree(where)
    where.parent.mkdir(parents=True, exist_ok=True)
    where.symlink_to(target / "keep.txt" if link.endswith(".csv") else target)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    other = dataclasses.replace(finished, stride=12)
    with pytest.raises(ShiftlensError) as err:
        api.run(other, force=True)
    message = one_line(err)
    assert link in message and "symbolic link" in message
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # nothing removed, not even run.json
    assert (target / "keep.txt").read_text() == "mine" and (target / "p1" / "x.png").is_file()
    assert (target / "p1" / "y.npz").is_file()
    where.unlink()  # once the link is gone, --force goes ahead
    assert api.run(other, force=True).computed == 2


def test_report_never_publishes_through_a_link(finished, tmp_path):
    from shiftlens.site import build

    out, target = Path(finished.out), outside(tmp_path)
    (out / "patches" / "p40").rename(tmp_path / "moved")
    (out / "patches" / "p40").symlink_to(target / "p1")
    with pytest.raises(ShiftlensError) as err:
        build(out)
    assert "patches/p40 is a symbolic link" in one_line(err) and not (out / "site").exists()


def test_force_and_rebuilds_keep_a_users_files_inside_maps_zarr_and_site(finished):
    from shiftlens.site import build

    out = Path(finished.out)
    build(out)
    (out / "maps.zarr" / "NOTES.txt").write_text("mine")
    (out / "site" / "CNAME").write_text("example.org")
    assert (out / "maps.zarr" / MANIFEST).is_file()
    api.run(finished)  # resume: tables and maps.zarr are rebuilt
    build(out)
    assert (out / "maps.zarr" / "NOTES.txt").read_text() == "mine"
    assert (out / "site" / "CNAME").read_text() == "example.org"
    assert (out / "site" / "index.html").is_file()
    import xarray as xr

    assert xr.open_datatree(out / "maps.zarr", engine="zarr", consolidated=False) is not None  # still a store
    api.run(dataclasses.replace(finished, stride=12), force=True)
    assert (out / "maps.zarr" / "NOTES.txt").read_text() == "mine"
    assert (out / "site" / "CNAME").read_text() == "example.org"
    assert sorted(p.name for p in (out / "site").iterdir()) == [MANIFEST, "CNAME"]  # the old site's own files went


def test_a_killed_rebuild_keeps_the_users_files_it_was_carrying(finished):
    """Killed between carrying a user's file into the rebuilt folder and swapping it in: the next run's clean-up of
    leftovers keeps that folder (its manifest does not list the user's file) and removes a plain half-built one."""
    out = Path(finished.out)
    carrying, half = out / ".site.k1ll", out / ".site.h4lf"
    carrying.mkdir()
    half.mkdir()
    (carrying / MANIFEST).write_text("index.html\n")
    (carrying / "index.html").write_text("ours")
    (carrying / "CNAME").write_text("example.org")
    (half / "index.html").write_text("ours")
    api.run(finished)
    assert (carrying / "CNAME").read_text() == "example.org" and not half.exists()


def test_a_rebuild_of_a_folder_without_its_list_of_files_is_refused(tmp_path):
    target = tmp_path / "site"
    target.mkdir()
    (target / "index.html").write_text("an earlier version's site, or a user's")
    with pytest.raises(ShiftlensError) as err:
        with atomic_dir(target, prefix=".site."):
            raise AssertionError("no work may start")
    assert "no list of the files" in one_line(err)
    assert (target / "index.html").is_file() and [p.name for p in tmp_path.iterdir()] == ["site"]


def test_a_maps_store_of_an_earlier_version_is_refused_before_any_work(finished):
    out = Path(finished.out)
    (out / "maps.zarr" / MANIFEST).unlink()
    record = (out / "run.json").read_bytes()
    with pytest.raises(ShiftlensError) as err:
        api.run(finished)
    assert "maps.zarr holds no list of the files" in one_line(err)
    assert (out / "run.json").read_bytes() == record  # refused in prepare: the record was not rewritten
    import shutil

    shutil.rmtree(out / "maps.zarr")
    assert api.run(finished).skipped == 2


def test_force_is_all_or_nothing_when_a_file_cannot_be_removed(finished, monkeypatch):
    out = Path(finished.out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    rename = Path.rename

    def refuse_the_patches(self, target):  # a file that cannot be moved (read-only folder, another device)
        if self.suffix == ".png" and self.parent.name == "p40":
            raise PermissionError(13, "Permission denied")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", refuse_the_patches)
    with pytest.raises(ShiftlensError) as err:
        api.run(dataclasses.replace(finished, stride=12), force=True)
    assert "nothing was" in one_line(err) and "Permission denied" in str(err.value)
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not list(out.glob(".shiftlens-trash*"))
    assert api.run(finished).computed == 0  # the run is intact and resumes


def test_a_clear_killed_after_run_json_went_to_the_trash_is_taken_up(finished):
    out = Path(finished.out)
    trash = out / ".shiftlens-trash.k1ll"
    trash.mkdir()
    for name in ("run.json", "tables", "parts", "patches", "figures", "maps.zarr"):
        (out / name).rename(trash / name)
    assert api.run(dataclasses.replace(finished, stride=12)).computed == 2
    assert not trash.exists()


def test_force_removes_only_files_the_record_names_or_shiftlens_names(finished):
    out = Path(finished.out)
    (out / "tables" / "mine.csv").write_text("a,b\n")
    (out / "patches" / "p40" / "mine.txt").write_text("mine")
    (out / "patches" / "p40" / "mine.png").write_bytes(b"mine")
    (out / "parts" / "mine" / "p1").mkdir(parents=True)
    np.savez(out / "parts" / "mine" / "p1" / "x-0123abcd.npz", a=np.ones(2))  # a part's name, not a part
    record = json.loads((out / "run.json").read_text())
    record["figures"] = ["../outside.png", "notes.png"]  # names outside the folder, or outside figures/
    record["tables"].append("../notes")
    (out.parent / "outside.png").write_bytes(b"user")
    (out / "notes.png").write_bytes(b"user")
    (out / "notes.csv").write_bytes(b"user")
    atomic_write_text(out / "run.json", json.dumps(record))
    api.run(dataclasses.replace(finished, stride=12), force=True)
    assert (out / "tables" / "mine.csv").is_file() and (out / "patches" / "p40" / "mine.txt").is_file()
    assert (out / "patches" / "p40" / "mine.png").is_file()
    assert (out / "parts" / "mine" / "p1" / "x-0123abcd.npz").is_file()
    assert (out.parent / "outside.png").read_bytes() == b"user"
    assert (out / "notes.png").read_bytes() == b"user" and (out / "notes.csv").read_bytes() == b"user"


# -- tables --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncate", "empty", "delete", "latin1"])
def test_report_refuses_a_damaged_table_in_one_line(finished, damage):
    from shiftlens.site import build

    out = Path(finished.out)
    csv = out / "tables" / "similarity.csv"
    if damage == "truncate":
        csv.write_bytes(csv.read_bytes()[:-20])
    elif damage == "empty":
        csv.write_bytes(b"")
    elif damage == "delete":
        csv.unlink()
    else:
        csv.write_bytes(csv.read_bytes() + "é\n".encode("latin-1"))
    with pytest.raises(ShiftlensError) as err:
        build(out)
    message = one_line(err)
    assert "similarity.csv" in message and "again" in message
    assert not (out / "site").exists()
    api.run(finished)  # the same command rebuilds the tables; then report publishes them
    assert (build(out) / "tables" / "similarity.csv").read_bytes() == csv.read_bytes()


def test_report_cli_says_a_non_utf8_table_in_one_line(finished):
    from typer.testing import CliRunner

    from shiftlens.cli import app

    out = Path(finished.out)
    (out / "tables" / "similarity.csv").write_bytes(b"\xff\xfe bad")
    result = CliRunner().invoke(app, ["report", str(out)])
    assert result.exit_code == 2 and "similarity.csv" in result.output
    assert "Traceback" not in result.output and "UnicodeDecodeError" not in result.output


def test_report_publishes_only_the_runs_own_tables(finished):
    from shiftlens.site import build

    out = Path(finished.out)
    (out / "tables" / "mine.csv").write_text("secret,1\n")
    site = build(out)
    assert not (site / "tables" / "mine.csv").exists() and (site / "tables" / "similarity.csv").is_file()
    secret = out.parent / "secret.csv"
    secret.write_text("secret,1\n")
    digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    edit_record(out, lambda r: (r["tables"].append("../../secret"), r["table_sha256"].update({"../../secret": digest})))
    with pytest.raises(ShiftlensError) as err:
        build(out)
    assert "outside tables/" in one_line(err)


# -- run.json ------------------------------------------------------------------------------------------------


def edit_record(out: Path, change) -> None:
    record = json.loads((out / "run.json").read_text())
    change(record)
    atomic_write_text(out / "run.json", json.dumps(record))


def test_a_hand_edited_config_is_refused_where_the_record_is_read(finished):
    from shiftlens.site import build

    out = Path(finished.out)
    edit_record(out, lambda r: r["config"].update(stride=25))  # fingerprint kept
    with pytest.raises(ShiftlensError) as err:
        build(out)
    assert "edited" in one_line(err) and not (out / "site").exists()
    with pytest.raises(ShiftlensError, match="edited"):
        api.run(finished)
    assert api.run(finished, force=True).computed == 2  # its files are known: --force replaces the run


def test_a_complete_record_without_models_is_refused(finished):
    out = Path(finished.out)
    edit_record(out, lambda r: r.update(models={}))
    with pytest.raises(ShiftlensError) as err:
        ResultsDir(out).read_run()
    assert "no models" in one_line(err)


def test_a_part_of_another_run_is_refused_by_report(finished, tmp_path):
    from shiftlens.site import build

    other = dataclasses.replace(finished, stride=12, out=str(tmp_path / "other"))
    api.run(other)
    mine = sorted((Path(finished.out) / "parts").rglob("*.npz"))[0]
    theirs = Path(other.out) / mine.relative_to(finished.out)
    mine.write_bytes(theirs.read_bytes())
    with pytest.raises(ShiftlensError) as err:
        build(finished.out)
    assert "another run" in one_line(err) and mine.name in str(err.value)


def test_a_part_of_a_model_the_complete_record_lacks_is_refused_a_running_one_is_not(finished):
    from shiftlens.site import build

    out = Path(finished.out)
    model = finished.models[0]
    edit_record(out, lambda r: r.update(models={"other": r["models"][model]}))
    with pytest.raises(ShiftlensError) as err:
        build(out)
    assert "belongs to another run" in one_line(err)
    # a resumed run killed before it reached the model again: its record is running and names no model yet
    edit_record(out, lambda r: r.update(models={}, status="running", tables=[], table_sha256={}))
    assert (build(out) / "index.html").is_file()


def test_invalid_record_fields_are_said_in_shiftlens_words(finished):
    out = Path(finished.out)
    edit_record(out, lambda r: r.update(bogus=1))
    with pytest.raises(ShiftlensError) as err:
        ResultsDir(out).read_run()
    assert "bogus is not a field shiftlens writes" in one_line(err)
    edit_record(out, lambda r: (r.pop("bogus"), r.pop("precision")))
    with pytest.raises(ShiftlensError) as err:
        ResultsDir(out).read_run()
    assert "precision is missing" in one_line(err)
    edit_record(out, lambda r: r.update(precision="fp32", kind=["x"]))
    with pytest.raises(ShiftlensError) as err:
        ResultsDir(out).read_run()
    assert "unknown kind" in one_line(err)
    edit_record(out, lambda r: (r.pop("kind"), r.update(timings=5)))
    with pytest.raises(ShiftlensError) as err:
        ResultsDir(out).read_run()
    assert "timings has a value of the wrong type" in one_line(err)


def test_each_command_names_the_kind_of_folder_it_was_given(finished, tmp_path):
    from shiftlens.analyses.arithmetic.config import ArithmeticConfig
    from shiftlens.analyses.arithmetic.record import ArithmeticRecord
    from shiftlens.api.units import visualise

    out = Path(finished.out)
    acfg = ArithmeticConfig(models=finished.models, out=str(out), weights="random")
    for force in (False, True):  # what `shiftlens arithmetic` does with its --out under the lock
        with pytest.raises(ShiftlensError) as err:
            ResultsDir(out).prepare(acfg, force, ArithmeticRecord)
        message = one_line(err)
        assert "holds the results of `shiftlens run`, not of `shiftlens arithmetic`" in message
    record = json.loads((out / "run.json").read_text())
    edit_record(out, lambda r: r.update(kind="arithmetic"))
    for force in (False, True):
        with pytest.raises(ShiftlensError) as err:
            api.run(finished, force=force)
        assert "holds the results of `shiftlens arithmetic`, not of `shiftlens run`" in one_line(err)
    with pytest.raises(ShiftlensError) as err:
        visualise(out, f"{finished.models[0]}:spatial", 0)
    assert "`shiftlens arithmetic`, not of `shiftlens run`" in one_line(err)
    atomic_write_text(out / "run.json", json.dumps(record))
    assert (out / "run.json").is_file()


# -- the lock ------------------------------------------------------------------------------------------------


def test_a_refused_command_leaves_no_folder_and_a_finished_one_no_lock(small, tmp_path):
    out = Path(small.out)
    (tmp_path / "a").mkdir()
    deep = tmp_path / "a" / "b" / "c"
    with pytest.raises(RuntimeError):
        with ResultsDir(deep).lock():
            assert (deep / ".shiftlens.lock").is_file()
            raise RuntimeError("refused after the lock")
    assert not (tmp_path / "a" / "b").exists() and (tmp_path / "a").is_dir()  # only what the command created goes
    api.run(small)
    assert not (out / ".shiftlens.lock").exists() and (out / "run.json").is_file()
    with pytest.raises(ShiftlensError, match="holds no shiftlens run"):
        api.run(dataclasses.replace(small, out=str(tmp_path)), force=True)  # a refusal in a folder it did not make
    assert tmp_path.is_dir() and not (tmp_path / ".shiftlens.lock").exists()


def test_a_linked_lock_file_is_refused_and_its_target_kept(small, tmp_path):
    out = Path(small.out)
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    (out / ".shiftlens.lock").symlink_to(victim)
    with pytest.raises(ShiftlensError) as err:
        api.run(small)
    assert "symbolic link" in one_line(err) and victim.read_text() == "mine"


def test_a_lock_unlinked_by_its_holder_is_not_held_twice(small, monkeypatch):
    """A process that opened the lock file just before its holder finished (and removed it) must not lock that
    orphan file while a third process locks the new one: it sees the file changed and locks the current one."""
    import shiftlens.store as store

    out = Path(small.out)
    out.mkdir()
    real, calls = store.fcntl.flock, []

    def holder_finishes_first(fd, op):
        if not calls and op & store.fcntl.LOCK_EX:  # between our open and our flock: unlinked, made anew
            (out / ".shiftlens.lock").unlink()
            (out / ".shiftlens.lock").write_text("")
        calls.append(os.fstat(fd).st_ino)
        return real(fd, op)

    monkeypatch.setattr(store.fcntl, "flock", holder_finishes_first)
    with ResultsDir(out).lock():
        current = (out / ".shiftlens.lock").stat().st_ino
        assert calls[0] != current and calls[1] == current  # the orphan was let go, the folder's file locked


# -- permissions ---------------------------------------------------------------------------------------------


def test_every_file_of_a_run_and_its_site_gets_the_umasks_mode(small):
    from shiftlens.site import build

    old = os.umask(0o027)
    try:
        api.run(dataclasses.replace(small, background="texture:brick"))  # background.png too
        build(small.out)
    finally:
        os.umask(old)
    out = Path(small.out)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert (out / "background.png") in files and any(p.parent.name == "figures" for p in files)
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {oct(0o640)}
    assert {oct(p.stat().st_mode & 0o777) for p in out.rglob("*") if p.is_dir()} == {oct(0o750)}


def test_site_files_get_the_umasks_mode(finished):
    from shiftlens.site import build

    old = os.umask(0o027)
    try:
        site = build(finished.out)
    finally:
        os.umask(old)
    files = [p for p in site.rglob("*") if p.is_file()]
    assert any(p.suffix == ".css" or p.name == "index.html" for p in files)
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {oct(0o640)}


# -- images of every mode ------------------------------------------------------------------------------------


def save_mode(path: Path, kind: str) -> None:
    if kind == "I;16":
        Image.fromarray(np.full((80, 80), 40000, np.uint16)).save(path)
    elif kind == "I;16B":
        Image.fromarray(np.full((80, 80), 40000, np.uint16).byteswap().view(">u2")).save(path)
    elif kind == "F":
        Image.fromarray(np.full((80, 80), 40000 / 65535, np.float32)).save(path)
    elif kind == "P":
        Image.fromarray(np.full((80, 80), 156, np.uint8)).convert("P").save(path)
    elif kind == "LA":
        Image.fromarray(np.full((80, 80, 2), 156, np.uint8), "LA").save(path)
    elif kind == "CMYK":
        Image.fromarray(np.full((80, 80), 156, np.uint8)).convert("CMYK").save(path)


@pytest.mark.parametrize("kind,suffix", [("I;16", ".png"), ("I;16B", ".tif"), ("F", ".tif"),
                                         ("P", ".png"), ("LA", ".png"), ("CMYK", ".jpg")])
def test_images_of_every_mode_are_scaled_as_backgrounds_and_crop_images(tmp_path, kind, suffix):
    from shiftlens.canvases import load_images, parse_background

    path = tmp_path / f"grey_1{suffix}"
    save_mode(path, kind)
    assert Image.open(path).mode == kind
    background = parse_background(f"image:{path}", 64).image
    crop = load_images(f"image:{path}", 64)[0].rgba[..., :3]
    for pixels in (background, crop):
        assert abs(float(pixels.mean()) - 40000 / 65535 * 255) <= 2, kind  # 156, not 255 nor 0


def test_images_out_of_range_are_refused_in_one_line(tmp_path):
    from shiftlens.canvases import parse_background

    for name, values in (("big.tif", np.full((8, 8), 70000, np.int32)), ("hdr.tif", np.full((8, 8), 3.5, np.float32)),
                         ("i32.tif", np.full((8, 8), 200, np.int32))):  # 8-bit values? 16-bit? 32-bit says neither
        Image.fromarray(values).save(tmp_path / name)
        with pytest.raises(ShiftlensError) as err:
            parse_background(f"image:{tmp_path / name}", 64)
        assert name in one_line(err)


def test_a_16_bit_mask_keeps_its_small_labels(tmp_path):
    from shiftlens.patches.folder import load_folder

    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(tmp_path / "cat_1.jpg")
    mask = np.zeros((40, 40), np.uint16)
    mask[10:30, 10:30] = 1  # label 1 of 65535: rounds to 0 if scaled like a picture
    Image.fromarray(mask).save(tmp_path / "cat_1_mask.png")
    patch = load_folder(tmp_path)[0]
    assert patch.rgba.shape[:2] == (20, 20) and (patch.rgba[..., 3] == 255).all()


def test_a_16_bit_patch_with_a_colour_key_reads_its_mask(tmp_path):
    from shiftlens.patches.folder import load_folder

    grey = np.full((40, 40), 40000, np.uint16)
    grey[:, :10] = 7  # the transparent colour
    Image.fromarray(grey).save(tmp_path / "cup_1.png", transparency=7)
    patch = load_folder(tmp_path)[0]
    assert patch.rgba.shape[:2] == (40, 30) and abs(int(patch.rgba[0, 0, 0]) - 156) <= 1
