"""Experiment 3 measured: scenes, feature arithmetic and position retrieval, with known answers on tiny taps."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from shiftlens.analyses.arithmetic.expressions import parse_expression
from shiftlens.analyses.arithmetic.features import cosine, result_vector
from shiftlens.analyses.arithmetic.problems import random_problems
from shiftlens.analyses.arithmetic.retrieval import retrieve
from shiftlens.api.arithmetic import ArithmeticConfig, load_toml, plan, run
from shiftlens.errors import ShiftlensError
from shiftlens.scenes import parse_scene

CANVAS = 64


def tiny_arithmetic_toml(root: Path, patches: Path) -> Path:
    """A two-scene subtraction over the test_linear network on CANVAS, inverted by 2 optimisation steps: the smallest
    arithmetic run that writes every table and figure."""
    f = root / "a.toml"
    f.write_text(f'canvas = {CANVAS}\nsize = 16\nstride = 8\nproblems = 3\nweights = "random"\n'
                 f'models = ["test_linear:pixels,linear"]\npatches = "folder:{patches}"\ninverter = "optimise"\n'
                 'inversion_steps = 2\ndevice = "cpu"\n[scenes]\ntwo = "cat_00@0,0 cup_01@30,30"\n'
                 'one = "cup_01@30,30"\n[expressions]\nsub = "two - one"\n')
    return f


class LinearNet(nn.Module):
    """Taps with known arithmetic: `pixels` (the normalised input, affine in the pixels), `linear` (a fixed linear
    map of the input) and `const` (ignores the input)."""

    def __init__(self) -> None:
        super().__init__()
        self.pixels = nn.Identity()
        self.linear = nn.Linear(3 * CANVAS * CANVAS, 32, bias=False)
        self.const = nn.Linear(1, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pixels(x).flatten(1)
        c = self.const(torch.ones(x.shape[0], 1))
        return torch.cat([self.linear(p), c], 1)


@pytest.fixture(scope="module")
def linear_model() -> str:
    from shiftlens.canvases import Normalisation
    from shiftlens.models import LayerSpec, ModelEntry, register

    register(ModelEntry(
        name="test_linear", description="test network: taps linear in the pixels, and a constant one",
        build=LinearNet, normalisation=Normalisation(), input_size=CANVAS,
        layers={n: LayerSpec(n, n, n) for n in ("pixels", "linear", "const")},
        default_layers=("pixels", "linear", "const")))
    return "test_linear"


def small_config(tmp_path: Path, patch_dir: Path, **kw) -> ArithmeticConfig:
    values = dict(models=["test_linear:pixels,linear,const"], weights="random", patches=f"folder:{patch_dir}",
                  size=16, stride=8, canvas=CANVAS, problems=6, seed=3, device="cpu", batch_size=32,
                  out=str(tmp_path / "out"),
                  scenes={"three": "cat_00@2,2 cup_01@2,40 cat_00@40,8", "two": "cat_00@2,2 cup_01@2,40",
                          "one": "cup_01@44,44"},
                  expressions={"sub": "three - two", "add": "two + one"}, inverter="none")
    return ArithmeticConfig(**(values | kw))


def test_linear_taps_give_pixel_arithmetic_and_constant_gives_chance(tmp_path, patch_dir, linear_model):
    result = run(small_config(tmp_path, patch_dir))
    per = result.tables["arithmetic_per_problem"]
    assert set(per["kind"]) == {"expression", "move", "add", "remove"}
    exact = per[per["layer"].isin(["pixels", "linear"]) & (per["kind"] != "move")]
    assert len(exact) == 2 * (2 + 4)  # two layers x (two expressions + four add/remove problems)
    # the blank canvas completes the coefficients to 1, so r == f(E), also for the pure subtraction
    np.testing.assert_allclose(exact["cos_result"], 1.0, atol=1e-6)
    assert (exact["top1"] == 1.0).all() and (exact["rank"] == 1.0).all() and (exact["pixel_error"] == 0).all()
    sub = per[(per["problem"] == "sub") & (per["layer"] == "pixels")].iloc[0]
    assert sub["coefficient_sum"] == 0 and sub["cos_uncorrected"] < 0.5  # without the blank the background is lost
    # move is an analogy with no pixel identity: A@p - A@q + B@q is not B@p, so r != f(E); retrieval still puts B at
    # p here because the test blobs' changes to the white canvas are alike (A's residue at p outweighs B's at q)
    move = per[(per["kind"] == "move") & per["layer"].isin(["pixels", "linear"])]
    assert len(move) == 4 and (move["cos_result"] < 1 - 1e-3).all() and (move["top1"] == 1.0).all()
    const = per[per["layer"] == "const"]
    np.testing.assert_allclose(const["top1"], 1.0 / const["n_candidates"])
    np.testing.assert_allclose(const["rank"], (1.0 + const["n_candidates"]) / 2)
    summary = result.tables["arithmetic"]
    assert list(summary.columns[:5]) == ["model", "layer", "weights", "patch_size", "kind"]
    assert (summary["weights"] == "random (untrained)").all()
    on_disk = pd.read_csv(Path(result.out) / "tables" / "arithmetic.csv")
    assert len(on_disk) == len(summary)
    assert result.record.status == "complete" and (Path(result.out) / "run.json").is_file()


def test_summary_intervals_resample_problems():
    from shiftlens.analyses.arithmetic.tables import summary
    from shiftlens.analyses.intervals import percentile_interval

    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):  # 40 problems, the last probed twice (an expression with two added objects)
        for probe in range(2 if i == 39 else 1):
            rows.append({"model": "m", "layer": "l", "weights": "w", "patch_size": 75, "kind": "add",
                         "problem": f"p{i}", "top1": float(rng.random() < 0.3), "pixel_error": 3.0, "rank": 2.0,
                         "cos_result": 0.9, "cos_best_operand": 0.8, "cos_gain": float(rng.normal(0.1, 0.05)),
                         "n_candidates": 100})
    rows.append({**rows[0], "kind": "move", "problem": "only"})
    out = summary(pd.DataFrame(rows)).set_index("kind")
    add = out.loc["add"]
    per = pd.DataFrame(rows[:-1]).groupby("problem", sort=False)[["top1", "cos_gain"]].mean().to_numpy()
    low, high = percentile_interval(per)
    assert add["n_problems"] == 40
    assert (add["top1_accuracy_ci_low"], add["top1_accuracy_ci_high"]) == pytest.approx((low[0], high[0]))
    assert (add["mean_cos_gain_ci_low"], add["mean_cos_gain_ci_high"]) == pytest.approx((low[1], high[1]))
    assert add["top1_accuracy_ci_low"] < per[:, 0].mean() < add["top1_accuracy_ci_high"]
    assert np.isnan(out.loc["move", "top1_accuracy_ci_low"])  # one problem: no interval
    assert "bootstrap" in add["ci_method"] and "over problems" in add["ci_method"]


def test_layer_differences_pair_problems_and_favour_the_better_layer():
    from shiftlens.analyses.arithmetic.tables import layer_differences
    from shiftlens.analyses.intervals import percentile_interval

    rng = np.random.default_rng(1)
    rows = []
    for i in range(60):
        hard = rng.random() < 0.5  # a problem's own difficulty, shared by both layers: pairing removes it
        for layer, edge in (("pool", 0.3), ("fc", 0.0), ("same", 0.3)):
            if layer == "fc" and i == 59:
                continue  # a problem only some layers have is left out of their pair
            rows.append({"model": "m", "layer": layer, "weights": "w", "patch_size": 75, "kind": "remove",
                         "problem": f"p{i}", "top1": float(not hard and rng.random() < 0.5 + edge),
                         "rank": 30.0 * hard + 5 - 10 * edge, "cos_gain": 0.1 * edge + rng.normal(0, 0.01)})
    per = pd.DataFrame(rows)
    out = layer_differences(per).set_index("layer_b")
    assert list(out.index) == ["fc", "same"] and (out["layer_a"] == "pool").all()
    fc = out.loc["fc"]
    assert fc["n_problems"] == 59
    a = per[per["layer"] == "pool"].set_index("problem").loc[[f"p{i}" for i in range(59)]]
    b = per[per["layer"] == "fc"].set_index("problem")
    d = (a[["top1", "rank", "cos_gain"]] - b.loc[a.index, ["top1", "rank", "cos_gain"]]).to_numpy()
    low, high = percentile_interval(d)
    assert fc["top1_diff"] == pytest.approx(d[:, 0].mean())
    assert (fc["top1_diff_ci_low"], fc["top1_diff_ci_high"]) == pytest.approx((low[0], high[0]))
    assert fc["rank_diff"] == pytest.approx(-3.0) and fc["rank_diff_ci_high"] == pytest.approx(-3.0)
    assert fc["cos_gain_diff_ci_low"] > 0  # the edge shows as a difference whose interval excludes 0
    same = out.loc["same"]  # a layer no better than the first: its interval of the gain difference holds 0
    assert same["cos_gain_diff_ci_low"] < 0 < same["cos_gain_diff_ci_high"]
    assert "paired" in fc["ci_method"]
    assert layer_differences(per[per["layer"] == "pool"]).empty  # one layer: nothing to compare


def test_rerun_resumes_per_model_and_refuses_another_config(tmp_path, patch_dir, linear_model, constant_model):
    cfg = small_config(tmp_path, patch_dir, problems=2, models=["test_linear:const", "test_constant:spatial"])
    first = run(cfg)
    assert (first.computed, first.resumed) == (2, 0)
    again = run(cfg)  # the same config into the same folder reuses each model's finished rows
    assert (again.computed, again.resumed) == (0, 2)
    pd.testing.assert_frame_equal(first.tables["arithmetic_per_problem"], again.tables["arithmetic_per_problem"])
    from shiftlens.api.arithmetic import part_path
    from shiftlens.store import ResultsDir

    part = part_path(ResultsDir(cfg.out), "test_constant")
    part.write_text(part.read_text()[:50])  # a write cut short is recomputed, not trusted
    third = run(cfg)
    assert (third.computed, third.resumed) == (1, 1)
    pd.testing.assert_frame_equal(first.tables["arithmetic"], third.tables["arithmetic"])
    other = small_config(tmp_path, patch_dir, problems=0, models=["test_linear:const"], seed=4)
    with pytest.raises(ShiftlensError, match="different config"):
        run(other)
    run(other, force=True)


def test_subtracting_a_missing_object_names_it(tmp_path, patch_dir, linear_model):
    cfg = small_config(tmp_path, patch_dir, expressions={"bad": "two - one"})
    with pytest.raises(ShiftlensError, match=r"operand 'one'.*cup_01:16@44,44") as exc:
        plan(cfg)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("scene, message", [
    ("dog_09@1,1", "names patch 'dog_09'"),
    ("cat_00@60,1", "cat_00:16@60,1 reaches outside the 64px canvas"),
    ("cat_00:0@1,1", "has size 0"),
    ("cat_00@1", "is not PATCH"),
])
def test_scene_errors_are_one_line(tmp_path, patch_dir, linear_model, scene, message):
    cfg = small_config(tmp_path, patch_dir, scenes={"s": scene}, expressions={"e": "s"}, problems=0)
    with pytest.raises(ShiftlensError, match=message) as exc:
        plan(cfg)
    assert "\n" not in str(exc.value)


def test_expression_parsing():
    scenes = {"a": parse_scene("x@0,0", 5), "b": parse_scene("y@0,0", 5)}
    # a repeated scene is one term, its coefficient the sum of its signs, where it first appears
    assert parse_expression("a - b + a", "e", scenes).terms == ((2, "a"), (-1, "b"))
    assert parse_expression("-a", "e", scenes).coefficient_sum == -1
    with pytest.raises(ShiftlensError, match="scene 'a' is added and subtracted as often, so it cancels out"):
        parse_expression("a + b - a", "e", scenes)
    for bad in ("a b", "a - ", "a + c", ""):
        with pytest.raises(ShiftlensError):
            parse_expression(bad, "e", scenes)


def test_toml_scenes(tmp_path, patch_dir):
    f = tmp_path / "a.toml"
    f.write_text('size = 20\nproblems = 0\n[[scenes.s.objects]]\npatch = "cat_00"\ny = 1\nx = 2\n'
                 '[[scenes.s.objects]]\npatch = "cup_01"\nsize = 10\ny = 30\nx = 40\n[scenes]\nt = "cup_01@5,5"\n'
                 '[expressions]\ne = "s - t"\n')
    cfg = load_toml(f)
    assert cfg.scenes == {"s": "cat_00:20@1,2 cup_01:10@30,40", "t": "cup_01:20@5,5"}
    assert cfg.expressions == {"e": "s - t"} and cfg.problems == 0
    for bad, message in [('problems = "3"', "problems should be int, got '3'"), ("models = [1]", "models should be a list of str"),
                         ("stride = true", "stride should be int"), ("colour = 1", "unknown key 'colour'")]:
        f.write_text(bad + "\n")
        with pytest.raises(ShiftlensError, match=message):
            load_toml(f)
    f.write_text('[[scenes.s.objects]]\npatch = "cat_00"\ny = 1\n')
    with pytest.raises(ShiftlensError, match="object 1: give exactly patch, y, x"):
        load_toml(f)


def test_retrieval_ties_and_ranks():
    pos = np.array([[0, 0], [0, 8], [8, 0]], float)
    r = retrieve(np.array([0.5, 0.9, 0.7]), pos, 0)
    assert (r.rank, r.top1, r.pixel_error) == (3, 0.0, 8.0)
    r = retrieve(np.array([0.5, 0.5, 0.5]), pos, 1)
    assert r.rank == 2 and r.top1 == pytest.approx(1 / 3)
    assert result_vector([1, -1], np.array([[2.0, 0], [1, 0]]), np.array([0, 1.0])).tolist() == [1.0, 1.0]
    assert cosine(np.array([1.0, 0]), np.array([[1.0, 0], [0, 1.0]])).tolist() == [1.0, 0.0]


def test_random_problems_are_seeded_and_never_overlap():
    a = random_problems(["p", "q", "r"], 9, 7, 20, 64, 4)
    assert a == random_problems(["p", "q", "r"], 9, 7, 20, 64, 4)
    assert [p.kind for p in a[:3]] == ["move", "add", "remove"]
    for p in a:
        objs = [o for _, s, _ in p.operands for o in s.objects]
        assert all(o.x + o.size <= 64 and o.y + o.size <= 64 for o in objs)
    with pytest.raises(ShiftlensError, match="at least 2 patches"):
        random_problems(["p"], 3, 0, 20, 64, 4)


def cli(*args: str):
    from typer.testing import CliRunner

    from shiftlens.cli import app

    result = CliRunner().invoke(app, ["arithmetic", *args])
    return result, (result.stdout or "") + (getattr(result, "stderr", "") or "")


@pytest.mark.parametrize("args, message", [
    (["--scene", "a=cat_00@0,0", "--scene", "b=cup_01@0,0", "--expr", "a - b"], "subtracts object cup_01:16@0,0"),
    (["--scene", "a=dog@0,0", "--expr", "a"], "names patch 'dog'"),
    (["--scene", "a=cat_00@0,60", "--expr", "a"], "reaches outside the 64px canvas"),
    (["--scene", "a=cat_00@0,0"], "no --expr uses them"),
    (["--expr", "=a"], "--expr '=a': write NAME="),
    (["--scene", "a=cat_00:100@0,0", "--expr", "a"], "has size 100, larger than the 64px canvas"),
    (["--scene", "a=cat_00@0,0 cat_00@0,0", "--expr", "a"], "is in it twice at the same place"),
    (["--scene", "a=cat_00@0,0", "--scene", "b=cat_00@0,0", "--expr", "a - b"], "its expected scene is blank"),
    (["--seed", "-1", "--problems", "3"], "--seed -1 is invalid: use 0 or more"),
    (["--batch-size", "-5", "--problems", "3"], "--batch-size -5 is invalid"),
    (["--device", "tpu", "--problems", "3"], "unknown device 'tpu'"),
    (["--size", "65", "--problems", "3"], "--size 65 is invalid: give 1 to 64 (at most the 64px canvas)"),
    (["--models", "test_linear:linear;test_linear:pixels", "--problems", "3"], "model 'test_linear' is given twice"),
    (["--models", "test_linear:linear,linear", "--problems", "3"], "layer 'linear' is given twice"),
])
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, patch_dir, linear_model, args, message):
    f = tmp_path / "base.toml"
    f.write_text(f'canvas = {CANVAS}\nsize = 16\nproblems = 0\npatches = "folder:{patch_dir}"\n')
    result, text = cli(str(f), *args, "--out", str(tmp_path / "out"))
    lines = [line for line in text.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], text
    assert not (tmp_path / "out").exists()


def test_cli_runs_a_toml_file(tmp_path, patch_dir, linear_model):
    f = tmp_path / "a.toml"
    f.write_text(f'canvas = {CANVAS}\nsize = 16\nstride = 8\nproblems = 3\nweights = "random"\nmodels = ["test_linear:linear"]\n'
                 'inverter = "optimise"\ninversion_steps = 2\n'
                 f'patches = "folder:{patch_dir}"\n[scenes]\ntwo = "cat_00@0,0 cup_01@30,30"\none = "cup_01@30,30"\n'
                 '[expressions]\nsub = "two - one"\n')
    result, text = cli(str(f), "--out", str(tmp_path / "out"), "--device", "cpu")
    assert result.exit_code == 0, text
    per = pd.read_csv(tmp_path / "out" / "tables" / "arithmetic_per_problem.csv")
    assert list(per["problem"]) == ["sub", "move_000", "add_001", "remove_002"]
    assert per.loc[0, "cos_result"] == pytest.approx(1.0) and per.loc[0, "top1"] == 1.0


# -- images of the expressions (--inverter), figures ---------------------------------------------------------


class FakeDecoder:
    """Stands in for a trained decoder: every feature vector becomes the same mid-grey canvas."""

    def __init__(self, model: str, layer: str) -> None:
        from types import SimpleNamespace

        self.meta = SimpleNamespace(model=model, layer=layer, weights="random (untrained)", steps_done=7)
        self.source = ""

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        return torch.full((features.shape[0], 3, CANVAS, CANVAS), 0.5)


@pytest.fixture
def fake_decoders(monkeypatch, tmp_path):
    """A decoder API that ships a decoder for test_linear:linear only and refuses another model or layer."""
    from types import SimpleNamespace

    from shiftlens.inversion import inverters

    shipped = tmp_path / "test_linear_linear.pt"
    shipped.write_bytes(b"fake")
    other = tmp_path / "for_const.pt"
    other.write_bytes(b"fake")

    def load_decoder(source, model, layer, device="cpu", feature_dim=None, weights=None, seed=0):
        made_for = ("test_linear", "const") if Path(str(source)) == other else ("test_linear", "linear")
        if made_for != (model, layer):
            raise ShiftlensError(f"decoder file {source} was made for {made_for[0]}:{made_for[1]}, not {model}:{layer}")
        if (weights, seed) != ("random", 3):  # the fake decoders were "trained" on random weights of seed 3
            raise ShiftlensError(f"decoder file {source} was trained on other weights, not {weights} of seed {seed}")
        return FakeDecoder(model, layer)

    api = SimpleNamespace(shipped_decoders=lambda: {("test_linear", "linear"): shipped}, load_decoder=load_decoder)
    monkeypatch.setattr(inverters, "decoder_api", lambda: api)
    return SimpleNamespace(shipped=shipped, other=other)


def test_inverted_images_are_saved_reused_and_figured(tmp_path, patch_dir, linear_model):
    from shiftlens.analyses.arithmetic.inversions import path_for, read
    from shiftlens.analyses.arithmetic.record import ArithmeticRecord
    from shiftlens.store import ResultsDir

    cfg = small_config(tmp_path, patch_dir, problems=3, models=["test_linear:pixels,linear"], inverter="optimise",
                       inversion_steps=3)
    first = run(cfg)
    rd = ResultsDir(cfg.out)
    record = rd.read_run(ArithmeticRecord)
    assert [(r.model, r.layer, r.inverter) for r in record.inversions] == [("test_linear", "pixels", "optimise"),
                                                                        ("test_linear", "linear", "optimise")]
    assert record.inversions[0].settings["settings"]["steps"] == 3 and record.inversions[0].images == 5
    inv = read(path_for(rd, "test_linear"))
    assert inv.meta.targets == ["scene:three", "scene:two", "result:sub", "scene:one", "result:add"]
    assert inv.images["pixels"].shape == (5, CANVAS, CANVAS, 3) and inv.images["pixels"].dtype == np.uint8
    # the pixel tap's operand cosines to E: "two" is E's subset, so it is closer to E than "three" minus ... > 0
    assert all(0 < c <= 1 for c in inv.meta.operand_cos["pixels"]["sub"])
    losses = pd.read_csv(Path(cfg.out) / "tables" / "arithmetic_inversions.csv")
    assert len(losses) == 10 and (losses["feature_loss"] >= 0).all() and set(losses["inverter"]) == {"optimise"}
    figs = sorted(record.figures)
    assert figs == ["figures/arithmetic_expr_add.png", "figures/arithmetic_expr_sub.png", "figures/arithmetic_retrieval.png"]
    for f in figs:
        assert (Path(cfg.out) / f).stat().st_size > 5000
    stamp = path_for(rd, "test_linear").stat().st_mtime_ns
    logs: list[str] = []
    again = run(cfg, log=logs.append)  # numbers and images both reused
    assert (again.computed, again.resumed) == (0, 1) and any("images already made, reused" in s for s in logs)
    assert path_for(rd, "test_linear").stat().st_mtime_ns == stamp
    # another inverter setting keeps the folder and the numbers, and remakes only the images
    more = run(dataclasses.replace(cfg, inversion_steps=4))
    assert (more.computed, more.resumed) == (0, 1)
    assert read(path_for(rd, "test_linear")).meta.records[0].settings["settings"]["steps"] == 4
    pd.testing.assert_frame_equal(first.tables["arithmetic"], more.tables["arithmetic"])


def test_decoder_inverter_and_its_errors(tmp_path, patch_dir, linear_model, fake_decoders):
    from shiftlens.analyses.arithmetic.record import ArithmeticRecord
    from shiftlens.store import ResultsDir

    cfg = small_config(tmp_path, patch_dir, problems=0, models=["test_linear:linear"], inverter="decoder",
                       expressions={"sub": "three - two"})
    run(cfg)
    record = ResultsDir(cfg.out).read_run(ArithmeticRecord)
    (rec,) = record.inversions
    assert rec.inverter == "decoder" and rec.settings["source"] == "shipped" and rec.settings["steps_done"] == 7
    # auto: the shipped decoder only for ImageNet weights; random weights fall back to optimise with a note
    p = plan(dataclasses.replace(cfg, inverter="auto", models=["test_linear:linear,pixels"]))
    assert p.notes == ["test_linear:linear: inverted with optimise (its weights are not the ImageNet ones the shipped "
                       "decoders learnt)", "test_linear:pixels: inverted with optimise (its weights are not the ImageNet "
                       "ones the shipped decoders learnt)"]
    for inverter, models, message in [
        ("decoder", ["test_linear:pixels"], r"no decoder is shipped for test_linear:pixels: train one with `shiftlens "
                                            r"inverter train --model test_linear:pixels"),
        (f"decoder:{fake_decoders.other}", ["test_linear:linear"], "was made for test_linear:const, not test_linear:linear"),
        (f"decoder:{tmp_path / 'nope.pt'}", ["test_linear:linear"], "nope.pt does not exist"),
        ("deepsim", ["test_linear:linear"], "unknown inverter 'deepsim': use auto, optimise, decoder, decoder:PATH or none"),
    ]:
        with pytest.raises(ShiftlensError, match=message) as exc:
            plan(dataclasses.replace(cfg, inverter=inverter, models=models))
        assert "\n" not in str(exc.value)


def test_cli_unknown_inverter_is_one_line(tmp_path, patch_dir, linear_model):
    f = tmp_path / "base.toml"
    f.write_text(f'canvas = {CANVAS}\nsize = 16\nproblems = 0\npatches = "folder:{patch_dir}"\nmodels = ["test_linear:linear"]\n'
                 'weights = "random"\n[scenes]\na = "cat_00@0,0"\n[expressions]\ne = "a"\n')
    result, text = cli(str(f), "--inverter", "magic", "--out", str(tmp_path / "out"))
    lines = [line for line in text.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "unknown inverter 'magic'" in lines[0], text
    assert not (tmp_path / "out").exists()


# -- issue 22: each spec's weights, repeated operands and objects, blank E, ids, the demo on another patch set ----


def test_each_spec_is_computed_and_recorded_with_its_own_weights(tmp_path, patch_dir, linear_model):
    """`MODEL@random` next to the run's ImageNet weights is computed with random weights and recorded as such
    (it used to get the run's --weights under its own label); `@PATH` loads that checkpoint."""
    torch.manual_seed(99)
    ckpt = tmp_path / "linear99.pt"
    torch.save(LinearNet().state_dict(), ckpt)
    cfg = small_config(tmp_path, patch_dir, problems=0, weights="imagenet", expressions={"sub": "three - two"},
                       models=["efficientnet_lite0:pool", "efficientnet_lite0:pool@random",
                               "test_linear:linear@random", f"test_linear:linear@{ckpt}"])
    result = run(cfg)
    models = result.record.models
    assert models["efficientnet_lite0"].weights.label == "imagenet"
    assert models["efficientnet_lite0@random"].weights.label == "random (untrained)"
    assert models["efficientnet_lite0@random"].weights.untrained
    assert models[f"test_linear@{ckpt}"].weights.sha256 == models[f"test_linear@{ckpt}"].weights.digest
    per = result.tables["arithmetic_per_problem"].set_index("model")
    assert per.loc["efficientnet_lite0@random", "weights"] == "random (untrained)"
    assert per.loc["efficientnet_lite0", "weights"] == "imagenet"
    for a, b in (("efficientnet_lite0", "efficientnet_lite0@random"), ("test_linear@random", f"test_linear@{ckpt}")):
        assert abs(per.loc[a, "cos_best_operand"] - per.loc[b, "cos_best_operand"]) > 1e-4, (a, b)


def test_a_repeated_operand_is_one_term_and_one_problem(tmp_path, patch_dir, linear_model):
    """`one + one + one` is 3 one: one operand, one probe, counted once; E shows the object once (the pixels
    cannot stack it), and the run says the linear identity does not hold for the stacked copies."""
    cfg = small_config(tmp_path, patch_dir, problems=0, models=["test_linear:pixels"],
                       expressions={"triple": "one + one + one", "sub": "three - two"})
    p = plan(cfg)
    (triple, _) = p.expressions
    assert triple.terms == ((3, "one"),)
    assert [pr.name for pr in p.problems].count("triple") == 1
    assert any("E holds cup_01:16@44,44 x3 at one place" in n for n in p.notes)
    logs: list[str] = []
    result = run(cfg, log=logs.append)
    per = result.tables["arithmetic_per_problem"]
    row = per[per["problem"] == "triple"].iloc[0]
    assert row["expression"] == "3 one" and row["coefficient_sum"] == 3 and row["expected"] == "cup_01:16@44,44"
    assert row["cos_result"] < 1 - 1e-3  # r = 3 f(one) - 2 f(blank) is not f(one), even for the pixel tap
    summary = result.tables["arithmetic"].set_index("kind")
    assert summary.loc["expression", "n_problems"] == 2
    # an expression with several probes is one problem: `three - two` probes nothing added, so one row per object
    many = small_config(tmp_path, patch_dir, problems=0, models=["test_linear:pixels"], out=str(tmp_path / "b"),
                        expressions={"plain": "three"})
    out = run(many)
    assert len(out.tables["arithmetic_per_problem"]) == 3
    assert out.tables["arithmetic"]["n_problems"].tolist() == [1]
    assert any("single operand is its own expected scene" in s for s in out.record.notes)


def test_blank_expected_scene_is_refused_and_an_operand_equal_to_e_is_said(tmp_path, patch_dir, linear_model):
    scenes = {"a": "cat_00@2,2 cup_01@2,40", "b": "cup_01@2,40 cat_00@2,2", "one": "cup_01@2,40",
              "again": "cup_01@2,40"}
    cfg = small_config(tmp_path, patch_dir, problems=0, scenes=scenes, expressions={"e": "a - b"})
    with pytest.raises(ShiftlensError, match=r"expression 'e' \(a - b\): its expected scene is blank") as exc:
        plan(cfg)
    assert "\n" not in str(exc.value)
    for text in ("a + one - again", "one + a - again"):  # E's paste order differs from a's in the second
        p = plan(dataclasses.replace(cfg, expressions={"e": text}))
        assert [n for n in p.notes if "its expected scene is the same as operand 'a'" in n], text


@pytest.mark.parametrize("scene, message", [
    ("cat_00@1,1 cat_00@1,1", "object cat_00:16@1,1 is in it twice at the same place"),
    ("cat_00:100@0,0", "has size 100, larger than the 64px canvas: give a size of at most 64"),
])
def test_duplicate_and_oversized_objects_are_one_line(tmp_path, patch_dir, linear_model, scene, message):
    cfg = small_config(tmp_path, patch_dir, scenes={"s": scene, "t": "cup_01@40,40"}, expressions={"e": "s + t"},
                       problems=0)
    with pytest.raises(ShiftlensError, match=message) as exc:
        plan(cfg)
    assert "\n" not in str(exc.value) and "-" not in str(exc.value).split("give")[-1]


def test_toml_object_tables_take_any_patch_id(tmp_path, patch_dir, linear_model):
    from PIL import Image

    from conftest import blob_rgba

    Image.fromarray(blob_rgba(30, seed=5), "RGBA").save(patch_dir / "my cat: a@b.png")
    f = tmp_path / "a.toml"
    f.write_text(f'canvas = {CANVAS}\nsize = 16\nproblems = 0\nmodels = ["test_linear:pixels"]\nweights = "random"\n'
                 f'patches = "folder:{patch_dir}"\ninverter = "none"\n'
                 '[[scenes.s.objects]]\npatch = "my cat: a@b"\ny = 1\nx = 2\n[scenes]\nt = "cup_01@40,40"\n'
                 '[expressions]\ne = "s + t"\n')
    cfg = dataclasses.replace(load_toml(f), out=str(tmp_path / "out"))
    p = plan(cfg)
    assert p.scenes["s"].objects[0].patch == "my cat: a@b"
    assert p.expressions[0].expected(p.scenes).objects[0].patch == "my cat: a@b"
    with pytest.raises(ShiftlensError, match=r"for a patch id with spaces, ':' or '@' give the scene as TOML"):
        parse_scene("my cat@1,2", 16)


def test_demo_scenes_come_from_another_patch_sets_first_patch(tmp_path, patch_dir, linear_model):
    from shiftlens.api.arithmetic import DEMO_SCENES, demo_scenes

    # the layout is DEMO_SCENES itself for the bundled flower at 75 px on 224 px
    assert demo_scenes("flower_01", 75, 224) == {k: parse_scene(v, 75) for k, v in DEMO_SCENES.items()}
    cfg = ArithmeticConfig(models=["test_linear:pixels"], weights="random", patches=f"folder:{patch_dir}", size=16,
                           stride=8, canvas=CANVAS, problems=0, device="cpu", inverter="none", out=str(tmp_path / "o"))
    p = plan(cfg)
    assert {o.patch for s in p.scenes.values() for o in s.objects} == {"cat_00"}
    assert p.notes == [f"the demo's scenes are copies of cat_00, the first patch of folder:{patch_dir} (it has no "
                       "flower_01); give --scene and --expr for scenes of your own"]
    f = tmp_path / "base.toml"  # no scenes: the demo's, on the test model's 64 px canvas
    f.write_text(f'canvas = {CANVAS}\n')
    result, text = cli(str(f), "--models", "test_linear:pixels", "--weights", "random", "--patches",
                       f"folder:{patch_dir}", "--size", "20", "--problems", "0", "--inverter", "none", "--no-site",
                       "--device", "cpu", "--out", str(tmp_path / "cli"))
    assert result.exit_code == 0, text
    assert f"the demo's scenes are copies of cat_00, the first patch of folder:{patch_dir} (it has no" in text
    per = pd.read_csv(tmp_path / "cli" / "tables" / "arithmetic_per_problem.csv")
    assert per.loc[per["problem"] == "subtraction", "expected"].tolist() == ["cat_00:20@38,6"]  # the lower-left copy


def test_docs_toml_example_runs_and_its_expected_scene_has_an_object(tmp_path):
    """docs/arithmetic.md's TOML example (issue 27: its "three" had two objects, so E was blank)."""
    import re

    docs = (Path(__file__).parents[1] / "docs" / "arithmetic.md").read_text()
    (example,) = re.findall(r"```toml\n(.*?)```", docs, re.S)
    f = tmp_path / "example.toml"
    f.write_text(example)
    p = plan(dataclasses.replace(load_toml(f), weights="random", inverter="none"))
    for e in p.expressions:
        assert e.expected(p.scenes).objects
    assert p.expressions[0].expected(p.scenes) == parse_scene("flower_01@129,20", 75)


def test_decoder_of_other_weights_is_refused_before_any_work(tmp_path, patch_dir, linear_model, fake_decoders):
    cfg = small_config(tmp_path, patch_dir, problems=0, models=["test_linear:linear"], inverter="decoder",
                       expressions={"sub": "three - two"})
    plan(cfg)  # the fake decoders were trained on random weights of seed 3
    for other in (dataclasses.replace(cfg, seed=4), dataclasses.replace(cfg, models=["test_linear:linear@x.pt"])):
        with pytest.raises(ShiftlensError, match="trained on other weights"):
            plan(other)


def test_shipped_imagenet_decoder_is_refused_for_random_weights(tmp_path):
    real = ArithmeticConfig(models=["efficientnet_lite0:pool"], weights="random", inverter="decoder", problems=0,
                            out=str(tmp_path / "real"))
    with pytest.raises(ShiftlensError, match=r"was trained on efficientnet_lite0:pool features of imagenet weights, "
                                             r"but this run uses random \(untrained\) weights of seed 0") as exc:
        plan(real)
    assert "\n" not in str(exc.value) and not (tmp_path / "real").exists()
