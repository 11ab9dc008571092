"""Separability, location probe, invariance numbers and shift consistency: known answers, the SVM solver against
scikit-learn (synthetic and real EfficientNet-Lite0 features), and a full run of all five analyses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from shiftlens import api
from shiftlens.analyses import svm
from shiftlens.analyses.base import PatchContext, anchors
from shiftlens.analyses.consistency import Consistency
from shiftlens.analyses.folds import PROTOCOLS, fold_masks, task_labels
from shiftlens.analyses.invariance import falloff, grid_share, map_numbers
from shiftlens.analyses.location import Location
from shiftlens.analyses.separability import Separability
from shiftlens.canvases import grid
from shiftlens.config import RunConfig
from shiftlens.errors import ShiftlensError


def context(n_side: int = 10, stride: int = 8, size: int = 152, layers=("lin", "const")) -> PatchContext:
    ys, xs = grid(224, size, stride)
    n = int(round(np.sqrt(len(ys))))
    assert n == n_side
    return PatchContext(model="m", weights="w", layers=list(layers), patch_id="p", category="c", patch_size=size,
                        ys=ys, xs=xs, n=n, anchors=anchors(n), config=RunConfig(), device=torch.device("cpu"))


def synthetic_features(ctx: PatchContext) -> dict[str, torch.Tensor]:
    """`lin` encodes the position linearly, [x, y, 1] (x and y repeated 32 times, so that standardised features
    still separate with a hard margin at C = 1); `const` cannot depend on it."""
    lin = np.stack([ctx.xs] * 32 + [ctx.ys] * 32 + [np.ones_like(ctx.xs)], axis=1).astype(np.float32)
    return {"lin": torch.tensor(lin), "const": torch.full((len(ctx.xs), 3), 2.5)}


# -- known answers ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("solver", ["auto", "sklearn"])  # the batched solver and the reference give the same answer
def test_linear_tap_is_separable_and_constant_tap_is_at_chance(solver):
    ctx = context(n_side=20, stride=8, size=72)
    ctx.config = RunConfig(svm=solver)
    out = Separability(ctx).finish(synthetic_features(ctx))
    for protocol in PROTOCOLS:
        const = out[f"separability/const/acc_{protocol}"]
        assert np.allclose(const.mean(1), 0.5, atol=0.02), (protocol, const)
    lin = out["separability/lin/acc_shuffled"]
    assert lin.shape == (2, 5) and (lin == 1.0).all()  # shuffled folds: both tasks perfect in every fold
    paper = out["separability/lin/acc_paper"]
    assert (paper[0] == 1.0).all()
    # The paper's folds (StratifiedKFold(5), no shuffle, row-major) on a 20 x 20 grid. Top = rows 0-9, bottom =
    # rows 10-19; each class's 200 positions are cut in row-major order into 5 chunks of 2 rows, so top/bottom test
    # fold k holds rows 2k, 2k+1 (top) and 10+2k, 11+2k (bottom). `lin` is linear in the row with a hard margin,
    # so the max-margin boundary lies halfway between the nearest training rows of the two classes:
    #   fold 1: training rows 2-9 | 12-19, boundary at row 10.5: row 10 (bottom) is on the top side, rows 0, 1, 11
    #           are right: 30 of 40 = 0.75;
    #   folds 2-4: rows 9 and 10 are training rows, boundary at 9.5, every test row is right: 1.0;
    #   fold 5: training rows 0-7 | 10-17, boundary at 8.5: row 9 (top) is on the bottom side: 0.75.
    # No test row lies on a boundary (no tie left to rounding). Mean 0.9, std (ddof=0) sqrt(0.015).
    # Left/right test folds are whole rows (4 per fold) spanning every column: 1.0 (asserted above).
    assert paper[1].tolist() == [0.75, 1.0, 1.0, 1.0, 0.75]
    assert paper[1].astype(np.float64).mean() == 0.9
    assert paper[1].astype(np.float64).std() == pytest.approx(np.sqrt(0.015), abs=1e-12)


def test_location_probe_recovers_a_linear_tap_and_not_a_constant_one():
    ctx = context()
    out = Location(ctx).finish(synthetic_features(ctx))
    target = out["location/lin/target"]
    assert target.shape == (2, 10, 10) and target[0, 0, 0] == 152 / 2
    for protocol in PROTOCOLS:
        lin = Location.scores(out[f"location/lin/pred_{protocol}"], target)
        assert lin["r2_x"] > 0.999 and lin["r2_y"] > 0.999 and lin["mae_px"] < 0.5
        assert out[f"location/lin/err_{protocol}"].shape == (10, 10)
        const = Location.scores(out[f"location/const/pred_{protocol}"], target)
        assert const["r2_x"] < 0.05 and const["r2_y"] < 0.05
    const = Location.scores(out["location/const/pred_shuffled"], target)
    assert abs(const["r2_x"]) < 0.1 and abs(const["r2_y"]) < 0.1  # shuffled folds: predicting the mean, R^2 ~ 0


def test_paper_folds_are_contiguous_stratified_bands_and_labels_follow_the_protocol():
    lab = task_labels(4)
    assert lab[0].reshape(4, 4)[:, :2].all() and not lab[0].reshape(4, 4)[:, 2:].any()  # left = x < n/2
    assert lab[1].reshape(4, 4)[:2].all() and not lab[1].reshape(4, 4)[2:].any()  # top = y < n/2
    lab = task_labels(10)
    masks = fold_masks(lab, "paper", 0)
    from sklearn.model_selection import StratifiedKFold
    for t in range(2):
        for k, (_, te) in enumerate(StratifiedKFold(5).split(np.zeros(100), lab[t])):
            assert set(np.flatnonzero(masks[t, k])) == set(te)
    assert (masks.sum(1) == 1).all()
    assert not np.array_equal(fold_masks(lab, "shuffled", 0), masks)


def test_too_few_positions_is_a_clear_error():
    with pytest.raises(ShiftlensError, match="too few"):
        fold_masks(task_labels(2), "paper", 0)


# -- the solver -------------------------------------------------------------------------------------------------

def svm_objective(X, y01, train, w, b, C=1.0):
    y = 2 * y01[train] - 1
    margins = y * (X[train] @ w + b)
    return 0.5 * w @ w + C * np.maximum(0, 1 - margins).sum()


def dual_objective(X, y01, y, m, alpha, b):
    """svm_objective of one problem's dual solution: w = sum_i alpha_i y_i x_i over its unmasked rows."""
    w = ((alpha * y * m).unsqueeze(1) @ X.unsqueeze(0)).squeeze(1)[0].numpy()
    return svm_objective(X.numpy(), y01, m[0].numpy(), w, float(b[0]))


# one subset; the low-rank path; several rounds of shrinking the subset to the support vectors and adding violators
@pytest.mark.parametrize("n,d,noise", [(120, 400, 2.0), (600, 20, 2.0), (1000, 300, 0.3)])
def test_torch_svm_minimises_the_svc_objective(n, d, noise):
    from sklearn.svm import SVC

    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, d)) * 3 + rng.normal(size=d) * 10
    y01 = (X[:, 0] + X[:, 1] + rng.normal(size=n) * noise > np.median(X[:, 0] + X[:, 1])).astype(int)
    train = np.ones(n, bool)
    Xc = torch.tensor(X) - torch.tensor(X).mean(0)
    y = torch.tensor(2.0 * y01 - 1).unsqueeze(0)
    w, b, stats = svm.fit_working_set(Xc, y, torch.tensor(train).unsqueeze(0), torch.ones(1, d, dtype=torch.float64),
                                      1.0)
    ours = svm_objective(Xc.numpy(), y01, train, w[0].numpy(), float(b[0]))
    assert stats.rounds >= 1 and 0 < stats.working_set <= n
    if n == 1000:
        assert stats.rounds > 3  # the shrinking rounds ran
    if n == 600:  # 600 rows > 2 x 20 dimensions: the low-rank interior-point path, no active-set iterations
        assert stats.ipm_iterations > 0 and stats.active_iterations == 0
    else:
        assert stats.active_iterations > 0
    ref = SVC(kernel="linear", C=1.0, tol=1e-6).fit(Xc.numpy(), y01)
    theirs = svm_objective(Xc.numpy(), y01, train, ref.coef_[0], float(ref.intercept_[0]))
    # Any (w, b) bounds the optimum from above, so ours can only be lower than libsvm's (tol-limited) solution.
    assert ours <= theirs * (1 + 1e-6)


def test_low_rank_newton_systems_reach_the_kernel_solvers_optimum():
    # More rows than dimensions: solve_lowrank (D x D Newton systems) and solve_kernel (n x n) solve the same dual.
    rng = np.random.default_rng(2)
    n, d = 300, 12
    X = torch.tensor(rng.normal(size=(n, d)) * 2)
    X = X - X.mean(0)
    y01 = (X[:, 0] - X[:, 1] + torch.tensor(rng.normal(size=n)) > 0).long().numpy()
    y = torch.tensor(2.0 * y01 - 1).unsqueeze(0)
    m = torch.ones(1, n, dtype=torch.bool)
    m[0, :7] = False  # padding rows: masked out of both duals
    a_low, b_low, steps = svm.solve_lowrank(X.unsqueeze(0), y, m, 1.0)
    assert 0 < steps < 80  # converged before the iteration limit
    a_ker, b_ker, _ = svm.solve_kernel((X @ X.T).unsqueeze(0), y, m, 1.0)
    train = m[0].numpy()
    objs = [dual_objective(X, y01, y, m, a, b) for a, b in ((a_low, b_low), (a_ker, b_ker))]
    assert abs(objs[0] - objs[1]) <= 1e-6 * objs[1]
    # and through the working-set loop, with the low-rank path forced on every round
    old = svm.LOWRANK_RATIO
    try:
        svm.LOWRANK_RATIO = 0.0
        w, b, _ = svm.fit_working_set(X, y, m, torch.ones(1, d, dtype=torch.float64), 1.0)
    finally:
        svm.LOWRANK_RATIO = old
    assert svm_objective(X.numpy(), y01, train, w[0].numpy(), float(b[0])) <= objs[1] * (1 + 1e-6)


def noisy_problem(n: int, d: int, seed: int, duplicates: int = 0, scale: float = 2.0):
    """Overlapping classes (some alphas at C), a few padding rows, and optionally repeated rows (a singular kernel)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * scale
    X[:duplicates] = X[duplicates:2 * duplicates]
    X = torch.tensor(X - X.mean(0))
    y01 = (X[:, 0] + X[:, 1] + torch.tensor(rng.normal(size=n)) * 1.5 > 0).long().numpy()
    m = torch.ones(1, n, dtype=torch.bool)
    m[0, -5:] = False
    return X, y01, torch.tensor(2.0 * y01 - 1).unsqueeze(0), m


@pytest.mark.parametrize("duplicates", [0, 10])
def test_active_set_solver_reaches_the_interior_point_optimum(duplicates):
    X, y01, y, m = noisy_problem(150, 200, 4, duplicates, scale=0.1)  # d > n: a full-rank kernel unless repeated
    K = (X @ X.T).unsqueeze(0)
    a_ipm, b_ipm, _ = svm.solve_kernel(K, y, m, 1.0)
    a_act, b_act, ok, its = svm.solve_active(y.unsqueeze(2) * K * y.unsqueeze(1), y, m, 1.0, torch.zeros_like(y))
    assert bool(ok.all()) and 0 < its < svm.ACTIVE_ITER
    assert int((a_act[0] >= 1.0).sum()) > 0 and int(((a_act[0] > 0) & (a_act[0] < 1.0)).sum()) > 0  # both kinds of SV
    assert float(a_act[0, -5:].abs().max()) == 0.0  # padding rows get no weight
    objs = [dual_objective(X, y01, y, m, a, b) for a, b in ((a_ipm, b_ipm), (a_act, b_act))]
    assert abs(objs[1] - objs[0]) <= 1e-7 * objs[0]


def test_working_set_falls_back_to_the_interior_point_solver_when_the_active_set_does_not_settle(monkeypatch):
    X, y01, y, m = noisy_problem(300, 400, 5, scale=0.1)
    ones = torch.ones(1, 400, dtype=torch.float64)
    w, b, stats = svm.fit_working_set(X, y, m, ones, 1.0)
    assert stats.fallbacks == 0 and stats.ipm_iterations == 0
    best = svm_objective(X.numpy(), y01, m[0].numpy(), w[0].numpy(), float(b[0]))
    monkeypatch.setattr(svm, "ACTIVE_ITER", 1)  # one iteration from a cold start never settles
    w, b, stats = svm.fit_working_set(X, y, m, ones, 1.0)
    assert stats.fallbacks > 0 and stats.ipm_iterations > 0
    assert abs(svm_objective(X.numpy(), y01, m[0].numpy(), w[0].numpy(), float(b[0])) - best) <= 1e-7 * best


def test_torch_and_sklearn_agree_on_synthetic_folds():
    rng = np.random.default_rng(0)
    n, d = 200, 30
    X = rng.normal(size=(n, d)) * 5 + rng.normal(size=d)
    labels = np.stack([(X[:, :3].sum(1) + rng.normal(size=n) * 4 > 0), (np.arange(n) < n // 2)]).astype(int)
    for protocol in PROTOCOLS:
        masks = fold_masks(labels, protocol, 3)
        std = protocol == "shuffled"
        ours = svm.fit_predict_cv(torch.tensor(X), torch.tensor(labels), torch.tensor(masks), standardize=std).numpy()
        ref = svm.sklearn_cv(X, labels, masks, standardize=std)
        assert np.abs(ours.mean(1) - ref.mean(1)).max() <= 0.01, (protocol, ours, ref)


def test_bad_solver_input_is_a_shiftlens_error():
    with pytest.raises(ShiftlensError, match="labels"):
        svm.fit_predict_cv(torch.zeros(10, 3), torch.zeros(2, 9), torch.zeros(5, 10, dtype=torch.bool))


def real_patch_dir(root: Path) -> Path:
    """Three of the bundled sample patches (real photographed objects with real masks)."""
    import shutil

    from shiftlens.patches import SAMPLE_DIR

    root.mkdir(parents=True, exist_ok=True)
    for name in ("cat_01", "cup_01", "quokka_01"):
        shutil.copy(SAMPLE_DIR / f"{name}.png", root / f"{name}.png")
    return root


def test_solver_agrees_with_sklearn_on_real_efficientnet_features(tmp_path):
    """EfficientNet-Lite0 (packaged ImageNet weights), photo patches, stride 16: per patch, task and protocol the
    mean fold accuracies of the torch solver and SVC(kernel='linear', C=1) differ by at most 1 point."""
    from shiftlens.models import build_with_weights, parse_spec
    from shiftlens.patches import load_folder
    from shiftlens.stream import FeatureExtractor, stream

    spec = parse_spec("efficientnet_lite0:pool,fc")
    model, _ = build_with_weights(spec.entry, "imagenet", 0)
    ext = FeatureExtractor(model, [spec.entry.layer(l) for l in spec.layers], spec.entry.normalisation,
                           torch.device("cpu"), "fp32")
    worst = 0.0
    for patch in load_folder(real_patch_dir(tmp_path / "real")):
        for size in (75, 125):
            ys, xs = grid(224, size, 16)
            n = int(round(np.sqrt(len(ys))))
            feats: dict[str, torch.Tensor] = {}
            for idx, f in stream(ext, ext.renderer(patch.resized(size), 224, [255, 255, 255]), ys, xs,
                                 np.arange(len(ys)), 64):
                for k, v in f.items():
                    feats.setdefault(k, torch.empty(len(ys), v.shape[1]))[idx] = v
            labels = task_labels(n)
            for layer, X in feats.items():
                for protocol in PROTOCOLS:
                    masks = fold_masks(labels, protocol, 0)
                    std = protocol == "shuffled"
                    ours = svm.fit_predict_cv(X, torch.tensor(labels), torch.tensor(masks), standardize=std).numpy()
                    ref = svm.sklearn_cv(X, labels, masks, standardize=std)
                    diff = float(np.abs(ours.mean(1) - ref.mean(1)).max())
                    worst = max(worst, diff)
                    assert diff <= 0.01, (patch.id, size, layer, protocol, ours, ref)
    ext.close()
    assert worst <= 0.01


# -- invariance numbers -----------------------------------------------------------------------------------------

def test_invariance_numbers_on_known_maps():
    n, stride = 20, 8
    flat = np.ones((n, n))
    numbers = map_numbers(flat, (0, 0), stride, 32)
    assert numbers["frac_ge_0.99"] == 1.0 and numbers["local_dx"] == 0 and numbers["local_dy"] == 0
    assert numbers["grid_share"] == 0.0 and np.isnan(numbers["anisotropy"])
    r, c = np.mgrid[:n, :n]
    cone = 1 - 0.001 * np.abs(c - 5) * stride - 0.002 * np.abs(r - 7) * stride
    drop_h, drop_v = falloff(cone, (7, 5), stride)
    assert drop_h == pytest.approx(0.001) and drop_v == pytest.approx(0.002)
    assert map_numbers(cone, (7, 5), stride, 32)["anisotropy"] == pytest.approx(0.5)
    assert map_numbers(cone, (7, 5), stride, 32)["local_dx"] == pytest.approx(0.008, rel=0.2)
    # A trend plus a pattern with the network's 32 px period (4 samples at stride 8): almost all the detrended energy.
    periodic = 0.9 + 0.002 * r + 0.01 * np.cos(2 * np.pi * c / 4) + 0.01 * np.cos(2 * np.pi * r / 4 + 1)
    assert grid_share(periodic, stride, 32) > 0.95
    noise = np.random.default_rng(0).normal(size=(n, n))
    assert grid_share(noise, stride, 32) < 0.4
    assert np.isnan(grid_share(periodic, 5, 32))  # 32 px is not a whole number of samples
    assert np.isnan(grid_share(periodic, stride, None))  # a network whose stride could not be measured


def test_consistency_agreement_counts():
    top1 = np.array([[1, 1, 2], [1, 1, 2], [3, 3, 3]])
    got = Consistency.agreement(top1, 0, "p")
    assert got["p_neighbour_h"] == pytest.approx(4 / 6) and got["p_neighbour_v"] == pytest.approx(3 / 6)
    assert got["p_neighbour"] == pytest.approx(7 / 12)
    pairs = [(a, b) for i, a in enumerate(top1.ravel()) for b in top1.ravel()[i + 1:]]
    assert got["p_random"] == pytest.approx(np.mean([a == b for a, b in pairs]))
    assert got["n_classes"] == 3



def test_consistency_top1_in_the_patch_classes_or_says_there_is_no_set():
    from conftest import part_meta
    from shiftlens.analyses.class_prob import NO_SET
    from shiftlens.config import RunConfig
    from shiftlens.store import Part

    top1 = np.array([[1, 1, 2], [1, 1, 2], [3, 3, 3]], np.int16)
    parts = [Part(part_meta(patch_id="a", n=3), {"consistency/fc/top1": top1, "consistency/fc/classes": np.array([1, 3])}),
             Part(part_meta(patch_id="b", n=3), {"consistency/fc/top1": top1, "consistency/fc/classes": np.zeros(0)})]
    tables = Consistency.tables(parts, RunConfig())
    per = tables["consistency_per_patch"]
    assert per.p_top1_in_classes.iloc[0] == pytest.approx(7 / 9) and np.isnan(per.p_top1_in_classes.iloc[1])
    assert per.classes.tolist() == ["", NO_SET]
    summary = tables["consistency"].iloc[0]
    assert summary.p_top1_in_classes == pytest.approx(7 / 9) and summary.n_patches_with_classes == 1
# -- the pipeline -----------------------------------------------------------------------------------------------

ALL = ["similarity", "separability", "location", "invariance", "consistency"]


def test_all_analyses_run_resume_and_write_tables_and_figures(tmp_path, patch_dir):
    cfg = RunConfig(models=["efficientnet_lite0:pool,fc"], patches=f"folder:{patch_dir}", sizes=[96], stride=16,
                    weights="random", out=str(tmp_path / "out"), batch_size=32, site=False, analyses=ALL)
    first = api.run(cfg)
    assert first.computed == 2
    tables = Path(cfg.out) / "tables"
    sep = pd.read_csv(tables / "separability.csv")
    assert list(sep.columns) == ["model", "layer", "weights", "patch_size", "protocol", "task", "acc_mean", "acc_std",
                                 "n_patches"]
    assert len(sep) == 2 * 2 * 2 and (sep.n_patches == 2).all()
    loc = pd.read_csv(tables / "location.csv")
    assert {"r2_x", "r2_y", "mae_px", "n_patches", "protocol"} <= set(loc.columns)
    inv = pd.read_csv(tables / "invariance.csv")
    assert {"frac_ge_0.80", "frac_ge_0.99", "local_dx", "local_dy", "grid_share", "anisotropy"} <= set(inv.columns)
    assert len(inv) == 2 * 5
    con = pd.read_csv(tables / "consistency.csv")
    assert {"p_neighbour", "p_random"} <= set(con.columns) and (con.layer == "fc").all()
    for name in ("separability_per_patch", "location_per_patch", "invariance_per_patch", "consistency_per_patch"):
        assert (tables / f"{name}.csv").is_file()
    figures = {p.name for p in (Path(cfg.out) / "figures").glob("*.png")}
    assert {"separability_p96.png", "invariance_tau_p96.png", "location_error_p96.png"} <= figures
    again = api.run(cfg)
    assert again.computed == 0 and again.skipped == 2
    pd.testing.assert_frame_equal(pd.read_csv(tables / "separability.csv"), sep)


def test_invariance_without_similarity_is_refused():
    with pytest.raises(ShiftlensError, match="similarity"):
        RunConfig(analyses=["invariance"]).validate()


def test_auto_solver_is_the_batched_one_and_agrees_with_the_reference():
    from shiftlens.analyses.separability import cv_accuracies

    n = 8
    rng = np.random.default_rng(3)
    ys, xs = np.divmod(np.arange(n * n), n)
    X = torch.tensor(np.c_[xs, ys, rng.normal(size=(n * n, 6))], dtype=torch.float32)
    results = {s: cv_accuracies(X, n, "shuffled", 0, s) for s in ("auto", "torch", "sklearn")}
    np.testing.assert_array_equal(results["auto"], results["torch"])
    assert np.abs(results["torch"].mean(1) - results["sklearn"].mean(1)).max() <= 0.01


def test_the_analyses_a_config_may_select_are_the_registered_ones():
    """config.ANALYSES names them for the checks before torch is imported; each analysis registers under one of those
    names (another is refused), and every one is registered."""
    from shiftlens.analyses import ANALYSIS_REGISTRY, Analysis, register_analysis
    from shiftlens.config import ANALYSES

    assert sorted(ANALYSIS_REGISTRY) == sorted(ANALYSES)

    class Stray(Analysis):
        name = "stray"

    with pytest.raises(ValueError, match="'stray' is not in config.ANALYSES"):
        register_analysis(Stray)
    assert "stray" not in ANALYSIS_REGISTRY
