"""Forward and pipeline speed: the bare network against the whole pipeline, on the same batches, in one process.

The two timed parts are interleaved round by round (forward, pipeline, forward, pipeline, ...) and their ratio is
the median of the per-round ratios, which keeps it honest on a machine shared with other work. The bare network is
batch-norm folded and compiled exactly as the pipeline's extractor is, so the ratio compares like with like.
"""

from __future__ import annotations

import copy
import statistics
from typing import Any

import numpy as np
import torch

from benchmarks.common import (CANVAS, WHITE, Built, Log, Settings, batch_for, build, extractor, part_meta,
                               pipeline_unit, timed, unit_config, unit_grid, unit_side)
from benchmarks.precision import map_table_error
from shiftlens.canvases import grid
from shiftlens.models.fold import fold_batchnorm
from shiftlens.patches import Patch
from shiftlens.store import Part, ResultsDir
from shiftlens.stream import DTYPES, autocast, compile_for_inference


def matmul_peak(device: torch.device, precisions: list[str], n: int = 2048, reps: int = 4) -> dict[str, float]:
    """Best GFLOP/s of an n x n x n matmul per precision (the roofline the networks are compared against)."""
    out = {}
    for prec in precisions:
        a = torch.randn(n, n, device=device).to(DTYPES[prec])
        b = torch.randn(n, n, device=device).to(DTYPES[prec])
        torch.mm(a, b)
        best = min(timed(lambda: torch.mm(a, b), device)[0] for _ in range(reps))
        out[prec] = round(2 * n**3 / best / 1e9, 1)
    return out


def flops_per_image(model: torch.nn.Module) -> float:
    """FLOPs of one 224 px image, counted on the CPU."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, CANVAS, CANVAS).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    return float(counter.get_total_flops())


def bare_network(built: Built, device: torch.device, compile: bool) -> torch.nn.Module:
    """The network without taps, batch-norm folded, channels_last, compiled when the pipeline is."""
    bare = fold_batchnorm(copy.deepcopy(built.model).eval(), [])
    bare = bare.to(device).to(memory_format=torch.channels_last).eval()
    return compile_for_inference(bare) if compile else bare


def bench_model(name: str, st: Settings, device: torch.device, precisions: list[str], patch: Patch,
                results: ResultsDir, log: Log) -> dict[str, Any]:
    """forward_ips and pipeline_ips per precision, interleaved round by round, plus FLOPs and precision error.

    The unit grid is sized once, from the fp32 forward speed, so every precision times the same images."""
    built = build(name)
    flops = flops_per_image(built.model)
    bare = bare_network(built, device, st.compile)
    bs = batch_for(st, name, device)
    out: dict[str, Any] = {"weights": built.weights.label, "layers": list(built.spec.layers),
                           "flops_per_image": flops, "batch_size": bs, "precisions": {}}
    unit: dict[str, Any] | None = None
    parts: dict[str, Part] = {}
    for prec in precisions:
        with extractor(built, device, prec, st.compile, bs) as ex:

            def forward_batch(x: torch.Tensor, k: int) -> None:
                with torch.inference_mode(), autocast(device, prec):
                    for _ in range(k):
                        bare(x)

            if unit is None:
                corner = np.zeros(bs, int)
                x0 = ex.renderer(patch.resized(st.patch_size), CANVAS, WHITE).render(corner, corner).clone()
                forward_batch(x0, 2)
                ips0 = bs / timed(lambda: forward_batch(x0, 1), device)[0]
                side = unit_side(bs, ips0 * st.unit_seconds)
                size, stride = unit_grid(side, CANVAS, st.patch_size)
                rgba = patch.resized(size)
                cfg = unit_config(built.spec.key, size, stride, bs, device, str(results.root))
                meta = part_meta(built, patch, rgba, cfg)
                unit = {"patch": patch.id, "patch_size": size, "stride": stride, "images": side * side}
            ys, xs = grid(CANVAS, size, stride)
            x = ex.renderer(rgba, CANVAS, WHITE).render(ys[:bs], xs[:bs]).clone()  # a pre-rendered batch of the patch
            k = unit["images"] // bs
            forward_batch(x, k)  # warm-up: oneDNN primitives for this precision and shape, the compiled graph
            pipeline_unit(ex, built, patch, rgba, cfg, results, meta)
            rounds = []
            for _ in range(st.rounds):
                tf, _ = timed(lambda: forward_batch(x, k), device)
                tp, part = timed(lambda: pipeline_unit(ex, built, patch, rgba, cfg, results, meta), device)
                rounds.append({"forward_s": round(tf, 4), "pipeline_s": round(tp, 4)})
                parts.setdefault(prec, part)
            compiled, compile_error = ex.compiled, ex.compile_error
        images = unit["images"]
        f_ips = max(images / r["forward_s"] for r in rounds)
        p_ips = max(images / r["pipeline_s"] for r in rounds)
        ratio = statistics.median(r["forward_s"] / r["pipeline_s"] for r in rounds)
        out["precisions"][prec] = {"forward_ips": round(f_ips, 2), "pipeline_ips": round(p_ips, 2),
                                   "compiled": compiled, "compile_error": compile_error,
                                   "pipeline_vs_forward": round(ratio, 3),
                                   "gflops": round(flops * f_ips / 1e9, 1) if flops else None, "rounds": rounds}
        log(f"{name} {prec}: forward {f_ips:,.1f} img/s, pipeline {p_ips:,.1f} img/s, ratio {ratio:.2f}")
    out["unit"] = unit
    out["precision_error"] = {prec: map_table_error([parts["fp32"]], [parts[prec]])
                              for prec in precisions if prec != "fp32" and "fp32" in parts}
    return out
