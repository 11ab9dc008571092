"""Memory of the units analysis's accumulator: the peak resident memory of a fresh process that holds the per-position
sums of one layer (positions x units, float64), adds a patch's worth of batches and writes its shard, against the
stated bound positions x units x 8 bytes (analyses/unit_state.py).

`python -m benchmarks.units_memory [POSITIONS UNITS]` prints one JSON line; `measure` runs it in a fresh process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.rss import peak_rss_mb

REPO_ROOT = Path(__file__).resolve().parents[1]
BATCH = 64


def run_and_measure(positions: int, units: int) -> dict[str, Any]:
    import torch

    from shiftlens.analyses.unit_state import UnitAccumulator
    from shiftlens.store import ResultsDir

    torch.zeros(1)  # libraries loaded: the baseline
    base = peak_rss_mb()
    n = int(round(positions ** 0.5))
    with tempfile.TemporaryDirectory(prefix="shiftlens-bench-units-") as tmp:
        acc = UnitAccumulator(ResultsDir(tmp), "model", 75, flush_every_s=float("inf"))
        acc.set_grid(n)
        g = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        for start in range(0, n * n, BATCH):  # one whole patch, batch by batch
            idx = torch.arange(start, min(start + BATCH, n * n))
            acc.add("layer", idx, torch.randn(len(idx), units, generator=g))
        add_s = time.perf_counter() - t0
        after_add = peak_rss_mb()
        acc.finished("p", "t")
        acc.saved("p")
        t0 = time.perf_counter()
        acc.close()
        flush_s = time.perf_counter() - t0
    bound = n * n * units * 8 / 2**20
    peak = peak_rss_mb()
    return {"positions": n * n, "units": units, "bound_mb": round(bound, 1), "baseline_mb": round(base, 1),
            "peak_after_adding_mb": round(after_add - base, 1), "peak_with_shard_write_mb": round(peak - base, 1),
            "ratio_to_bound": round((peak - base) / bound, 3), "add_one_patch_s": round(add_s, 2),
            "write_shard_s": round(flush_s, 2)}


def measure(positions: int, units: int) -> dict[str, Any]:
    """`run_and_measure` in a new interpreter, so the peak is the accumulator's alone."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.units_memory", str(positions), str(units)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise RuntimeError(f"units memory child failed: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]] or [22_500, 4_096]  # AlexNet fc6, 75 px patches at stride 1
    print(json.dumps(run_and_measure(*args)))
