"""The location probe's third protocol, `cross_object`: train on some objects, test on others.

The `paper` and `shuffled` protocols train and test within one patch: the probe may learn how that one object's
features move. Here it must read the position whatever the object is, which bounds what any decoder can place.
Every part keeps the features of CROSS_POSITIONS positions (location.cross_positions) with their centres; the
tables step pools them over the patches of one model, layer, weights and size and cross-validates with grouped
folds over patches (GroupKFold, min(5, patches) folds): no object is ever in both the training and the test rows.

Probes, all on the features centred on the training rows and divided by one number, their RMS (`scaled`): not per
feature as within a patch, since that turns a channel which only some training objects use into huge values at a
test object that uses it (on the bundled objects it made ridge err 2-3x more than the baseline).
- `ridge`: linear; the penalty is chosen per fold from ALPHAS by exact leave-one-object-out error on the
  training rows (closed form from one eigendecomposition, `logo_errors`), so the penalty is tuned for unseen objects too;
- `knn`: non-linear, k-nearest-neighbours regression (KNN_NEIGHBOURS, Euclidean): the mean centre of the training
  rows whose features are closest;
- `mlp`: non-linear, scikit-learn's MLPRegressor (one hidden layer of MLP_HIDDEN ReLUs, L-BFGS, MLP_ITER steps at
  most, seeded with MLP_SEED) on the training rows' top MLP_COMPONENTS principal components, each standardised on the
  training rows, to the standardised centre; its L2 penalty is chosen per fold from MLP_ALPHAS by grouped inner
  cross-validation over the training objects (GroupKFold, MLP_INNER_FOLDS), then refitted on every training row;
- `centre`: the baseline, the training rows' mean centre whatever the features (what a probe that learnt nothing
  predicts).

Each probe's `gain_over_centre_px` is paired: per object, the mean over its positions of (the centre guess's error
minus the probe's), then the mean over objects with a 95% percentile bootstrap interval over objects
(analyses.intervals). Two pooled medians side by side can differ while, object by object, the probe is no better;
an interval clear of 0 says it is.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GroupKFold
from sklearn.neighbors import KNeighborsRegressor
from sklearn.neural_network import MLPRegressor

from shiftlens.analyses.folds import N_FOLDS
from shiftlens.analyses.intervals import percentile_interval
from shiftlens.analyses.position_scores import position_scores
from shiftlens.store import Part

ALPHAS = tuple(10.0 ** np.arange(-2, 8.5, 0.5))
"""Ridge penalties tried; they reach further up than the within-patch probe's, since pooled rows over many objects
and the RMS scaling make the Gram matrix's scale grow with rows x features."""
PROBES = ("ridge", "knn", "mlp", "centre")
KNN_NEIGHBOURS = 5
MLP_COMPONENTS = 32
"""The MLP reads the top principal components of the training rows, not all D features: each step then costs
rows x MLP_COMPONENTS x MLP_HIDDEN whatever D (AlexNet fc6: 4096), and the directions in which the training rows
barely vary (where one object's own channels live) are not amplified by standardising its inputs."""
MLP_HIDDEN = 32
MLP_ALPHAS = (1e-1, 1e1, 1e3)
"""L2 penalties tried (scikit-learn's alpha: 0.5 alpha ||W||^2 / rows), on standardised inputs and targets."""
MLP_INNER_FOLDS = 3
MLP_ITER = 200
MLP_SEED = 0
MIN_PATCHES = 3
"""Each training fold then holds at least two objects, one to leave out while choosing the ridge penalty."""
COLUMNS = ["model", "layer", "weights", "patch_size", "protocol", "probe", "median_dist_px", "dist_px", "mae_px",
           "r2_x", "r2_y", "gain_over_centre_px", "gain_over_centre_ci_low", "gain_over_centre_ci_high",
           "n_patches", "n_positions", "n_folds", "note"]


def gain_over_centre(err: np.ndarray, centre_err: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """Per object the mean of (centre error − probe error) over its rows, then the mean over objects and its 95%
    percentile bootstrap interval over objects: objects, not positions, are the unit a new object is drawn from."""
    d = centre_err - err
    per_object = np.array([d[groups == g].mean() for g in np.unique(groups)])[:, None]
    low, high = percentile_interval(per_object)
    return dict(gain_over_centre_px=float(per_object.mean()), gain_over_centre_ci_low=float(low[0]),
                gain_over_centre_ci_high=float(high[0]))


def group_folds(groups: np.ndarray) -> np.ndarray:
    """(K, N) test masks of GroupKFold over the groups (patches), K = min(N_FOLDS, number of groups)."""
    k = min(N_FOLDS, len(np.unique(groups)))
    out = np.zeros((k, len(groups)), bool)
    for i, (_, te) in enumerate(GroupKFold(n_splits=k).split(np.zeros(len(groups)), groups=groups)):
        out[i, te] = True
    return out


def ridge_spectrum(Xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, W, C, lam) from one eigendecomposition of the smaller Gram matrix of the centred training rows `Xs`, with
    the centred hat matrix H_c(a) = B diag(W[a]) B' for each of ALPHAS and the coefficients
    w(a) = C diag(1 / (lam + a)) B' y (an eigendecomposition, as location.ridge_cv_predict: an SVD is slower)."""
    alphas = torch.tensor(ALPHAS, dtype=Xs.dtype).unsqueeze(1)
    if Xs.shape[0] <= Xs.shape[1]:
        lam, U = torch.linalg.eigh(Xs @ Xs.T)
        lam = lam.clamp_min(0)
        return U, lam / (lam + alphas), Xs.T @ U, lam
    lam, V = torch.linalg.eigh(Xs.T @ Xs)
    lam = lam.clamp_min(0)
    return Xs @ V, 1.0 / (lam + alphas), V, lam


def logo_errors(B: torch.Tensor, W: torch.Tensor, yc: torch.Tensor, groups: np.ndarray) -> torch.Tensor:
    """(A,) summed squared leave-one-group-out error of ridge (with an unpenalised intercept) for each of ALPHAS.

    B, W: `ridge_spectrum` of the centred training rows; `yc` their centred targets. With H the hat matrix (intercept
    included) and e the residuals of the fit on every row, the error of the fit without group g on g's rows is
    (I - H_gg)^-1 e_g, exactly; H = J/n + B diag(W[a]) B' for every alpha from one decomposition."""
    resid = yc.unsqueeze(0) - B @ (W.unsqueeze(2) * (B.T @ yc).unsqueeze(0))  # (A, n, 2)
    err = torch.zeros(W.shape[0], dtype=B.dtype)
    for g in np.unique(groups):
        rows = torch.as_tensor(np.flatnonzero(groups == g))
        Bg = B[rows]
        H = torch.einsum("kr,ar,lr->akl", Bg, W, Bg) + 1.0 / len(yc)
        err += _solved_sq((torch.eye(len(rows), dtype=B.dtype) - H).numpy(), resid[:, rows].numpy())
    return err


def _solved_sq(M: np.ndarray, R: np.ndarray) -> torch.Tensor:
    """(A,) sum of squares of M[a]^-1 R[a], inf where M[a] is singular (that alpha interpolates the group).

    numpy's LAPACK, not torch's: after `torch.set_num_threads` (the test suite's conftest, a Ray worker), torch's
    MKL batched LU of matrices from about 160 rows up returns wrong solutions with info 0, or fails on its pivots
    (measured with torch 2.14.1; tests/test_cross_object.py checks this solve against the unbatched one)."""
    out = np.full(len(M), np.inf)
    try:
        out[:] = (np.linalg.solve(M, R) ** 2).sum((1, 2))
    except np.linalg.LinAlgError:
        for a in range(len(M)):
            try:
                out[a] = (np.linalg.solve(M[a], R[a]) ** 2).sum()
            except np.linalg.LinAlgError:
                pass
    return torch.as_tensor(out, dtype=torch.float64)


def scaled(X: torch.Tensor, tr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, scale) from the training rows `tr`: centre per feature, scale by one number (1 / RMS; 1 when all rows are
    equal), so no feature is amplified by being nearly constant on the training objects."""
    mean = X[tr].mean(0)
    rms = ((X[tr] - mean) ** 2).mean().sqrt()
    return mean, torch.where(rms > 0, 1.0 / rms, torch.ones_like(rms))


def principal_components(C: torch.Tensor, lam: torch.Tensor, k: int = MLP_COMPONENTS) -> torch.Tensor:
    """(D, k') unit directions of the largest k' <= k non-zero eigenvalues, from `ridge_spectrum`'s C and lam (the
    columns of C are the principal directions scaled by sqrt(lam), or unscaled: normalising covers both)."""
    top = torch.argsort(lam, descending=True, stable=True)[:k]
    top = top[lam[top] > lam.max() * 1e-10]
    P = C[:, top]
    return P / P.norm(dim=0)


def mlp_fit_predict(Z: np.ndarray, Y: np.ndarray, Zte: np.ndarray, alpha: float) -> np.ndarray:
    """MLP predictions at Zte after fitting (Z, Y); inputs and targets standardised on (Z, Y)."""
    zm, zs = Z.mean(0), Z.std(0)
    zs = np.where(zs > 0, zs, 1.0)
    ym, ys = Y.mean(0), Y.std(0)
    ys = np.where(ys > 0, ys, 1.0)
    mlp = MLPRegressor(hidden_layer_sizes=(MLP_HIDDEN,), alpha=alpha, solver="lbfgs", max_iter=MLP_ITER,
                       random_state=MLP_SEED)
    with warnings.catch_warnings():  # a fit stopped at MLP_ITER steps is what the inner folds judge
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit((Z - zm) / zs, (Y - ym) / ys)
    return mlp.predict((Zte - zm) / zs).reshape(-1, Y.shape[1]) * ys + ym


def mlp_predict(Z: np.ndarray, Y: np.ndarray, groups: np.ndarray, Zte: np.ndarray) -> np.ndarray:
    """The `mlp` probe: alpha from MLP_ALPHAS by grouped inner CV on the training rows (Z, Y, groups), refitted on
    all of them, predicting Zte."""
    k = min(MLP_INNER_FOLDS, len(np.unique(groups)))
    err = np.zeros(len(MLP_ALPHAS))
    for tr, va in GroupKFold(n_splits=k).split(Z, groups=groups):
        for i, alpha in enumerate(MLP_ALPHAS):
            err[i] += ((mlp_fit_predict(Z[tr], Y[tr], Z[va], alpha) - Y[va]) ** 2).sum()
    return mlp_fit_predict(Z, Y, Zte, MLP_ALPHAS[int(err.argmin())])


def _ridge(Xs: torch.Tensor, Y: torch.Tensor, groups: np.ndarray) -> tuple[torch.Tensor, ...]:
    """(C, lam, w): ridge on the scaled training rows Xs to the centred Y, the penalty chosen from ALPHAS by
    leave-one-group-out error; predict with (x - mean) * scale @ w + mean(Y)."""
    yc = Y - Y.mean(0)
    B, W, C, lam = ridge_spectrum(Xs)
    a = ALPHAS[int(logo_errors(B, W, yc, groups).argmin())]
    return C, lam, C @ ((B.T @ yc) / (lam + a).unsqueeze(1))


def ridge_fit_predict(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, Xte: np.ndarray) -> np.ndarray:
    """The `ridge` probe fitted on every row of (X, Y) with objects `groups` (scaled as `scaled`, penalty by
    leave-one-object-out error), predicting Xte: what a decoder evaluation compares its placements with."""
    Xt = torch.as_tensor(X, dtype=torch.float64)
    Yt = torch.as_tensor(Y, dtype=torch.float64)
    mean, scale = scaled(Xt, torch.ones(len(Xt), dtype=torch.bool))
    _, _, w = _ridge((Xt - mean) * scale, Yt, np.asarray(groups))
    return (((torch.as_tensor(Xte, dtype=torch.float64) - mean) * scale) @ w + Yt.mean(0)).numpy()


def probe_predictions(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, test: np.ndarray) -> dict[str, np.ndarray]:
    """Out-of-fold predictions (N, 2) of every probe, for features X (N, D), centres Y (N, 2) and test masks (K, N)."""
    Xt = torch.as_tensor(X, dtype=torch.float64)
    Yt = torch.as_tensor(Y, dtype=torch.float64)
    pred = {p: np.empty_like(Y, dtype=np.float64) for p in PROBES}
    for mask in test:
        tr = torch.as_tensor(~mask)
        mean, scale = scaled(Xt, tr)
        Xs, Xte = (Xt[tr] - mean) * scale, (Xt[~tr] - mean) * scale
        ym = Yt[tr].mean(0)
        C, lam, w = _ridge(Xs, Yt[tr], groups[~mask])
        pred["ridge"][mask] = (Xte @ w + ym).numpy()
        knn = KNeighborsRegressor(n_neighbors=min(KNN_NEIGHBOURS, int(tr.sum())), algorithm="brute")
        pred["knn"][mask] = knn.fit(Xs.numpy(), Y[~mask]).predict(Xte.numpy())
        P = principal_components(C, lam)
        if P.shape[1] == 0:  # the training rows do not vary: nothing to read, the training mean is all an MLP can say
            pred["mlp"][mask] = ym.numpy()
        else:
            pred["mlp"][mask] = mlp_predict((Xs @ P).numpy(), Y[~mask], groups[~mask], (Xte @ P).numpy())
        pred["centre"][mask] = ym.numpy()
    return pred


def cross_object_table(parts: list[Part]) -> pd.DataFrame:
    """One row per model, layer, weights, size and probe (docs/analyses.md). Parts written without the kept features
    (built by hand) are left out; fewer than MIN_PATCHES patches give a row that says so instead of numbers."""
    pools: dict[tuple, list[Part]] = {}
    for part in parts:
        for layer in part.layers("location"):
            if part.get("location", layer, "cross_features") is not None:
                pools.setdefault((part.model, layer, part.weights, part.patch_size), []).append(part)
    rows = []
    for (model, layer, weights, size), members in pools.items():
        X = np.concatenate([p.get("location", layer, "cross_features") for p in members]).astype(np.float64)
        Y = np.concatenate([p.get("location", layer, "cross_centres") for p in members]).astype(np.float64)
        groups = np.repeat(np.arange(len(members)), [len(p.get("location", layer, "cross_centres")) for p in members])
        ident = dict(model=model, layer=layer, weights=weights, patch_size=size, protocol="cross_object",
                     n_patches=len(members), n_positions=len(Y))
        if len(members) < MIN_PATCHES:
            note = f"needs at least {MIN_PATCHES} patches to train on some and test on others"
            rows += [dict(ident, probe=p, n_folds=0, note=note) for p in PROBES]
            continue
        test = group_folds(groups)
        preds = probe_predictions(X, Y, groups, test)
        centre_err = np.linalg.norm(preds["centre"] - Y, axis=1)
        for probe, pred in preds.items():
            scores = position_scores(pred.T, Y.T)
            err = np.linalg.norm(pred - Y, axis=1)
            rows.append(dict(ident, probe=probe, median_dist_px=float(np.median(err)), n_folds=len(test), note="",
                             **scores, **gain_over_centre(err, centre_err, groups)))
    return pd.DataFrame(rows, columns=COLUMNS)
