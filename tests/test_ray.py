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
from shiftlens.executors import closing  # noqa: E402
from shiftlens.executors.ray import LOCAL_HEALTH_CHECKS, RayExecutor  # noqa: E402
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
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
             _system_config=LOCAL_HEALTH_CHECKS)  # as the executor's own local Ray: a busy CI machine is no dead node
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


@pytest.fixture(scope="class")
def single(cluster):
    """One worker of two threads (the default on 2 CPUs), released at the end of TestOneWorker."""
    ex = RayExecutor(log=LOGS.append)
    yield ex
    ex.close()


class TestOneWorker:
    """These run before the shared 2-worker executor exists, which would hold every CPU."""

    def test_the_only_worker_killed_mid_part_restarts_and_the_run_finishes(self, single, cfg, reference, tmp_path):
        assert len(single.slots) == 1 and single.threads == 2
        progress = KillWorker(single, "w1")
        result = api.run(dataclasses.replace(cfg, executor="ray", out=str(tmp_path / "single")), progress=progress,
                         log=LOGS.append, executor=single)
        assert progress.killed is not None and single.slots[0].pid != progress.killed  # the restarted process
        assert any("worker w1" in line and "is restarting" in line for line in LOGS), LOGS
        assert result.computed == 6
        assert_same_results(reference.out, result.out)

    def test_a_lost_progress_tally_leaves_the_run_going(self, single, cfg, reference, tmp_path):
        class KillTally:
            total = 0

            def start(self, label: str, total_images: int) -> None: ...

            def advance(self, images: int, worker: str | None = None) -> None:
                self.total += images
                if single.tally is not None:
                    ray.kill(single.tally)

            def stop(self) -> None: ...

        progress = KillTally()
        result = api.run(dataclasses.replace(cfg, executor="ray", out=str(tmp_path / "tally")), progress=progress,
                         log=LOGS.append, executor=single)
        assert sum("progress tally was lost" in line for line in LOGS) == 1, LOGS
        assert progress.total == sum(t.images for t in reference.record.timings.values())  # whole parts still count
        assert_same_results(reference.out, result.out)


def test_a_worker_killed_mid_part_is_replaced_and_the_tables_equal_the_local_run(executor, cfg, reference, tmp_path):
    assert executor.threads == 1 and len(executor.slots) == 2
    progress = KillWorker(executor, "w1")
    result = api.run(dataclasses.replace(cfg, executor="ray", out=str(tmp_path / "ray")), progress=progress,
                     log=LOGS.append, executor=executor)
    assert progress.killed is not None, "the victim never reported a batch"
    assert any("worker w1" in line and "was lost" in line for line in LOGS), LOGS
    assert not any(s.gone for s in executor.slots)  # w1 restarts, it is not given up
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


@pytest.fixture(scope="module")
def units_cfg(cfg) -> RunConfig:
    """The units analysis (cross-part state: each worker its own shards) over 8 patches of one size, so that a
    worker holds finished parts in its unwritten state when it is killed."""
    root = Path(cfg.out).parent
    patches = write_patch_dir(root / "patches8", n=8)
    return dataclasses.replace(cfg, patches=f"folder:{patches}", sizes=[24], analyses=["similarity", "units"], svm="auto",
                               out=str(root / "local-units"))


class KillAfterSaved(KillWorker):
    """SIGKILLs the victim on its first batch after the driver has heard of one of its parts being saved: the
    victim dies holding that part's contribution in its cross-part state, which no shard has yet."""

    def advance(self, images: int, worker: str | None = None) -> None:
        self.total += images
        finished = any(done.worker == self.victim for _, done in self.executor.done[self.since:])
        if worker == self.victim and finished and self.killed is None:
            self.killed = next(s.pid for s in self.executor.slots if s.name == self.victim)
            os.kill(self.killed, signal.SIGKILL)


def test_units_on_ray_with_a_worker_killed_holding_parts_equal_the_local_tables(executor, units_cfg, tmp_path):
    """Issue 23: units runs on Ray (each worker accumulates, the driver merges the shards in a canonical order), and
    a worker killed with finished parts in its unwritten state has them recomputed in the same run."""
    from shiftlens.analyses.unit_state import shard_paths, read_shard_meta

    local = api.run(units_cfg)
    progress = KillAfterSaved(executor, "w2")
    progress.since = len(executor.done)
    out = tmp_path / "ray-units"
    LOGS.clear()
    result = api.run(dataclasses.replace(units_cfg, executor="ray", out=str(out)), progress=progress,
                     log=LOGS.append, executor=executor)
    assert progress.killed is not None, "the victim never finished a part"
    assert any("worker w2" in line and "was lost" in line for line in LOGS), LOGS
    assert any("part(s) are recomputed: its units contribution was never saved" in line for line in LOGS), LOGS
    assert result.computed > 8  # the victim's saved parts, computed again
    for name in ("units", "units_per_unit", "similarity", "similarity_per_patch"):
        assert (out / "tables" / f"{name}.csv").read_bytes() == (local.out / "tables" / f"{name}.csv").read_bytes(), name
    metas = [read_shard_meta(p) for p in shard_paths(ResultsDir(out), "test_slow", 24)]
    named = [pid for m in metas for pid in m.parts]
    assert len(metas) >= 2 and sorted(named) == sorted(p.patch_id for p in ResultsDir(out).iter_parts())
    assert len(named) == len(set(named)) == 8  # every part in exactly one worker's shard


ISOLATED = "SHIFTLENS_TEST_DEAD_NODE"
"""Set in the child process that runs the dead-node test: a driver whose node Ray marks dead can be ended by Ray,
and in the whole suite (after other modules' Ray clusters) it was, silently, taking pytest with it."""


def test_the_dead_node_test_passes_in_a_process_of_its_own():
    """Runs the next test in a child pytest, so Ray ending a driver whose node died cannot end the suite."""
    import subprocess

    test = f"{Path(__file__)}::test_a_local_ray_whose_node_is_marked_dead_ends_in_one_line_and_a_rerun_resumes"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
                          env={**os.environ, ISOLATED: "1"}, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.skipif(os.environ.get(ISOLATED) != "1", reason="run in a process of its own by the test above")
def test_a_local_ray_whose_node_is_marked_dead_ends_in_one_line_and_a_rerun_resumes(executor, cfg, reference, tmp_path,
                                                                                    monkeypatch):
    """Issue 22: on a busy machine Ray marked its own node dead. Here the raylet is stopped until Ray's health
    checks (made fast for the test) give up on it; last in this module, since it ends the module's cluster."""
    import shiftlens.executors.ray as ray_executor

    executor.close()
    ray.shutdown()  # this test needs a Ray of its own, started by the executor with the health checks below
    monkeypatch.setattr(ray_executor, "LOCAL_HEALTH_CHECKS", {
        "health_check_initial_delay_ms": 500, "health_check_period_ms": 500, "health_check_timeout_ms": 500,
        "health_check_failure_threshold": 2})
    out = tmp_path / "dead"
    rcfg = dataclasses.replace(cfg, executor="ray", out=str(out))

    class StopRaylet:
        stopped = False

        def start(self, label: str, total_images: int) -> None: ...

        def advance(self, images: int, worker: str | None = None) -> None:
            if not self.stopped and list((out / "parts").rglob("[!.]*.npz")):
                self.stopped = True
                raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid
                os.kill(raylet, signal.SIGSTOP)  # as a machine too busy to run it would
                time.sleep(5)  # the driver hands out nothing meanwhile; Ray gives up on the node after ~2 s
                os.kill(raylet, signal.SIGCONT)

        def stop(self) -> None: ...

    progress = StopRaylet()
    with closing(RayExecutor(workers=1, threads=1, log=LOGS.append)) as ex, pytest.raises(ShiftlensError) as err:
        api.run(rcfg, progress=progress, log=LOGS.append, executor=ex)
    assert progress.stopped
    message = str(err.value)
    assert "\n" not in message and "every node of the local Ray is dead" in message and "heartbeats" in message
    assert message.endswith("the finished parts are saved; run the same command again to compute the rest")
    kept = len(list((out / "parts").rglob("[!.]*.npz")))
    assert kept >= 1
    again = api.run(dataclasses.replace(rcfg, executor="local"))
    assert (again.computed, again.skipped) == (6 - kept, kept)
    assert_same_results(reference.out, out)
