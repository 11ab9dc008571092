"""`--executor ray` on a local 2-worker Ray (issue 13): same parts and tables as the local executor, a worker killed
by PID mid-run has its part redone elsewhere, an interrupted driver resumes, one writer per results folder."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

ray = pytest.importorskip("ray", reason="ray is not installed: pip install -e '.[ray]' to test --executor ray")

from conftest import write_patch_dir  # noqa: E402
from shiftlens import api  # noqa: E402
from shiftlens.config import RunConfig  # noqa: E402
from shiftlens.errors import ShiftlensError  # noqa: E402
from shiftlens.executors.ray import RayExecutor  # noqa: E402
from shiftlens.store import ResultsDir  # noqa: E402


class SlowNet(nn.Module):
    """A tiny convnet that takes a little while per batch, so that a kill lands in the middle of a part."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 5, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.02)
        return self.head(self.pool(torch.relu(self.conv(x))).flatten(1))


class HungryNet(SlowNet):
    """Runs out of memory on every batch, as a part too large for any worker would."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise MemoryError("test: out of memory")


@pytest.fixture(scope="module")
def cluster():
    """2 workers of 1 CPU each; this module's classes travel to them by value (the workers cannot import tests/)."""
    from shiftlens.canvases import Normalisation
    from shiftlens.models import LayerSpec, ModelEntry, register

    register(ModelEntry(name="test_slow", description="test network: a small conv that sleeps per batch",
                        build=SlowNet, normalisation=Normalisation(),
                        layers={"head": LayerSpec("head", "head", "pooled conv features")},
                        default_layers=("head",)))
    register(ModelEntry(name="test_hungry", description="test network: always out of memory", build=HungryNet,
                        normalisation=Normalisation(), layers={"head": LayerSpec("head", "head", "never computed")},
                        default_layers=("head",)))
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def cfg(tmp_path_factory) -> RunConfig:
    root = tmp_path_factory.mktemp("ray")
    patches = write_patch_dir(root / "patches", n=3)
    return RunConfig(models=["test_slow"], patches=f"folder:{patches}", sizes=[24, 32], stride=4, canvas=48,
                     weights="random", precision="fp32", device="cpu", compile="off", batch_size=7, site=False,
                     analyses=["similarity", "separability"], svm="sklearn", out=str(root / "local"))


@pytest.fixture(scope="module")
def reference(cfg) -> api.RunResult:
    """The local executor's results, which every Ray run must equal."""
    return api.run(cfg)


LOGS: list[str] = []


@pytest.fixture(scope="module")
def executor(cluster):
    """Two workers of one thread each, shared by the tests (starting them is most of a test's time)."""
    ex = RayExecutor(workers=2, log=LOGS.append)
    yield ex
    ex.close()


class KillWorker:
    """A progress sink that SIGKILLs one worker's process the first time that worker reports a batch."""

    def __init__(self, executor: RayExecutor, victim: str) -> None:
        self.executor, self.victim = executor, victim
        self.killed: int | None = None
        self.total = 0

    def start(self, label: str, total_images: int) -> None: ...

    def advance(self, images: int, worker: str | None = None) -> None:
        self.total += images
        if worker == self.victim and self.killed is None:
            self.killed = next(s.pid for s in self.executor.slots if s.name == self.victim)
            os.kill(self.killed, signal.SIGKILL)

    def stop(self) -> None: ...


def assert_same_results(a: Path, b: Path) -> None:
    for name in ("similarity", "similarity_per_patch", "separability"):
        pd.testing.assert_frame_equal(pd.read_csv(a / "tables" / f"{name}.csv"), pd.read_csv(b / "tables" / f"{name}.csv"))
    pa, pb = list(ResultsDir(a).iter_parts()), list(ResultsDir(b).iter_parts())
    assert [p.meta for p in pa] == [p.meta for p in pb] and len(pa) == 6
    for x, y in zip(pa, pb):  # fp32 on a CPU: bit-identical arrays
        assert x.arrays.keys() == y.arrays.keys()
        assert all(np.array_equal(x.arrays[k], y.arrays[k]) for k in x.arrays)


def test_a_worker_killed_mid_part_is_replaced_and_the_tables_equal_the_local_run(executor, cfg, reference, tmp_path):
    assert executor.threads == 1 and len(executor.slots) == 2
    progress = KillWorker(executor, "w1")
    result = api.run(dataclasses.replace(cfg, executor="ray", out=str(tmp_path / "ray")), progress=progress,
                     log=LOGS.append, executor=executor)
    assert progress.killed is not None, "the victim never reported a batch"
    assert any("worker w1" in line and "was lost" in line for line in LOGS), LOGS
    assert progress.total == sum(t.images for t in reference.record.timings.values())  # the lost batches taken back
    assert result.computed == 6
    assert "parts computed by 2 Ray worker(s), 1 thread(s) each, on a local Ray" in result.record.notes
    assert_same_results(reference.out, result.out)


def test_an_interrupted_driver_resumes_with_the_finished_parts(executor, cfg, reference, tmp_path):
    out = tmp_path / "resumed"
    rcfg = dataclasses.replace(cfg, executor="ray", out=str(out))

    class Interrupt:
        def start(self, label: str, total_images: int) -> None: ...

        def advance(self, images: int, worker: str | None = None) -> None:
            if len(list((out / "parts").rglob("[!.]*.npz"))) >= 2:
                raise KeyboardInterrupt  # the driver stops, as on Ctrl+C

        def stop(self) -> None: ...

    with pytest.raises(KeyboardInterrupt):
        api.run(rcfg, progress=Interrupt(), executor=executor)
    executor.pids()  # each worker's queue runs in order: the parts in flight are finished (or lost) by now
    kept = len(list((out / "parts").rglob("[!.]*.npz")))
    assert 2 <= kept < 6
    again = api.run(rcfg, executor=executor)
    assert (again.computed, again.skipped) == (6 - kept, kept)
    assert_same_results(reference.out, out)


def test_a_second_driver_on_the_same_folder_is_refused_before_starting_workers(cfg, tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(RayExecutor, "__post_init__", lambda self: started.append(self))
    rcfg = dataclasses.replace(cfg, executor="ray", out=str(tmp_path / "locked"))
    with ResultsDir(rcfg.out).lock():
        with pytest.raises(ShiftlensError, match="being written by another shiftlens run"):
            api.run(rcfg)
    assert started == [] and not (tmp_path / "locked" / "run.json").exists()


def test_more_workers_than_cpus_is_one_clear_line(cluster):
    with pytest.raises(ShiftlensError, match=r"--workers 3 needs 1 CPU\(s\) each, the Ray cluster has 2"):
        RayExecutor(workers=3)


def test_a_part_that_fails_on_every_attempt_stops_the_run_with_one_line(executor, cfg, tmp_path):
    hungry = dataclasses.replace(cfg, models=["test_hungry"], executor="ray", out=str(tmp_path / "hungry"))
    with pytest.raises(ShiftlensError, match="failed 3 times, the last on worker w[12] \\(MemoryError\\)"):
        api.run(hungry, executor=executor, log=LOGS.append)
    assert sum("ran out of memory on worker" in line for line in LOGS) >= 2
