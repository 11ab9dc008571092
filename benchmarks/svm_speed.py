"""SVM speed: the batched solver (`shiftlens.analyses.svm.fit_predict_cv`) against scikit-learn's
`SVC(kernel='linear')` on the same real features, with the separability analysis's own tasks and paper folds.

One stride-s grid holds the coarser grids (every 2nd or 4th position in each direction), so the features are computed
once, for the finest grid; the target is read at the finest (the paper's stride-1 grid has 22,500 positions).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from benchmarks.common import (CANVAS, WHITE, Log, Settings, batch_for, bench_patches, build, extractor, precisions_for,
                               timed, unit_grid)
from shiftlens.analyses.folds import fold_masks, task_labels
from shiftlens.analyses.svm import fit_predict_cv, sklearn_cv
from shiftlens.canvases import grid
from shiftlens.stream import stream, stream_order

FEATURES = "efficientnet_lite0:pool"
DIMS = 1280


def sub_grid(n: int, fine: int, size: int, stride: int) -> tuple[int, np.ndarray] | None:
    """The n x n grid's stride and its flat indices in the fine grid (same patch size, stride a multiple of the
    fine one); None when it is not such a sub-grid."""
    size_n, stride_n = unit_grid(n, CANVAS, 75)
    step = stride_n // stride
    if size_n != size or stride_n % stride or (n - 1) * step >= fine:
        return None
    return stride_n, (np.arange(n)[:, None] * step * fine + np.arange(n)[None, :] * step).ravel()


def svm_bench(st: Settings, device: torch.device, log: Log) -> dict[str, Any]:
    """Both solvers at every sub-grid size of st.svm_grids; speedup and accuracy difference per size."""
    built = build(FEATURES)
    prec = "bf16" if "bf16" in precisions_for(device) else "fp32"  # the features only need to be the same for both
    bs = batch_for(st, built.spec.key, device)
    patch = bench_patches(1)[0][0]
    fine = max(st.svm_grids)
    size, stride = unit_grid(fine, CANVAS, 75)
    ys, xs = grid(CANVAS, size, stride)
    t0 = time.perf_counter()
    feats = torch.empty(fine * fine, DIMS, device=device)
    with extractor(built, device, prec, st.compile, bs) as ex:
        ren = ex.renderer(patch.resized(size), CANVAS, WHITE)
        for idx, f in stream(ex, ren, ys, xs, stream_order(fine * fine, []), bs):
            feats[idx] = f["pool"]
    log(f"svm: {fine * fine} feature vectors in {time.perf_counter() - t0:.0f} s")
    sizes = []
    for n in sorted(st.svm_grids):
        sub = sub_grid(n, fine, size, stride)
        if sub is None:
            continue
        stride_n, pick = sub
        X = feats[torch.as_tensor(pick, device=device)]
        labels = task_labels(n)
        folds = fold_masks(labels, "paper", 0)
        lab_t, fold_t = torch.as_tensor(labels, device=device), torch.as_tensor(folds, device=device)
        fit_predict_cv(X, lab_t, fold_t)  # warm-up
        reps = 2 if n * n <= 6000 else 1
        t_torch = min(timed(lambda: fit_predict_cv(X, lab_t, fold_t), device)[0] for _ in range(reps))
        acc_torch = fit_predict_cv(X, lab_t, fold_t).cpu().numpy()
        t0 = time.perf_counter()
        acc_ref = sklearn_cv(X.cpu().numpy(), labels, folds)
        t_ref = time.perf_counter() - t0
        diff = float(np.abs(acc_torch.mean(1) - acc_ref.mean(1)).max() * 100)
        sizes.append({"samples": n * n, "stride": stride_n,
                      "torch_s": round(t_torch, 4), "sklearn_s": round(t_ref, 4),
                      "svm_speedup": round(t_ref / t_torch, 2), "svm_acc_diff": round(diff, 3),
                      "acc_torch": acc_torch.mean(1).round(4).tolist(), "acc_sklearn": acc_ref.mean(1).round(4).tolist()})
        log(f"svm {n * n} samples: batched {t_torch:.3f} s vs sklearn {t_ref:.3f} s ({t_ref / t_torch:.1f}x), "
            f"accuracy diff {diff:.2f} points")
    top = sizes[-1]
    return {"features": f"efficientnet_lite0 pool (imagenet, {prec}), 75 px patch {patch.id} (sample)",
            "dims": DIMS, "problems": "2 tasks x 5 folds (the paper protocol: StratifiedKFold, no shuffle)",
            "sizes": sizes, "samples": top["samples"], "svm_speedup": top["svm_speedup"],
            "svm_acc_diff": max(x["svm_acc_diff"] for x in sizes)}
