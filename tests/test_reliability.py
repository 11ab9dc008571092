"""The results folder's guarantees (issue 16): no silent loss, no stale results, no destroyed user files, readable
permissions, one writer at a time, early checks before any work, and resume after kill -9."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import blob_rgba
from shiftlens import api
from shiftlens.config import RunConfig
from shiftlens.errors import ShiftlensError
from shiftlens.store import SCHEMA_VERSION, ResultsDir, RunRecord, atomic_write_text, file_key


@pytest.fixture
def small(constant_model, patch_dir, tmp_path) -> RunConfig:
    return RunConfig(models=[constant_model], patches=f"folder:{patch_dir}", sizes=[40], stride=8, canvas=64,
                     weights="random", out=str(tmp_path / "out"), batch_size=8, site=False, analyses=["similarity"])


def test_file_keys_never_collide_and_keep_a_readable_stem():
    names = ["cat 1", "cat_1", "猫", "犬", "a/b", "a_b", "", "."]
    keys = [file_key(n) for n in names]
    assert len(set(keys)) == len(keys)
    assert keys[0].startswith("cat_1-") and all("/" not in k and not k.startswith(".") for k in keys)


def test_colliding_patch_names_are_kept_apart_in_parts_tables_and_pngs(constant_model, tmp_path):
    """`cat 1.png` and `cat_1.png` used to share one part file: one result lost, the other counted twice."""
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(blob_rgba(40, seed=1), "RGBA").save(src / "cat 1.png")
    Image.fromarray(blob_rgba(40, seed=2), "RGBA").save(src / "cat_1.png")
    cfg = RunConfig(models=[constant_model], patches=f"folder:{src}", sizes=[40], stride=8, canvas=64,
                    weights="random", out=str(tmp_path / "out"), batch_size=8, site=False, analyses=["similarity"])
    result = api.run(cfg)
    assert result.computed == 2
    per = result.tables["similarity_per_patch"]
    assert sorted(set(per.patch)) == ["cat 1", "cat_1"]  # original names in the tables
    spatial = per[per.layer == "spatial"]
    assert spatial.groupby("patch")["mean"].apply(tuple).nunique() == 2  # two different patches, two results
    summary = result.tables["similarity"]
    assert (summary.n_patches == 2).all()
    assert len(list((Path(cfg.out) / "parts").rglob("*.npz"))) == 2
    assert len(list((Path(cfg.out) / "patches" / "p40").glob("*.png"))) == 2


def test_force_never_deletes_files_shiftlens_did_not_write(small, tmp_path):
    out = Path(small.out)
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "f.svg").write_text("<svg/>")
    for force in (False, True):
        with pytest.raises(ShiftlensError, match="holds no shiftlens run"):
            api.run(small, force=force)
    assert (out / "figures" / "f.svg").read_text() == "<svg/>"


def test_force_replaces_a_runs_own_files_and_keeps_the_users(small):
    out = Path(small.out)
    api.run(small)
    (out / "figures" / "mine.svg").write_text("<svg/>")
    (out / "parts" / "notes.txt").write_text("mine")
    (out / "README.txt").write_text("mine")
    old_parts = set((out / "parts").rglob("*.npz"))
    other = dataclasses.replace(small, stride=12)
    with pytest.raises(ShiftlensError, match="different config"):
        api.run(other)
    result = api.run(other, force=True)
    assert result.computed == 2
    assert (out / "figures" / "mine.svg").is_file() and (out / "parts" / "notes.txt").is_file()
    assert (out / "README.txt").is_file()
    new_parts = set((out / "parts").rglob("*.npz"))
    assert len(new_parts) == 2 and all(ResultsDir(out).load_part(p).meta.fingerprint == other.fingerprint()
                                       for p in new_parts)
    assert old_parts == new_parts  # same unit names, rewritten (checked by fingerprint above)


def test_an_edited_patch_image_is_recomputed_and_said(small, patch_dir):
    logs: list[str] = []
    first = api.run(small)
    assert first.computed == 2
    victim = sorted(patch_dir.glob("*.png"))[0]
    Image.fromarray(blob_rgba(40, seed=9), "RGBA").save(victim)  # same name, new pixels
    second = api.run(small, log=logs.append)
    assert (second.computed, second.skipped) == (1, 1)
    assert any("recomputed" in line and "patch image changed" in line for line in logs)
    parts = ResultsDir(small.out).parts()
    assert len(parts) == 2


def test_a_replaced_weights_file_is_recomputed(constant_model, small, tmp_path):
    from conftest import ConstantNet

    ckpt = tmp_path / "w.pth"
    torch.manual_seed(1)
    torch.save(ConstantNet().state_dict(), ckpt)
    cfg = dataclasses.replace(small, weights=str(ckpt))
    a = api.run(cfg)
    torch.manual_seed(2)
    torch.save(ConstantNet().state_dict(), ckpt)  # same path, other weights
    logs: list[str] = []
    b = api.run(cfg, log=logs.append)
    assert b.computed == 2 and b.skipped == 0
    assert any("weights changed" in line for line in logs)
    assert not a.tables["similarity_per_patch"]["mean"].equals(b.tables["similarity_per_patch"]["mean"])
    record = ResultsDir(cfg.out).read_run()
    digest = record.models[constant_model].weights.digest
    assert all(p.meta.weights_digest == digest for p in ResultsDir(cfg.out).parts())


def test_results_keep_the_umasks_permissions(small):
    old = os.umask(0o022)
    try:
        api.run(dataclasses.replace(small, site=False))
        from shiftlens.site import build

        build(small.out)
    finally:
        os.umask(old)
    out = Path(small.out)
    for path in [out / "run.json", *out.rglob("*.npz"), *(out / "tables").glob("*.csv"), *(out / "figures").glob("*")]:
        assert path.stat().st_mode & 0o777 == 0o644, path
    for folder in (out / "site", out / "maps.zarr"):
        assert folder.stat().st_mode & 0o777 == 0o755, folder
    assert (out / "site" / "index.html").stat().st_mode & 0o777 == 0o644


def test_a_checkpoint_of_another_architecture_is_refused_before_any_work(constant_model, patch_dir, tmp_path):
    ckpt = tmp_path / "eff.pth"
    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3), **{f"block{i}.w": torch.zeros(2) for i in range(40)}}, ckpt)
    out = tmp_path / "out"
    cfg = RunConfig(models=["efficientnet_lite0", constant_model], patches=f"folder:{patch_dir}", sizes=[75], stride=32,
                    weights=str(ckpt), out=str(out), site=False, analyses=["similarity"])
    with pytest.raises(ShiftlensError) as err:
        api.run(cfg)
    message = str(err.value)
    assert "efficientnet_lite0" in message and "missing" in message and "unexpected" in message
    assert len(message) < 600 and "\n" not in message
    assert not out.exists()  # nothing computed, no folder left with status `running`


def test_a_second_writer_is_refused_while_the_first_holds_the_folder(small):
    rd = ResultsDir(small.out)
    with rd.lock():
        child = subprocess.run(
            [sys.executable, "-c", "import sys; from shiftlens.store import ResultsDir; "
             "from shiftlens.errors import ShiftlensError\n"
             "try:\n  with ResultsDir(sys.argv[1]).lock(): print('got it')\n"
             "except ShiftlensError as e: print('refused:', e)", small.out],
            capture_output=True, text=True, timeout=60)
    assert child.stdout.startswith("refused:") and f"pid {os.getpid()}" in child.stdout
    api.run(small)  # released: the next run goes ahead


def test_leftovers_of_a_killed_run_are_cleaned_and_user_dotfiles_kept(small):
    out = Path(small.out)
    api.run(small)
    leftovers = [out / ".maps.abc123.zarr", out / ".site.xyz", out / "tables" / ".similarity.csv.k2j.tmp"]
    leftovers[0].mkdir()
    leftovers[1].mkdir()
    (leftovers[1] / "index.html").write_text("half")
    leftovers[2].write_text("half")
    (out / ".mine").write_text("user")
    api.run(small)
    assert not any(p.exists() for p in leftovers)
    assert (out / ".mine").read_text() == "user"


def test_run_json_of_another_schema_is_refused_with_one_line(small):
    api.run(small)
    rj = Path(small.out) / "run.json"
    data = json.loads(rj.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    RunRecord.model_validate(data)  # what was written reads back typed
    atomic_write_text(rj, json.dumps({**data, "schema_version": 1}))
    with pytest.raises(ShiftlensError, match="another version of shiftlens"):
        api.run(small)
    with pytest.raises(ShiftlensError, match="will not delete anything"):
        api.run(small, force=True)


def finished_parts(out: Path) -> list[Path]:
    """Part files, not the temporary files (dot names) that atomic writes rename into place."""
    return [p for p in (out / "parts").rglob("*.npz") if not p.name.startswith(".")]


def test_kill_9_in_the_middle_resumes_to_the_same_tables(patch_dir, tmp_path):
    """A real SIGKILL while parts are being written: the rerun skips whole parts and ends with the same tables."""
    cfg = RunConfig(models=["efficientnet_lite0:pool"], patches=f"folder:{patch_dir}", sizes=[75, 125], stride=24,
                    weights="random", site=False, compile="off", batch_size=8, analyses=["similarity"],
                    out=str(tmp_path / "reference"))
    reference = api.run(cfg).out
    args = ["--models", "efficientnet_lite0:pool", "--patches", f"folder:{patch_dir}", "--sizes", "75,125",
            "--stride", "24", "--weights", "random", "--no-site", "--compile", "off", "--batch-size", "8",
            "--analyses", "similarity"]
    cmd = [sys.executable, "-m", "shiftlens", "run", *args]
    out = tmp_path / "killed"
    proc = subprocess.Popen(cmd + ["--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not finished_parts(out):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = finished_parts(out)
    assert 1 <= len(done) < 4, "the kill should land between the first and the last part"
    rerun = subprocess.run(cmd + ["--out", str(out)], capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(done)} resumed" in rerun.stdout
    for name in ("similarity.csv", "similarity_per_patch.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(out / "tables" / name), pd.read_csv(reference / "tables" / name))
    assert np.all([p.stat().st_size > 0 for p in (out / "parts").rglob("*.npz")])
