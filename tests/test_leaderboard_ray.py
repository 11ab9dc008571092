"""`shiftlens leaderboard --executor ray` on a local 2-worker Ray (issue 26): the models spread over the workers, one
whole model per worker; the tables are bit-identical to the local executor's (fp32, CPU); a worker killed mid-model
is restarted and the model requeued, resuming from its saved parts.

Tiny: two untrained built-in networks (the workers build models from the registry, so no test-only network), two
32 px patches on a 128 px canvas at stride 32 (16 positions and 16 circular shifts per patch).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray", reason="ray is not installed: pip install -e '.[ray]' to test --executor ray")

from conftest import write_patch_dir  # noqa: E402
from shiftlens.config import RunConfig  # noqa: E402
from shiftlens.executors.ray import LOCAL_HEALTH_CHECKS, RayExecutor  # noqa: E402
from shiftlens.leaderboard import run as board  # noqa: E402
from shiftlens.store import ResultsDir  # noqa: E402

MODELS = "mobilenet_v2:fc@random;resnet18_aps@random"
VICTIM = "mobilenet_v2:fc@random"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> RunConfig:
    root = tmp_path_factory.mktemp("lbray")
    patches = write_patch_dir(root / "patches", n=2)
    return RunConfig(patches=f"folder:{patches}", sizes=[32], stride=32, canvas=128, weights="random",
                     precision="fp32", device="cpu", compile="off", batch_size=16, site=False, max_patches=2,
                     out=str(root / "unused"))


@pytest.fixture(scope="module")
def reference(base) -> Path:
    """The local executor's leaderboard, with one thread as each Ray worker has (fp32 sums in the same order)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = Path(base.out).parent / "local"
        result = board.run(base, MODELS, out)
    finally:
        torch.set_num_threads(threads)
    assert [o.status for o in result.outcomes] == ["computed", "computed"]
    return out


LOGS: list[str] = []


@pytest.fixture(scope="module")
def executor():
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
             _system_config=LOCAL_HEALTH_CHECKS)
    ex = RayExecutor(workers=2, log=LOGS.append)
    yield ex
    ex.close()
    ray.shutdown()


def ray_config(base: RunConfig) -> RunConfig:
    return dataclasses.replace(base, executor="ray", workers=2)


def table_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/*/tables/*.csv"))
            } | {"tables/leaderboard.csv": (out / "tables" / "leaderboard.csv").read_bytes()}


def test_models_spread_over_the_workers_and_the_tables_are_bit_identical(executor, base, reference):
    out = Path(base.out).parent / "ray"
    LOGS.clear()
    result = board.run(ray_config(base), MODELS, out, log=LOGS.append, executor=executor)
    assert [o.status for o in result.outcomes] == ["computed", "computed"]
    ours, theirs = table_files(out), table_files(reference)
    assert sorted(ours) == sorted(theirs) and len(ours) > 10
    for name in theirs:
        assert ours[name] == theirs[name], name
    # one whole model per worker, both at once: each model's runs say which worker computed them
    workers = {}
    for o in result.outcomes:
        notes = [n for folder in (o.folder, o.circular) for n in ResultsDir(out / folder).read_run().notes
                 if n.startswith("parts computed by Ray worker")]
        assert len(notes) == 2 and notes[0].split()[5] == notes[1].split()[5], notes  # move and circular: one worker
        workers[o.key] = notes[0].split()[5]
    assert sorted(workers.values()) == ["w1", "w2"], workers
    assert any("the models spread over 2 Ray worker(s)" in line for line in LOGS), LOGS


def test_a_worker_killed_mid_model_is_restarted_and_the_model_resumes(executor, base, reference):
    out = Path(base.out).parent / "killed"
    parts = out / "models"
    kept: dict[Path, int] = {}
    killed: list[int] = []

    def kill_mid_model() -> None:
        """SIGKILLs the worker computing VICTIM once its first part is saved (the model is not finished then)."""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            saved = [p for p in parts.glob("mobilenet_v2*/parts/**/[!.]*.npz")]
            slot = executor.busy.get(VICTIM)
            if saved and slot is not None:
                kept.update({p: p.stat().st_mtime_ns for p in saved})
                killed.append(slot.pid)
                os.kill(slot.pid, signal.SIGKILL)
            time.sleep(0.01)

    watcher = threading.Thread(target=kill_mid_model, daemon=True)
    LOGS.clear()
    watcher.start()
    result = board.run(ray_config(base), MODELS, out, log=LOGS.append, executor=executor)
    watcher.join()
    assert killed, "the victim's model finished before a part of it was saved"
    assert any(f"was lost during {VICTIM}" in line and "is restarting" in line for line in LOGS), LOGS
    assert not any(s.gone for s in executor.slots) and killed[0] not in executor.pids().values()
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # the parts saved before the kill are not recomputed
    assert [o.status for o in result.outcomes] == ["computed", "computed"]
    ours, theirs = table_files(out), table_files(reference)
    for name in theirs:
        assert ours[name] == theirs[name], name
