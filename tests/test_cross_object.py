"""The location probe's cross-object protocol: known answers, grouped folds, determinism, and the stale-part rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import Ridge

from shiftlens import api
from shiftlens.analyses import PatchContext, anchors
from shiftlens.analyses.base import required_arrays
from shiftlens.analyses.cross_object import (ALPHAS, MIN_PATCHES, PROBES, cross_object_table, group_folds, logo_errors,
                                             probe_predictions, ridge_spectrum)
from shiftlens.analyses.location import CROSS_POSITIONS, Location, compact, cross_positions
from shiftlens.canvases import grid
from shiftlens.config import RunConfig
from shiftlens.store import Part, ResultsDir
from tests.conftest import part_meta, write_patch_dir

SIZE, STRIDE = 152, 8  # a 10 x 10 grid


def synthetic_part(j: int) -> Part:
    """Patch j through a network whose `pos` tap is its position plus an object code, and whose `const` tap is
    constant: `pos` says where the object is whatever the object is, `const` says nothing."""
    ys, xs = grid(224, SIZE, STRIDE)
    n = 10
    ctx = PatchContext(model="m", weights="w", layers=["pos", "const"], patch_id=f"obj{j}", category="c",
                       patch_size=SIZE, ys=ys, xs=xs, n=n, anchors=anchors(n), config=RunConfig(),
                       device=torch.device("cpu"))
    code = np.random.default_rng(j).normal(0, 20, 8)
    pos = np.concatenate([np.stack([xs] * 8 + [ys] * 8, 1), np.tile(code, (len(xs), 1))], 1).astype(np.float32)
    arrays = Location(ctx).finish({"pos": torch.tensor(pos), "const": torch.full((len(xs), 3), 2.5)})
    return Part(part_meta(patch_id=f"obj{j}", patch_size=SIZE, n=n), arrays)


@pytest.fixture(scope="module")
def parts() -> list[Part]:
    return [synthetic_part(j) for j in range(6)]


def test_a_position_code_independent_of_the_object_is_read_on_unseen_objects_and_a_constant_is_not(parts):
    table = cross_object_table(parts).set_index(["layer", "probe"])
    assert (table.protocol == "cross_object").all() and (table.n_patches == 6).all()
    assert (table.n_positions == 6 * CROSS_POSITIONS).all() and (table.n_folds == 5).all()
    centre = table.loc[("pos", "centre")]
    assert centre.median_dist_px > 15 and abs(centre.r2_x) < 0.2  # the baseline knows nothing
    ridge = table.loc[("pos", "ridge")]
    assert ridge.median_dist_px < 0.5 and ridge.r2_x > 0.999 and ridge.r2_y > 0.999
    assert table.loc[("pos", "knn"), "median_dist_px"] < 0.6 * centre.median_dist_px
    const = table.loc[("const", "ridge")]  # nothing to read: ridge falls back to the training mean, the baseline
    assert const.median_dist_px == pytest.approx(table.loc[("const", "centre"), "median_dist_px"], rel=1e-9)
    # paired over objects: ridge on `pos` gains about the centre guess's whole error, its interval clear of 0; on
    # `const` it gains nothing (interval at 0); the centre guess gains nothing over itself
    assert ridge.gain_over_centre_ci_low > 15 and ridge.gain_over_centre_ci_low <= ridge.gain_over_centre_px
    assert ridge.gain_over_centre_px <= ridge.gain_over_centre_ci_high
    assert abs(const.gain_over_centre_px) < 1e-6 and abs(const.gain_over_centre_ci_high) < 1e-6
    assert (table.loc[("pos", "centre"), ["gain_over_centre_px", "gain_over_centre_ci_low"]] == 0).all()


def test_the_gain_over_the_centre_guess_is_paired_and_its_unit_is_the_object():
    from shiftlens.analyses.cross_object import gain_over_centre

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(12), 20)
    hard = np.repeat(rng.uniform(10, 100, 12), 20)  # objects differ in difficulty far more than the gain
    g = gain_over_centre(hard - 3 + rng.normal(0, 0.5, 240), hard, groups)
    assert 2 < g["gain_over_centre_ci_low"] < g["gain_over_centre_px"] < g["gain_over_centre_ci_high"] < 4
    one = gain_over_centre(hard - 3, hard + np.where(groups == 0, 300.0, 0.0), groups)  # one object far off
    assert one["gain_over_centre_ci_high"] - one["gain_over_centre_ci_low"] > 20  # 12 objects, not 240 rows


def test_a_channel_only_one_object_uses_does_not_blow_up_the_linear_probe():
    """Regression: per-feature standardisation (the within-patch probe's) scaled a channel silent on every training
    object to huge values at the test object that uses it, and ridge did no better than the baseline."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(8), 16)
    Y = rng.uniform(40, 180, (128, 2))
    own = np.zeros((128, 8))
    own[np.arange(128), groups] = 100.0  # one channel per object, silent for every other object
    X = np.concatenate([np.repeat(Y + rng.normal(0, 10, Y.shape), 4, 1), own + rng.normal(0, 1e-3, own.shape)], 1)
    pred = probe_predictions(X, Y, groups, group_folds(groups))
    err = {k: np.median(np.linalg.norm(v - Y, axis=1)) for k, v in pred.items()}
    assert err["ridge"] < 0.4 * err["centre"] and err["knn"] < 0.4 * err["centre"]


def test_grouped_folds_never_put_one_patch_in_training_and_test():
    groups = np.repeat([3, 0, 7, 1, 4, 2, 9], 5)
    test = group_folds(groups)
    assert test.shape == (5, len(groups)) and (test.sum(0) == 1).all()  # every row tested exactly once
    for mask in test:
        assert not set(groups[mask]) & set(groups[~mask])
    assert group_folds(np.repeat([0, 1, 2], 4)).shape[0] == 3  # fewer patches than folds: one fold per patch


def test_leave_one_object_out_errors_are_those_of_refitting_without_the_object():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(5), 6)
    X = rng.normal(size=(30, 12)) + np.repeat(rng.normal(size=(5, 12)), 6, 0)
    Y = X[:, :2] @ rng.normal(size=(2, 2)) + rng.normal(0, 0.3, (30, 2))
    yc = Y - Y.mean(0)
    for X in (X, np.concatenate([X, rng.normal(size=(30, 28))], 1)):  # more rows than features, and fewer
        Xs = X - X.mean(0)
        B, W, _, _ = ridge_spectrum(torch.tensor(Xs))
        got = logo_errors(B, W, torch.tensor(yc), groups).numpy()
        brute = [sum(((Ridge(alpha=a).fit(Xs[groups != g], yc[groups != g]).predict(Xs[groups == g])
                       - yc[groups == g]) ** 2).sum() for g in range(5)) for a in ALPHAS]
        np.testing.assert_allclose(got, brute, rtol=1e-8)


def test_the_protocol_is_deterministic_and_keeps_each_patch_s_own_positions(parts):
    again = [synthetic_part(j) for j in range(6)]
    pd.testing.assert_frame_equal(cross_object_table(parts), cross_object_table(again))
    a, b = cross_positions(100, 0, "obj0"), cross_positions(100, 0, "obj1")
    assert len(a) == CROSS_POSITIONS and (np.diff(a) > 0).all() and not np.array_equal(a, b)
    np.testing.assert_array_equal(a, cross_positions(100, 0, "obj0"))
    kept = parts[0].get("location", "pos", "cross_features")
    assert kept.dtype == np.float16 and kept.shape == (CROSS_POSITIONS, 24)
    big = compact(np.array([[1.0, 7e4]], np.float32))  # beyond float16: kept as float32, not as inf
    assert big.dtype == np.float32 and big[0, 1] == 7e4
    centres = parts[0].get("location", "pos", "cross_centres")
    target = parts[0].get("location", "pos", "target").reshape(2, -1).T
    np.testing.assert_array_equal(centres, target[a])


def test_too_few_patches_give_a_row_that_says_so(parts):
    table = cross_object_table(parts[: MIN_PATCHES - 1])
    assert len(table) == 2 * len(PROBES) and table.median_dist_px.isna().all()
    assert table.note.str.contains(f"at least {MIN_PATCHES} patches").all()


def test_a_part_without_a_selected_analysis_s_arrays_is_stale(tmp_path):
    results = ResultsDir(tmp_path / "out")
    meta = part_meta()
    required = required_arrays(["similarity", "location"], ["fc"])
    assert required == {"location": [f"location/fc/{a}" for a in Location.part_arrays]}  # similarity declares none
    full = {k: np.zeros(2, np.float32) for k in required["location"]}
    results.save_part(meta, full)
    assert results.part_state(meta, required) is None
    results.save_part(meta, {k: v for k, v in full.items() if "cross" not in k})  # an earlier version's part
    assert results.part_state(meta, required).startswith("analysis location missing from the part")
    assert results.part_state(meta) is None  # nothing required: the metadata alone decide


def test_a_run_recomputes_a_part_written_before_the_cross_object_arrays(tmp_path, constant_model):
    cfg = RunConfig(models=[f"{constant_model}:spatial"], patches=f"folder:{write_patch_dir(tmp_path / 'p', n=3)}",
                    sizes=[96], stride=32, weights="random", out=str(tmp_path / "out"), batch_size=32, site=False,
                    analyses=["location"])
    first = api.run(cfg)
    table = first.tables["location_cross_object"]
    assert list(table.probe) == list(PROBES) and (table.n_patches == 3).all() and (table.note == "").all()
    assert table.median_dist_px.notna().all()
    assert (Path(cfg.out) / "figures" / "location_cross_object_p96.png").is_file()
    results = ResultsDir(Path(cfg.out))
    old = results.parts()[0]
    results.save_part(old.meta, {k: v for k, v in old.arrays.items() if "cross" not in k})
    logged: list[str] = []
    again = api.run(cfg, log=logged.append)
    assert again.computed == 1 and again.skipped == 2
    assert any("1 finished part(s) are recomputed: analysis location missing from the part" in line for line in logged)
    pd.testing.assert_frame_equal(again.tables["location_cross_object"], table)


def place_code(Y: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Features that say where the object is the same way for every object, but not linearly: place cells
    (Gaussian bumps of the centre) folded through |.|, beside a per-object code that varies more than they do."""
    cells = rng.uniform(40, 190, (12, 2))
    bumps = np.exp(-((Y[:, None, :] - cells[None]) ** 2).sum(2) / (2 * 25.0**2))
    folded = np.abs(Y - 115.0) / 40  # distance from the middle: no linear read of the side
    code = rng.normal(0, 3, (groups.max() + 1, 6))[groups]
    return np.concatenate([bumps * 5, folded, code], 1)


def test_the_mlp_reads_a_non_linear_object_independent_position_code_and_nothing_from_noise():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(12), 16)
    Y = rng.uniform(40, 190, (len(groups), 2))
    test = group_folds(groups)
    coded = probe_predictions(place_code(Y, groups, rng), Y, groups, test)
    err = {k: np.median(np.linalg.norm(v - Y, axis=1)) for k, v in coded.items()}
    assert err["mlp"] < 0.35 * err["centre"]
    noise = rng.normal(size=(len(groups), 20)) + np.repeat(rng.normal(0, 2, (12, 20)), 16, 0)
    blind = probe_predictions(noise, Y, groups, test)
    err = {k: np.median(np.linalg.norm(v - Y, axis=1)) for k, v in blind.items()}
    assert err["mlp"] > 0.9 * err["centre"]  # nothing to read: no meaningful gain on guessing the training mean
    again = probe_predictions(noise, Y, groups, test)["mlp"]
    np.testing.assert_array_equal(again, blind["mlp"])  # seeded: the same predictions bit for bit


def test_the_mlp_reads_principal_components_of_the_training_rows_only():
    from shiftlens.analyses.cross_object import MLP_COMPONENTS, principal_components

    rng = np.random.default_rng(0)
    for n, d in ((30, 80), (90, 40)):  # fewer rows than features, and more
        Xs = torch.tensor(rng.normal(size=(n, d)) * np.linspace(5, 0.1, d))
        Xs -= Xs.mean(0)
        _, _, C, lam = ridge_spectrum(Xs)
        P = principal_components(C, lam)
        k = min(MLP_COMPONENTS, n - 1, d)  # centred rows: rank n - 1
        assert P.shape == (d, k)
        np.testing.assert_allclose((P.T @ P).numpy(), np.eye(k), atol=1e-8)
        top = torch.linalg.svd(Xs, full_matrices=False).Vh[:k]  # the same subspace as the SVD's top directions
        np.testing.assert_allclose(torch.linalg.matrix_norm(top @ P).item() ** 2, k, rtol=1e-8)


def test_leave_one_object_out_errors_are_exact_for_large_groups():
    """Groups of 200 rows (a decoder evaluation's probe: few objects, many scenes each) in a process that called
    torch.set_num_threads (conftest does): torch's MKL batched LU gives wrong solutions there from ~160 rows, so the
    solve goes through numpy. Checked against refitting ridge (unpenalised intercept) without each group."""
    import torch

    from shiftlens.analyses.cross_object import ALPHAS, logo_errors, ridge_spectrum

    torch.set_num_threads(min(2, torch.get_num_threads()))
    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 8))
    Y = X[:, :2] * 3 + rng.normal(size=(600, 2))
    groups = np.repeat(np.array(["a", "b", "c"]), 200)
    Xs = torch.as_tensor(X - X.mean(0))
    yc = torch.as_tensor(Y - Y.mean(0))
    B, W, _, _ = ridge_spectrum(Xs)
    got = logo_errors(B, W, yc, groups).numpy()
    want = np.zeros(len(ALPHAS))
    for i, a in enumerate(ALPHAS):
        for g in "abc":
            tr, te = groups != g, groups == g
            xm, ym = X[tr].mean(0), Y[tr].mean(0)
            w = np.linalg.solve((X[tr] - xm).T @ (X[tr] - xm) + a * np.eye(8), (X[tr] - xm).T @ (Y[tr] - ym))
            want[i] += (((X[te] - xm) @ w + ym - Y[te]) ** 2).sum()
    np.testing.assert_allclose(got, want, rtol=1e-8)
