"""Why the cross-object MLP probe equals the centre guess on trained networks: which directions does it read?

The location analysis's `mlp` probe reads the top MLP_COMPONENTS principal components of the training rows. If an
object's position lives in directions of small variance (identity dominates the large ones), those components miss
it, while ridge, reading every direction, finds it. This tool tests that on a results folder's kept cross-object
features: the same MLP (same hidden layer, penalty grid and grouped inner CV) on the top principal components and on
k partial-least-squares directions (supervised: fitted on each training fold's rows and centres only), beside ridge
and the centre guess, with the location analysis's folds.

    python tools/mlp_directions.py RESULTS_DIR --layer pool --size 75 [--pls 4,8,16]

Prints the median error in px of each probe on unseen objects. Single-threaded BLAS: the small MLP fits are
dominated by thread start-up on a loaded machine otherwise.
"""

from __future__ import annotations

import argparse
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.cross_decomposition import PLSRegression  # noqa: E402

from shiftlens.analyses import cross_object as co  # noqa: E402
from shiftlens.store import ResultsDir  # noqa: E402


def features(results: str, layer: str, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, Y, groups) of the location analysis's kept cross-object features, as cross_object_table pools them."""
    members = [p for p in ResultsDir(results).parts()
               if p.patch_size == size and p.get("location", layer, "cross_features") is not None]
    if len(members) < co.MIN_PATCHES:
        raise SystemExit(f"{results}: {len(members)} patches with kept {layer} features at {size} px; "
                         f"run the location analysis with at least {co.MIN_PATCHES}")
    X = np.concatenate([p.get("location", layer, "cross_features") for p in members]).astype(np.float64)
    Y = np.concatenate([p.get("location", layer, "cross_centres") for p in members]).astype(np.float64)
    groups = np.repeat(np.arange(len(members)), [len(p.get("location", layer, "cross_centres")) for p in members])
    return X, Y, groups


def predictions(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, pls: list[int]) -> dict[str, np.ndarray]:
    test = co.group_folds(groups)
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(Y)
    names = ["centre", "ridge", f"mlp on top {co.MLP_COMPONENTS} PCs"] + [f"mlp on {k} PLS directions" for k in pls]
    out = {n: np.empty_like(Y) for n in names}
    for mask in test:
        tr = torch.as_tensor(~mask)
        mean, scale = co.scaled(Xt, tr)
        Xs, Xte = (Xt[tr] - mean) * scale, (Xt[~tr] - mean) * scale
        ym = Yt[tr].mean(0)
        C, lam, w = co._ridge(Xs, Yt[tr], groups[~mask])
        out["centre"][mask] = ym.numpy()
        out["ridge"][mask] = (Xte @ w + ym).numpy()
        P = co.principal_components(C, lam)
        out[names[2]][mask] = co.mlp_predict((Xs @ P).numpy(), Y[~mask], groups[~mask], (Xte @ P).numpy())
        for k, name in zip(pls, names[3:]):
            fit = PLSRegression(n_components=k, scale=False).fit(Xs.numpy(), Y[~mask])
            out[name][mask] = co.mlp_predict(fit.transform(Xs.numpy()), Y[~mask], groups[~mask],
                                             fit.transform(Xte.numpy()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--layer", default="pool")
    ap.add_argument("--size", type=int, default=75)
    ap.add_argument("--pls", default="4,8,16", help="numbers of PLS directions to try")
    a = ap.parse_args()
    torch.set_num_threads(1)
    X, Y, groups = features(a.results, a.layer, a.size)
    print(f"{a.results} {a.layer} {a.size} px: {len(np.unique(groups))} objects, {len(Y)} positions, {X.shape[1]} dims")
    for name, pred in predictions(X, Y, groups, [int(k) for k in a.pls.split(",")]).items():
        print(f"  {name:28s} median {np.median(np.linalg.norm(pred - Y, axis=1)):5.1f} px")


if __name__ == "__main__":
    main()
