"""`--executor ray --workers 1,2`: how the Ray executor scales, and what starting it costs.

For each worker count the same job runs through `api.run` with a `RayExecutor` on one local Ray (every worker
pinned to the same number of threads, so that N workers use N times the CPUs of one and nothing is oversubscribed):
EfficientNet-Lite0 (packaged ImageNet weights), bundled patches, fp32. The run has two patch sizes: the first
(`WARM_SIZE`) gives every worker its first part, which carries building and compiling the model; the second is
the steady state, whose images/s are compared. Scaling efficiency = images/s with N workers / (N x images/s with
the fewest). The fixed cost = starting Ray (once) + starting the worker processes + the warm size's seconds beyond
what its images take at the steady rate (building, compiling, first batches). Images per CPU-second (the workers'
own process time) say what the workers cost whatever else loads the machine: on a busy machine the wall-clock
efficiency measures the neighbours, this one the executor.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Log
from shiftlens import api
from shiftlens.config import RunConfig
from shiftlens.errors import ShiftlensError
from shiftlens.patches import load_patches

MODEL = "efficientnet_lite0:pool"
WARM_SIZE = 74
STEADY_SIZE = 75
TARGET_EFFICIENCY = 0.85


def _config(out: Path, quick: bool, compile: bool, patches: int) -> RunConfig:
    return RunConfig(models=[MODEL], patches="sample", max_patches=patches, sizes=[WARM_SIZE, STEADY_SIZE],
                     stride=16 if quick else 8, precision="fp32", device="cpu", compile="on" if compile else "off",
                     weights="imagenet", analyses=["similarity"], site=False, out=str(out))


def measure(workers: list[int], quick: bool, compile: bool, log: Log = lambda s: None) -> dict[str, Any]:
    """Images/s per worker count, the efficiency against the fewest workers, and the start-up costs (JSON-ready)."""
    try:
        import ray
    except ImportError:
        raise ShiftlensError("--executor ray needs Ray: pip install -e '.[ray]'") from None
    from shiftlens.executors.ray import RayExecutor

    if not workers or min(workers) < 1:
        raise ShiftlensError(f"--workers {workers}: give worker counts of 1 or more, e.g. --workers 1,2")
    cpus = os.cpu_count() or 1
    threads = max(1, cpus // max(workers))
    if max(workers) * threads > cpus:
        raise ShiftlensError(f"--workers {max(workers)} needs a CPU each, this machine has {cpus}")
    # every worker gets the same number of steady parts: a multiple of each worker count
    per = 1
    for n in workers:
        per = per * n // _gcd(per, n)
    patches = min(len(load_patches(RunConfig(patches="sample"))), max(per, 4 if quick else 8) // per * per)
    out: dict[str, Any] = {"model": MODEL, "precision": "fp32", "compile": compile, "threads_per_worker": threads,
                           "cpu_count": cpus, "patches": patches, "sizes": {"warm": WARM_SIZE, "steady": STEADY_SIZE},
                           "stride": 16 if quick else 8, "load_average_start": list(os.getloadavg()), "by_workers": {}}
    t0 = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    out["ray_start_s"] = round(time.perf_counter() - t0, 2)
    log(f"ray: local cluster of {cpus} CPUs started in {out['ray_start_s']} s")
    try:
        for n in workers:
            with tempfile.TemporaryDirectory(prefix="shiftlens-ray-bench-") as tmp:
                executor = RayExecutor(workers=n, threads=threads, log=log)
                try:
                    result = api.run(_config(Path(tmp) / "results", quick, compile, patches), executor=executor)
                finally:
                    executor.close()
            warm = result.record.timings[f"{MODEL.split(':')[0]}/p{WARM_SIZE}"]
            steady = result.record.timings[f"{MODEL.split(':')[0]}/p{STEADY_SIZE}"]
            load_s = max(0.0, warm.seconds - warm.images / steady.images_per_s)
            parts = [d for item, d in executor.done if item.size == STEADY_SIZE]
            per_cpu_s = steady.images / sum(d.cpu_seconds for d in parts)
            out["by_workers"][str(n)] = {
                "images_per_s": steady.images_per_s, "steady_images": steady.images, "steady_s": steady.seconds,
                "images_per_cpu_s": round(per_cpu_s, 2),
                "parts_per_worker": {w: sum(d.worker == w for d in parts) for w in sorted({d.worker for d in parts})},
                "workers_start_s": round(executor.startup_seconds, 2), "build_and_compile_s": round(load_s, 2),
                "fixed_cost_s": round(out["ray_start_s"] + executor.startup_seconds + load_s, 2),
                "compiled": result.record.models[MODEL.split(":")[0]].compiled}
            log(f"ray: {n} worker(s): {steady.images_per_s:,.1f} img/s steady; workers started in "
                f"{executor.startup_seconds:.1f} s, building + compiling {load_s:.1f} s")
    finally:
        ray.shutdown()
    base = min(workers)
    base_ips = out["by_workers"][str(base)]["images_per_s"]
    out["efficiency"] = {str(n): round(out["by_workers"][str(n)]["images_per_s"] / (n / base * base_ips), 3)
                         for n in workers if n != base}
    base_cpu = out["by_workers"][str(base)]["images_per_cpu_s"]
    out["cpu_efficiency"] = {str(n): round(out["by_workers"][str(n)]["images_per_cpu_s"] / base_cpu, 3)
                             for n in workers if n != base}
    out["target_efficiency"] = TARGET_EFFICIENCY
    out["load_average_end"] = list(os.getloadavg())
    return out


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def summary(info: dict[str, Any], paper_hours_fp32: float | None) -> list[str]:
    """Lines for the console; with the main benchmark's paper projection, the projection on 8 such workers."""
    lines = [f"Ray executor, {info['model']} fp32, {info['threads_per_worker']} thread(s) per worker, "
             f"compile {'on' if info['compile'] else 'off'} (load {info['load_average_start'][0]:.1f} at the start):"]
    for n, r in info["by_workers"].items():
        lines.append(f"  {n} worker(s): {r['images_per_s']:,.1f} img/s; fixed cost {r['fixed_cost_s']:.1f} s (Ray "
                     f"{info['ray_start_s']:.1f} s + workers {r['workers_start_s']:.1f} s + build/compile "
                     f"{r['build_and_compile_s']:.1f} s)")
    for n, e in info["efficiency"].items():
        ok = "meets" if e >= info["target_efficiency"] else "misses"
        lines.append(f"  scaling efficiency with {n} workers: {e:.2f} ({ok} the {info['target_efficiency']} target); "
                     f"images per CPU-second {info['cpu_efficiency'][n]:.2f}x of {min(map(int, info['by_workers']))} "
                     "worker's (what the workers cost, whatever else loads the machine)")
        if paper_hours_fp32 is not None:
            eight = paper_hours_fp32 / (8 * e)
            lines.append(f"  paper protocol (fp32, {paper_hours_fp32:.0f} h on this machine): about {eight:.0f} h on 8 "
                         f"workers each as fast as this machine, at this efficiency")
    return lines
