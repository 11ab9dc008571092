"""Memory: the peak resident memory of a whole `api.run` over 1 and over 4 sample patches, each in a fresh process.

A run streams its patches one at a time, so its peak should not grow with their number (target: the ratio 4 / 1).
The peak is the child's own high-water mark (`benchmarks/rss.py`: VmHWM, not `ru_maxrss`, which Linux carries over
from the parent): a fresh interpreter runs `run_and_measure` (`python -m benchmarks.memory ARGS_JSON`) and prints its
result as one JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import REAL_WEIGHTS, Log, Settings
from benchmarks.rss import peak_rss_mb
from shiftlens import api
from shiftlens.config import RunConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
SIZE = 75


def run_and_measure(model: str, patches: int, stride: int, device: str, batch_size: int) -> dict[str, Any]:
    """One whole run (similarity, no website) into a temporary folder, then this process's peak memory."""
    with tempfile.TemporaryDirectory(prefix="shiftlens-bench-memory-") as tmp:
        cfg = RunConfig(models=[model], patches="sample", max_patches=patches, sizes=[SIZE], stride=stride,
                        weights="imagenet" if model in REAL_WEIGHTS else "random", device=device, precision="auto",
                        batch_size=batch_size, out=f"{tmp}/out", site=False, analyses=["similarity"])
        api.run(cfg)
    cuda = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return {"peak_rss_mb": peak_rss_mb(), "cuda_peak_mb": cuda}


def in_fresh_process(**kwargs: Any) -> dict[str, Any]:
    """`run_and_measure(**kwargs)` in a new interpreter, so the peak is that run's alone. Raises RuntimeError with
    the child's last error line when it fails."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.memory", json.dumps(kwargs)], capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise RuntimeError(f"memory child failed: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_rss(st: Settings, device: torch.device, log: Log) -> dict[str, Any]:
    """Peak RSS in MB for 1 and 4 patches and their ratio; `available: False` with the reason if a child failed."""
    out: dict[str, Any] = {"model": st.memory_model, "stride": st.memory_stride, "sizes": [SIZE]}
    for n in (1, 4):
        try:
            res = in_fresh_process(model=st.memory_model, patches=n, stride=st.memory_stride, device=device.type,
                                   batch_size=st.batch_size)
        except RuntimeError as exc:
            return {"available": False, "note": str(exc)}
        out[str(n)] = round(res["peak_rss_mb"], 1)
        if res["cuda_peak_mb"] is not None:
            out[f"cuda_{n}"] = round(res["cuda_peak_mb"], 1)
    out["ratio_4_vs_1"] = round(out["4"] / out["1"], 3)
    log(f"peak RSS: 1 patch {out['1']:.0f} MB, 4 patches {out['4']:.0f} MB")
    return out


def main(argv: list[str]) -> None:
    print(json.dumps(run_and_measure(**json.loads(argv[0]))))


if __name__ == "__main__":
    main(sys.argv[1:])
