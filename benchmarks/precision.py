"""Precision error: how far a faster precision (or compiling) moves the similarity maps and tables from fp32.

`--precision auto` picks a faster precision only where this error, measured on real weights (EfficientNet-Lite0
with its packaged ImageNet weights, on the bundled sample patches), stays below MAP_ERROR_LIMIT.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import Log, Settings, batch_for, bench_patches, build, extractor, pipeline_unit, unit_config
from shiftlens.analyses.similarity import Similarity
from shiftlens.store import Part, ResultsDir

MAP_ERROR_LIMIT = 0.005
REAL_MODEL = "efficientnet_lite0"


def map_table_error(ref: list[Part], other: list[Part]) -> dict[str, float]:
    """Largest |difference| of any similarity-map cell and of any similarity-table value (per-patch means, and the
    mean and std over patches) between two runs of the same units."""
    map_err = max(float(np.abs(r.arrays[k].astype(np.float64) - o.arrays[k].astype(np.float64)).max())
                  for r, o in zip(ref, other, strict=True) for k in r.arrays)
    t_ref, t_other = Similarity.tables(ref, None), Similarity.tables(other, None)
    table_err = 0.0
    for name in ("similarity", "similarity_per_patch"):
        cols = [c for c in ("mean", "std") if c in t_ref[name]]
        diff = np.abs(t_ref[name][cols].to_numpy(np.float64) - t_other[name][cols].to_numpy(np.float64))
        table_err = max(table_err, float(diff.max()))
    return {"map": map_err, "table": table_err}


def precision_error_real(st: Settings, device: torch.device, precisions: list[str], log: Log) -> dict[str, Any]:
    """fp32 (eager, the reference) against compiled fp32 and each faster precision, as the pipeline runs them,
    on EfficientNet-Lite0 with its ImageNet weights over the sample patches."""
    built = build(REAL_MODEL)
    bs = batch_for(st, REAL_MODEL, device)
    patches, source = bench_patches(st.error_patches)
    t0 = time.perf_counter()
    variants = [("fp32", "fp32", False)] + ([("fp32+compile", "fp32", True)] if st.compile else []) + \
        [(prec, prec, st.compile) for prec in precisions if prec != "fp32"]
    parts: dict[str, list[Part]] = {}
    with tempfile.TemporaryDirectory(prefix="shiftlens-bench-precision-") as tmp:
        results = ResultsDir(Path(tmp))
        cfg = unit_config(built.spec.key, st.error_sizes[0], st.error_stride, bs, device, tmp)
        for key, prec, comp in variants:
            with extractor(built, device, prec, comp, bs) as ex:
                parts[key] = [pipeline_unit(ex, built, p, p.resized(s), cfg, results)
                              for p in patches for s in st.error_sizes]
    out = {"model": REAL_MODEL, "weights": built.weights.label, "layers": list(built.spec.layers), "patches": source,
           "n_patches": len(patches), "sizes": list(st.error_sizes), "stride": st.error_stride,
           "reference": "fp32, eager", "compiled": st.compile,
           "errors": {key: map_table_error(parts["fp32"], parts[key]) for key, _, _ in variants if key != "fp32"},
           "seconds": round(time.perf_counter() - t0, 1)}
    for key, e in out["errors"].items():
        log(f"precision error {REAL_MODEL} {key}: map {e['map']:.2e}, table {e['table']:.2e}")
    return out


def auto_choice(errors: dict[str, dict[str, float]], speeds: dict[str, float]) -> str:
    """The fastest precision whose largest map error is below MAP_ERROR_LIMIT and that beats fp32, else fp32."""
    ok = [p for p, e in errors.items() if e["map"] < MAP_ERROR_LIMIT and speeds.get(p, 0) > speeds.get("fp32", 0)]
    return max(ok, key=lambda p: speeds[p]) if ok else "fp32"
