"""The Ray executor: long-lived worker actors, one per GPU or per share of the cluster's CPUs, each computing whole
parts into the shared results folder.

The driver hands out one (model, size, patch) part at a time to whichever worker is free, so a slow or lost worker
holds back at most one part. `spread` hands out whole units instead (the leaderboard's models, one per worker), with
the same lost-worker rule: the unit goes back to the queue and resumes from what it saved. A worker builds (and compiles) each model once, on its first part of that model. Lost
workers: when a worker's process dies mid-part (killed, out of memory, its node gone), Ray restarts the actor
(`max_restarts`) and the driver puts the part back at the front of the queue, where the next free worker takes it;
the part file is only ever written whole (`ResultsDir.save_part`), so nothing half-written is kept. A restarting
worker is asked again until it answers (or START_TIMEOUT_S passes), so the only worker of a small cluster comes back
instead of counting as lost. A cluster with no live node left (a local Ray whose node was marked dead) ends the run
with one line; the finished parts stay. Progress: each worker reports its batches to a small tally actor that the
driver drains a few times a second without waiting on it; progress is cosmetic, so a lost tally only stops the
per-batch updates (the bar then moves by whole parts).

Storage is a folder every node mounts at the same path (NFS, a cluster filesystem): the results folder's lock,
atomic renames and resume all rely on one POSIX filesystem, and it is what Ray's own batch jobs expect.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import platform
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from shiftlens.errors import ShiftlensError
from shiftlens.executors.base import ModelJob, Progress, WorkItem, close_compute
from shiftlens.store import ResultsDir
from shiftlens.stream import FeatureExtractor

AUTO_THREADS = 4
"""`--workers 0` on CPUs: one worker per this many of the cluster's CPUs (fewer copies of the model than one per
core, and each still busy enough)."""
MAX_RESTARTS = 3
"""Restarts of one worker's process before the driver gives up on it (the others carry on)."""
MAX_ATTEMPTS = 3
"""Tries of one part (each by the next free worker) before the run stops on it: a part that kills every worker."""
START_TIMEOUT_S = 300.0
"""How long to wait for workers to start, or for a lost one to come back, before giving up on them."""
POLL_S = 0.2
LOCAL_HEALTH_CHECKS = {"health_check_period_ms": 5000, "health_check_timeout_ms": 30000,
                       "health_check_failure_threshold": 12}
"""Ray's health checks (`_system_config`, Ray 2.x names) for a local Ray this executor starts itself. With Ray's
defaults (every 3 s, 10 s timeout, 5 misses) a busy machine that delays the raylet marks the only node dead and ends
the run (issue 22: load 5-6 on 2 cores); here a hung raylet is tolerated for minutes, and a crashed one is still
seen at once by the workers it takes with it."""


def _ray():
    """Ray, or one line saying how to get it (it is an optional extra)."""
    try:
        import ray
    except ImportError:
        raise ShiftlensError("--executor ray needs Ray: pip install 'shiftlens[ray]' (or pip install ray)") from None
    return ray


@dataclass
class PartDone:
    """What a worker says about a finished part."""

    worker: str
    compiled: bool
    compile_error: str | None
    seconds: float
    cpu_seconds: float
    """CPU time of the worker's process for the part (all its threads): what the part cost, however loaded the
    machine."""


class Worker:
    """One Ray actor: a process with its share of threads, holding one model's FeatureExtractor at a time."""

    def __init__(self, name: str, threads: int, tally: str, namespace: str) -> None:
        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):  # only settable before the first parallel work
            torch.set_num_interop_threads(1)
        self.name = name
        # looked up by name, not passed as a handle: a restarted actor gets its constructor arguments again, and a
        # handle would have to outlive the driver's reference in the object store
        try:
            self.tally: Any = _ray().get_actor(tally, namespace=namespace)
        except ValueError:  # the tally is gone: a worker computes without reporting progress
            self.tally = None
        self.job_id: str | None = None
        self.job: ModelJob | None = None
        self.extractor: FeatureExtractor | None = None

    def pid(self) -> tuple[int, str]:
        return os.getpid(), platform.node()

    def _load(self, job_id: str, job: ModelJob) -> None:
        if not Path(job.results_root, "run.json").is_file():
            raise ShiftlensError(f"Ray worker {self.name} on {platform.node()} does not see the results folder "
                                 f"{job.results_root}: give --out a folder every node mounts at the same path")
        if self.extractor is not None:
            self.extractor.close()
            self.extractor = None
        model = job.build()
        self.extractor = FeatureExtractor(model, job.layers, job.spec.entry.normalisation, job.device, job.precision,
                                          compile=job.compile, pad_to=job.cfg.batch_size)
        self.job_id, self.job = job_id, job

    def compute(self, job_id: str, job_box: list, item: WorkItem, token: int) -> PartDone:
        """One part, saved into the results folder; `job_box` holds the job's object ref (fetched only when this
        worker has not loaded that model yet)."""
        ray = _ray()
        if job_id != self.job_id:
            self._load(job_id, ray.get(job_box[0]))
        job, extractor = self.job, self.extractor
        t0, c0 = time.perf_counter(), time.process_time()
        arrays = job.compute(extractor, job.spec, job.weights_label, item.patch,
                             item.patch.resized(item.size, job.cfg.keep_aspect), job.cfg,
                             lambda n: self._report(token, n))
        ResultsDir(job.results_root).save_part(item.meta, arrays)
        return PartDone(self.name, extractor.compiled, extractor.compile_error, time.perf_counter() - t0,
                        time.process_time() - c0)

    def call(self, fn: Callable[..., Any], args: tuple) -> tuple[str, Any, float]:
        """A whole unit of work in this process, with its threads (`RayExecutor.spread`): `fn(*args, worker=...)`,
        told who computes it; returns this worker's name, fn's result and the seconds it took."""
        t0 = time.perf_counter()
        result = fn(*args, worker=f"Ray worker {self.name} (pid {os.getpid()} on {platform.node()})")
        return self.name, result, time.perf_counter() - t0

    def close_job(self, job_id: str) -> None:
        """The end of a session's `run`: this worker's cross-part state of the job goes into its shards (a worker
        restarted since, or one that never computed the job, holds none)."""
        if job_id == self.job_id and self.job is not None:
            close_compute(self.job.compute)

    def _report(self, token: int, images: int) -> None:
        """One batch to the tally; never fails the part (progress is cosmetic)."""
        if self.tally is not None:
            try:
                self.tally.add.remote(self.name, token, images)
            except Exception:  # any Ray error here is the tally's, not the part's
                self.tally = None


class Tally:
    """Batches reported by the workers, drained by the driver for the progress bar."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, int]] = []

    def add(self, worker: str, token: int, images: int) -> None:
        self.seen.append((worker, token, images))

    def take(self) -> list[tuple[str, int, int]]:
        seen, self.seen = self.seen, []
        return seen


@dataclass
class _Slot:
    name: str
    actor: Any
    pid: int
    node: str
    lost: int = 0
    gone: bool = False
    probe: Any = None
    """While a lost worker restarts: a call that answers once it is back (no parts go to it until then)."""
    waiting_since: float = 0.0
    """When the probe was first sent: a worker that has not answered START_TIMEOUT_S later is given up."""

    def ready(self, ray: Any) -> bool:
        """Whether parts can go to this worker; a restarted one's new pid is read here."""
        if self.gone:
            return False
        if self.probe is None:
            return True
        done, _ = ray.wait([self.probe], timeout=0)
        if not done:
            self.gone = time.monotonic() - self.waiting_since > START_TIMEOUT_S  # no room for it left in the cluster
            return False
        try:
            self.pid, self.node = ray.get(self.probe)
        except ray.exceptions.ActorUnavailableError:  # asked while Ray was still restarting it: ask again
            self.gone = time.monotonic() - self.waiting_since > START_TIMEOUT_S
            self.probe = None if self.gone else self.actor.pid.remote()
            return False
        except ray.exceptions.RayActorError:
            self.gone = True  # its restarts are used up
            return False
        self.probe = None
        return True


@dataclass(frozen=True)
class Task:
    """A whole unit of work for one worker (`RayExecutor.spread`), e.g. one leaderboard model's runs: `fn(*args,
    worker=WHO)` in the worker's process. fn must resume from what an earlier, killed attempt saved."""

    label: str
    fn: Callable[..., Any]
    args: tuple = ()


@dataclass
class _InFlight:
    slot: _Slot
    item: WorkItem
    token: int
    reported: int = 0


class RaySession:
    """One model on every worker; `run` hands out parts to free workers until all are saved."""

    def __init__(self, executor: "RayExecutor", job: ModelJob) -> None:
        ray = _ray()
        self.executor = executor
        self.job_id = uuid.uuid4().hex
        self.job_box = [ray.put(replace(job, model=None))]  # workers build their own copy
        self.compiled = job.compile
        self.compile_error: str | None = None
        self.attempts: dict[str, int] = collections.defaultdict(int)

    def run(self, items: list[WorkItem], progress: Progress) -> None:
        ray = _ray()
        try:
            self._run(items, progress)
            self._close_job()
        except ray.exceptions.RayTaskError:
            raise  # an error in shiftlens' own code on a worker: a bug, with its traceback
        except ray.exceptions.RayError as exc:  # Ray itself failed (a node, the cluster's services)
            self.executor.check_alive()
            raise ShiftlensError(f"Ray failed ({_first_line(exc)}): the finished parts are saved; run the same command "
                                 "again to compute the rest") from None

    def _run(self, items: list[WorkItem], progress: Progress) -> None:
        ray = _ray()
        ex = self.executor
        pending = collections.deque(items)
        running: dict[Any, _InFlight] = {}
        live: dict[int, _InFlight] = {}
        while pending or running:
            busy = {id(f.slot) for f in running.values()}
            for slot in ex.slots:
                if pending and id(slot) not in busy and slot.ready(ray):
                    item = pending.popleft()
                    ex.token += 1
                    flight = _InFlight(slot, item, ex.token)
                    running[slot.actor.compute.remote(self.job_id, self.job_box, item, flight.token)] = flight
                    live[flight.token] = flight
            if not any(not s.gone for s in ex.slots):
                raise ShiftlensError(f"every Ray worker was lost ({len(pending)} part(s) left): the finished parts are "
                                     "saved; run the same command again to compute the rest")
            ready: list = []
            if running:
                ready = ray.wait(list(running), num_returns=1, timeout=POLL_S)[0]
            else:  # every worker that is left is restarting
                time.sleep(POLL_S)
            self._report(live, progress)
            for ref in ready:
                flight = running.pop(ref)
                try:
                    done: PartDone = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.OutOfMemoryError) as exc:  # the process died
                    self._give_back(flight, exc, live, pending, progress)
                    ex.lost(flight.slot, flight.item, exc)
                    continue
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else None
                    if isinstance(cause, ShiftlensError):
                        raise ShiftlensError(str(cause)) from None
                    if not isinstance(cause, (torch.cuda.OutOfMemoryError, MemoryError)):
                        raise
                    self._give_back(flight, cause, live, pending, progress)
                    ex.log(f"ray: {flight.item.label} ran out of memory on worker {flight.slot.name}; it goes to the "
                           "next free worker")
                    continue
                live.pop(flight.token)
                ex.done.append((flight.item, done))
                progress.advance(flight.item.images - flight.reported, done.worker)
                self.compiled = self.compiled and done.compiled
                self.compile_error = self.compile_error or done.compile_error

    def _close_job(self) -> None:
        """Every live worker writes its cross-part state (each its own shards; the driver merges them when it
        builds the outputs). A worker lost meanwhile loses its state: the driver's recount redoes its parts."""
        ray = _ray()
        calls = [slot.actor.close_job.remote(self.job_id) for slot in self.executor.slots
                 if not slot.gone and slot.probe is None]
        for ref in calls:
            try:
                ray.get(ref, timeout=START_TIMEOUT_S)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
                self.executor.log(f"ray: a worker was lost while writing its cross-part state "
                                  f"({exc.__class__.__name__}); its parts are computed again")

    def _give_back(self, flight: _InFlight, exc: BaseException, live: dict[int, _InFlight],
                   pending: collections.deque, progress: Progress) -> None:
        """A failed attempt: its images leave the progress bar and its part goes to the front of the queue."""
        self._report(live, progress)
        live.pop(flight.token)
        progress.advance(-flight.reported, flight.slot.name)
        self.attempts[flight.item.label] += 1
        if self.attempts[flight.item.label] >= MAX_ATTEMPTS:
            raise ShiftlensError(f"{flight.item.label} failed {MAX_ATTEMPTS} times, the last on worker {flight.slot.name} "
                                 f"({exc.__class__.__name__}): the finished parts are saved; see `ray logs` for why, "
                                 "then run the same command again")
        pending.appendleft(flight.item)

    def _report(self, live: dict[int, _InFlight], progress: Progress) -> None:
        """The batches the workers reported since the last call, if the tally has answered; never waits on it."""
        for worker, token, images in self.executor.take_tally():
            flight = live.get(token)
            if flight is None or flight.reported + images > flight.item.images:
                continue  # a part already counted whole, or one given back after its worker was lost
            flight.reported += images
            progress.advance(images, worker)


@dataclass
class RayExecutor:
    """Connects to the cluster at `address` (`auto`, `HOST:PORT`) or starts a local one (None), and starts
    `workers` actors (0: one per GPU when the run is on CUDA, else one per AUTO_THREADS CPUs) of `threads` CPU
    threads each (0: the cluster's CPUs shared out evenly)."""

    address: str | None = None
    workers: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    log: Callable[[str], None] = lambda s: None
    threads: int = 0
    name: str = "ray"
    slots: list[_Slot] = field(default_factory=list)
    started_ray: bool = False
    startup_seconds: float = 0.0
    """Connecting to (or starting) Ray and starting every worker process, measured; models are built later."""
    token: int = 0
    tally: Any = None
    taking: Any = None
    """The tally's answer still on its way (asked once, read when it is back)."""
    done: list[tuple[WorkItem, PartDone]] = field(default_factory=list)
    """Every part the workers finished, with who computed it and its cost (what the benchmark reads)."""
    busy: dict[str, _Slot] = field(default_factory=dict)
    """While `spread` runs: the worker each running unit is on, by the unit's label."""

    def __post_init__(self) -> None:
        ray = _ray()
        t0 = time.perf_counter()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
            try:
                if self.address:
                    _check_reachable(self.address)
                    ray.init(address=self.address, **kwargs)
                else:
                    ray.init(_system_config=LOCAL_HEALTH_CHECKS, **kwargs)
            except ConnectionError as exc:
                raise ShiftlensError(f"--ray-address {self.address}: no Ray cluster answers there ({exc}): start one "
                                     "with `ray start --head`, or leave --ray-address out to start a local one") from None
            self.started_ray = True
        try:
            self._start_workers(ray)
        except BaseException:
            self.close()
            raise
        self.startup_seconds = time.perf_counter() - t0

    def _start_workers(self, ray) -> None:
        resources = ray.cluster_resources()
        cpus, gpus = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
        on_gpu = self.device.type == "cuda"
        if on_gpu:
            n = self.workers or gpus
            if n < 1 or n > gpus:
                raise ShiftlensError(f"--workers {n} on CUDA needs {n} GPU(s), the Ray cluster has {gpus}: give "
                                     f"--workers {gpus} or fewer, or --device cpu")
            self.threads, options = 1, dict(num_gpus=1, num_cpus=1)
        else:
            n = self.workers or max(1, cpus // AUTO_THREADS)
            if n * max(self.threads, 1) > cpus:
                raise ShiftlensError(f"--workers {n} needs {max(self.threads, 1)} CPU(s) each, the Ray cluster has {cpus}: "
                                     f"give --workers {cpus // max(self.threads, 1)} or fewer")
            self.threads = self.threads or max(1, cpus // n)
            options = dict(num_cpus=self.threads)
        namespace, tally = ray.get_runtime_context().namespace, f"shiftlens-tally-{uuid.uuid4().hex}"
        self.tally = ray.remote(num_cpus=0, max_restarts=-1)(Tally).options(name=tally, namespace=namespace).remote()
        actor_class = ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=0, **options)(Worker)
        actors = [(f"w{i + 1}", actor_class.remote(f"w{i + 1}", self.threads, tally, namespace)) for i in range(n)]
        refs = [a.pid.remote() for _, a in actors]
        ready, waiting = ray.wait(refs, num_returns=len(refs), timeout=START_TIMEOUT_S)
        if waiting:
            raise ShiftlensError(f"Ray started {len(ready)} of {n} workers within {START_TIMEOUT_S:.0f} s: the cluster "
                                 "lacks the resources (see `ray status`); give fewer --workers")
        for (name, actor), (pid, node) in zip(actors, ray.get(refs)):
            self.slots.append(_Slot(name, actor, pid, node))
        where = f"Ray at {self.address}" if self.address else "a local Ray"
        self.log(f"ray: {n} worker(s) on {where}, {'1 GPU' if on_gpu else f'{self.threads} thread(s)'} each "
                 f"({', '.join(f'{s.name} pid {s.pid} on {s.node}' for s in self.slots)})")

    def take_tally(self) -> list[tuple[str, int, int]]:
        """What the workers reported since the last answer; nothing while the tally has not answered, or once it
        is lost (said once: progress is cosmetic, the run goes on)."""
        if self.tally is None:
            return []
        ray = _ray()
        try:
            if self.taking is None:
                self.taking = self.tally.take.remote()
            if not ray.wait([self.taking], timeout=0)[0]:
                return []
            seen, self.taking = ray.get(self.taking), None
            return seen
        except ray.exceptions.RayError as exc:
            self.tally = self.taking = None
            self.log(f"ray: the progress tally was lost ({exc.__class__.__name__}); the run goes on, its progress bar "
                     "now moves by whole parts")
            return []

    def check_alive(self) -> None:
        """One line when no node of the cluster is alive any more (a local Ray whose node Ray marked dead)."""
        ray = _ray()
        where = f"the Ray cluster at {self.address}" if self.address else "the local Ray"
        again = "the finished parts are saved; run the same command again to compute the rest"
        try:
            nodes = ray.nodes()
        except Exception as exc:  # the cluster's own services are gone
            raise ShiftlensError(f"{where} stopped answering ({exc.__class__.__name__}): {again}") from None
        if nodes and not any(n.get("Alive") for n in nodes):
            why = "; ".join(dict.fromkeys(n.get("DeathReasonMessage") or "no reason given" for n in nodes))
            hint = " (a busy machine can delay Ray's own processes that long)" if "heartbeat" in why else ""
            raise ShiftlensError(f"every node of {where} is dead ({why}){hint}: {again}")

    def spread(self, tasks: list[Task], done: Callable[[Task, str, Any, float], None]) -> None:
        """Whole units of work, each on one worker, as many at once as there are free workers; `done(task, worker,
        result, seconds)` is called here as each finishes. A worker lost mid-unit (killed, out of memory, its node
        gone) is restarted by Ray and its unit goes back to the front of the queue for the next free worker, which
        resumes it from what it saved; a unit that loses its worker MAX_ATTEMPTS times stops the command."""
        ray = _ray()
        pending = collections.deque(tasks)
        running: dict[Any, tuple[_Slot, Task]] = {}
        attempts: dict[str, int] = collections.defaultdict(int)
        self.busy = {}
        try:
            while pending or running:
                taken = {id(slot) for slot, _ in running.values()}
                for slot in self.slots:
                    if pending and id(slot) not in taken and slot.ready(ray):
                        task = pending.popleft()
                        running[slot.actor.call.remote(task.fn, task.args)] = (slot, task)
                        self.busy[task.label] = slot
                if not any(not s.gone for s in self.slots):
                    raise ShiftlensError(f"every Ray worker was lost ({len(pending) + len(running)} unit(s) left): "
                                         "what they saved is kept; run the same command again to compute the rest")
                ready: list = []
                if running:
                    ready = ray.wait(list(running), num_returns=1, timeout=POLL_S)[0]
                else:  # every worker that is left is restarting
                    time.sleep(POLL_S)
                for ref in ready:
                    slot, task = running.pop(ref)
                    self.busy.pop(task.label, None)
                    try:
                        worker, result, seconds = ray.get(ref)
                    except (ray.exceptions.RayActorError, ray.exceptions.OutOfMemoryError) as exc:
                        attempts[task.label] += 1
                        if attempts[task.label] >= MAX_ATTEMPTS:
                            raise ShiftlensError(f"{task.label} lost its worker {MAX_ATTEMPTS} times, the last "
                                                 f"{slot.name} ({exc.__class__.__name__}): what it saved is kept; see "
                                                 "`ray logs` for why, then run the same command again") from None
                        pending.appendleft(task)
                        self.lost(slot, task, exc)
                        continue
                    except ray.exceptions.RayTaskError as exc:
                        cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else None
                        if isinstance(cause, ShiftlensError):
                            raise ShiftlensError(str(cause)) from None
                        raise
                    done(task, worker, result, seconds)
        except ray.exceptions.RayTaskError:
            raise  # an error in shiftlens' own code on a worker: a bug, with its traceback
        except ray.exceptions.RayError as exc:  # Ray itself failed (a node, the cluster's services)
            self.check_alive()
            raise ShiftlensError(f"Ray failed ({_first_line(exc)}): what the workers saved is kept; run the same "
                                 "command again to compute the rest") from None
        finally:
            self.busy = {}

    def lost(self, slot: _Slot, item: WorkItem | Task, exc: BaseException) -> None:
        """A worker died mid-part: its part is already back in the queue; Ray restarts the process, up to
        MAX_RESTARTS times. A cluster with no live node left ends the run here."""
        self.check_alive()
        slot.lost += 1
        slot.waiting_since = time.monotonic()
        slot.gone = slot.lost > MAX_RESTARTS
        slot.probe = None if slot.gone else slot.actor.pid.remote()
        fate = "given up" if slot.gone else "restarting"
        self.log(f"ray: worker {slot.name} (pid {slot.pid} on {slot.node}) was lost during {item.label} "
                 f"({exc.__class__.__name__}); the part goes to the next free worker, {slot.name} is {fate}")

    def describe(self) -> str:
        each = "1 GPU" if self.device.type == "cuda" else f"{self.threads} thread(s)"
        where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
        return f"{len(self.slots)} Ray worker(s), {each} each, on {where}"

    @contextlib.contextmanager
    def session(self, job: ModelJob) -> Iterator[RaySession]:
        yield RaySession(self, job)

    def pids(self) -> dict[str, int]:
        """Each worker's current process id (a restarted worker has a new one; one still restarting is waited for,
        up to START_TIMEOUT_S)."""
        ray = _ray()
        for slot in self.slots:
            if not slot.gone and slot.probe is None:
                slot.probe, slot.waiting_since = slot.actor.pid.remote(), time.monotonic()
            while not slot.gone and not slot.ready(ray):
                time.sleep(POLL_S)
        return {s.name: s.pid for s in self.slots if not s.gone}

    def close(self) -> None:
        if not _ray_loaded():
            return
        ray = _ray()
        for slot in self.slots:
            with contextlib.suppress(Exception):
                ray.kill(slot.actor)
        if self.tally is not None:
            with contextlib.suppress(Exception):
                ray.kill(self.tally)
        self.slots, self.tally, self.taking = [], None, None
        if self.started_ray and ray.is_initialized():
            ray.shutdown()
        self.started_ray = False


def _check_reachable(address: str) -> None:
    """A HOST:PORT that nothing answers on fails here in seconds (Ray itself keeps retrying for minutes)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ShiftlensError(f"--ray-address {address}: give auto or HOST:PORT of the Ray head (e.g. 10.0.0.1:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise ShiftlensError(f"--ray-address {address}: nothing answers there ({exc.strerror or exc}): start the head "
                             "with `ray start --head`, or leave --ray-address out to start a local Ray") from None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{exc.__class__.__name__}: {lines[0]}" if lines else exc.__class__.__name__


def _ray_loaded() -> bool:
    return "ray" in sys.modules
