"""The executor interface (issue 13) without a cluster: the config keys, the local executor behind `api.run`, any
executor the API is handed, and the one-line refusals. The Ray executor itself is tested in test_ray.py."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shiftlens import api
from shiftlens.cli import app
from shiftlens.config import RunConfig
from shiftlens.errors import ShiftlensError
from shiftlens.executors import LocalExecutor, ModelJob, WorkItem, make_executor


@pytest.fixture
def small(constant_model, patch_dir, tmp_path) -> RunConfig:
    return RunConfig(models=[constant_model], patches=f"folder:{patch_dir}", sizes=[40, 48], stride=8, canvas=64,
                     weights="random", out=str(tmp_path / "out"), batch_size=8, site=False, analyses=["similarity"])


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, (result.stdout or "") + (getattr(result, "stderr", "") or "")


@pytest.mark.parametrize("change, message", [
    (dict(executor="spark"), "unknown executor 'spark': use one of local, ray"),
    (dict(workers=-1), "workers -1 is invalid"),
    (dict(out="s3://bucket/run"), "object-store URLs are not supported"),
])
def test_bad_executor_settings_are_one_line(change, message):
    with pytest.raises(ShiftlensError, match=message):
        dataclasses.replace(RunConfig(), **change).validate()


def test_where_parts_are_computed_does_not_change_the_fingerprint():
    cfg = RunConfig()
    ray = dataclasses.replace(cfg, executor="ray", ray_address="10.0.0.1:6379", workers=8)
    assert ray.fingerprint() == cfg.fingerprint()


def test_the_default_executor_is_local():
    assert isinstance(make_executor(RunConfig(), api.resolve_device("cpu")), LocalExecutor)


def test_ray_missing_is_one_line_naming_the_extra(monkeypatch):
    from shiftlens.executors.ray import RayExecutor

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: `import ray` raises ImportError
    with pytest.raises(ShiftlensError, match=r"--executor ray needs Ray: pip install 'shiftlens\[ray\]'"):
        RayExecutor()


class Recording(LocalExecutor):
    """The local executor, recording what the driver hands it."""

    def __init__(self) -> None:
        self.jobs: list[ModelJob] = []
        self.items: list[WorkItem] = []

    @contextlib.contextmanager
    def session(self, job: ModelJob):
        self.jobs.append(job)
        with super().session(job) as session:
            run = session.run

            def recorded(items, progress):
                self.items += items
                run(items, progress)

            session.run = recorded
            yield session


def test_the_driver_hands_out_each_unfinished_part_once_and_resumes(small):
    ex = Recording()
    first = api.run(small, executor=ex)
    assert [(i.size, i.patch.id) for i in ex.items] == [(s, p) for s in (40, 48) for p in ("cat_00", "cup_01")]
    assert all(i.images == first.record.positions[i.size] and i.meta.patch_size == i.size for i in ex.items)
    job = ex.jobs[0]
    assert Path(job.results_root).is_absolute() and job.model is not None and job.cfg.batch_size == 8
    rebuilt = job.build()  # what a remote worker builds: the same weights as the driver's model
    assert all((a == b).all() for a, b in zip(rebuilt.state_dict().values(), job.model.state_dict().values()))
    again = Recording()
    second = api.run(small, executor=again)
    assert again.items == [] and (second.computed, second.skipped) == (0, 4)
    assert first.tables["similarity"].equals(second.tables["similarity"])


def test_a_worker_with_other_weights_is_refused(constant_model, small, tmp_path):
    from shiftlens.models import parse_spec

    spec = parse_spec(constant_model)
    with pytest.raises(ShiftlensError, match="give every node the same file"):
        api.build_checked(spec, "random", 0, "not-the-drivers-digest")


def test_cli_passes_the_executor_settings_and_refuses_bad_ones(tmp_path):
    code, text = cli("config", "--executor", "ray", "--ray-address", "auto", "--workers", "2")
    assert code == 0 and 'executor = "ray"' in text and 'ray_address = "auto"' in text and "workers = 2" in text
    code, text = cli("run", "--executor", "dask", "--out", str(tmp_path / "o"))
    assert code == 2 and "unknown executor 'dask'" in text and "Traceback" not in text
    assert not (tmp_path / "o").exists()


def test_dry_run_projects_the_time_on_n_ray_workers(constant_model, patch_dir, tmp_path):
    code, text = cli("run", "--models", constant_model, "--patches", f"folder:{patch_dir}", "--stride", "32",
                     "--weights", "random", "--analyses", "similarity", "--dry-run", "--executor", "ray", "--workers", "4",
                     "--out", str(tmp_path / "o"))
    assert code == 0, text
    assert "--executor ray, 4 workers each as fast as this device" in text
    assert not (tmp_path / "o").exists()


def test_the_progress_bar_shows_each_workers_rate_and_takes_back_lost_images():
    from shiftlens.cli import RichProgress

    bar = RichProgress()
    bar.start("m 75px", 100)
    try:
        for worker in ("w1", "w2", "w1", "w2"):
            bar.advance(10, worker)
        bar.advance(-10, "w2")  # a lost worker's batches leave the bar
        task = bar.bar.tasks[0]
        assert task.completed == 30 and "w1 " in task.description and "w2 " in task.description
        assert task.description.startswith("m 75px (") and "/s" in task.description
    finally:
        bar.stop()


@pytest.mark.parametrize("address, message", [
    ("127.0.0.1:1", "--ray-address 127.0.0.1:1: nothing answers there"),
    ("headnode", "give auto or HOST:PORT of the Ray head"),
])
def test_an_unreachable_or_malformed_ray_address_is_one_line_at_once(address, message):
    pytest.importorskip("ray", reason="ray is not installed")
    from shiftlens.executors.ray import RayExecutor

    with pytest.raises(ShiftlensError, match=message):
        RayExecutor(address=address)
