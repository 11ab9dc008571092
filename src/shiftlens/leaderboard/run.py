"""The `shiftlens leaderboard` command: one ordinary run folder per model, then the table, the plot and the page.

    OUT/models/KEY/      `shiftlens run` of the model (similarity, invariance, separability, location, consistency)
                         and its own results site (site/index.html)
    OUT/circular/KEY/    the same model with --shift circular, consistency only (circular_consistency)
    OUT/arithmetic/KEY/  `shiftlens arithmetic` of the model: the random move/add/remove benchmark, features only
                         (--inverter none), for the arithmetic columns
    OUT/tables/leaderboard.csv, anchors.csv     the rows read from those folders' tables; the published numbers
    OUT/figures/canvas_vs_zhang2019.png         our canvas consistency against Zhang's crop consistency
    OUT/leaderboard.json                        what was run, reused and skipped (LeaderboardRecord)
    OUT/site/index.html                         the Leaderboard page, linking ../models/KEY/site/index.html

Each model is one resumable unit: a folder that holds a finished run of this config is reused as it is; one left
by a killed command resumes through the run's own parts. `--executor ray` spreads the models over the Ray workers,
one whole model per worker (`ModelWork`, `compute_model`); a worker lost mid-model has its model requeued. A model whose weights cannot be had here is skipped with
one line and the others go on. KEY is `file_key(model)`.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict

from shiftlens import api
from shiftlens.analyses.arithmetic.config import ArithmeticConfig
from shiftlens.analyses.arithmetic.record import ArithmeticRecord
from shiftlens.config import RunConfig
from shiftlens.errors import ShiftlensError
from shiftlens.executors import Executor, LocalExecutor, Progress, closing, make_executor
from shiftlens.leaderboard import anchors, metrics
from shiftlens.leaderboard.models import resolve
from shiftlens.models import parse_spec
from shiftlens.stream import resolve_device
from shiftlens.store import ResultsDir, atomic_path, atomic_write_text, copy_file, file_key

ANALYSES = ["similarity", "invariance", "separability", "location", "consistency"]
CIRCULAR_ANALYSES = ["consistency"]
FIGURE = "figures/canvas_vs_zhang2019.png"
ARITHMETIC_PROBLEMS = 30
"""Random problems of each model's arithmetic benchmark (move, add, remove in turn: 10 of each)."""


class ModelOutcome(BaseModel):
    """One model of the leaderboard: where its runs are and what this command did with them."""

    model_config = ConfigDict(extra="forbid")
    spec: str
    key: str
    folder: str
    circular: str
    arithmetic: str = ""
    """The model's `shiftlens arithmetic` folder ('' when the benchmark cannot run: `arithmetic_note` says why)."""
    arithmetic_note: str = ""
    status: Literal["computed", "reused", "skipped"]
    note: str = ""
    seconds: float = 0.0


class LeaderboardRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["leaderboard"] = "leaderboard"
    config: RunConfig
    """The base config every model's runs start from (their models, analyses, shift and out are the leaderboard's)."""
    models: list[ModelOutcome]
    finished: str
    notes: list[str] = []


@dataclass
class LeaderboardResult:
    out: Path
    table: pd.DataFrame
    outcomes: list[ModelOutcome]
    figure: Path | None
    notes: list[str] = field(default_factory=list)

    @property
    def computed(self) -> int:
        return sum(o.status == "computed" for o in self.outcomes)


def configs(base: RunConfig, spec: str, out: Path) -> tuple[RunConfig, RunConfig]:
    """The model's two ordinary runs: shifts over the fixed canvas with every leaderboard analysis, and circular
    shifts of the whole canvas with consistency only."""
    key = file_key(parse_spec(spec).key)
    move = dataclasses.replace(base, models=[spec], analyses=list(ANALYSES), out=str(out / "models" / key),
                               shift="move").validate()
    circular = dataclasses.replace(base, models=[spec], analyses=list(CIRCULAR_ANALYSES),
                                   out=str(out / "circular" / key), shift="circular", site=False).validate()
    return move, circular


def arithmetic_config(base: RunConfig, spec: str, out: Path) -> ArithmeticConfig:
    """The model's `shiftlens arithmetic` run: ARITHMETIC_PROBLEMS random move/add/remove problems and no
    expressions (so nothing to invert: --inverter none), with the leaderboard's patches, canvas, flat background,
    seed and stride (the retrieval candidates' grid step) and its smallest patch size. Every patch of --patches
    takes part (the benchmark draws its object pairs from them; --max-patches does not apply)."""
    from shiftlens.canvases import parse_background

    key = file_key(parse_spec(spec).key)
    background = parse_background(base.background, base.canvas)
    if not background.flat:
        raise ShiftlensError(f"the arithmetic benchmark renders scenes on a flat colour, not {base.background}: its "
                             "columns stay empty")
    if base.protocol != "paste":
        raise ShiftlensError(f"the arithmetic benchmark pastes objects on the canvas, not --protocol {base.protocol}: "
                             "its columns stay empty")
    return ArithmeticConfig(scenes={}, expressions={}, models=[spec], weights=base.weights, patches=base.patches,
                            size=min(base.sizes), stride=base.stride, problems=ARITHMETIC_PROBLEMS, seed=base.seed,
                            canvas=base.canvas, background=list(background.rgb), keep_aspect=base.keep_aspect,
                            device=base.device, precision=base.precision, batch_size=base.batch_size,
                            out=str(out / "arithmetic" / key), inverter="none")


def arithmetic_plan(base: RunConfig, spec: str, out: Path) -> tuple[Any, str]:
    """The model's arithmetic plan (every check of `shiftlens arithmetic`), or None and why it cannot run."""
    from shiftlens.api.arithmetic import plan

    try:
        return plan(arithmetic_config(base, spec, out)), ""
    except ShiftlensError as exc:
        return None, str(exc)


def arithmetic_finished(cfg: ArithmeticConfig) -> bool:
    """Whether cfg.out holds a complete arithmetic run of exactly these numbers (then it is reused)."""
    try:
        record = ResultsDir(cfg.out).read_run(ArithmeticRecord)
    except ShiftlensError:
        return False
    return record is not None and record.status == "complete" and record.fingerprint == cfg.fingerprint()


def plans(base: RunConfig, models: list[str] | str | None, out: Path) -> tuple[api.Plan, api.Plan]:
    """The dry run: every model's move runs and circular runs as two plans (the run's own dry-run plan)."""
    specs = resolve(models)
    move = dataclasses.replace(base, models=specs, analyses=list(ANALYSES), out=str(out / "models"), shift="move")
    circular = dataclasses.replace(move, analyses=list(CIRCULAR_ANALYSES), out=str(out / "circular"), shift="circular")
    return api.plan(move.validate(), dry_run=True), api.plan(circular.validate(), dry_run=True)


def arithmetic_scenes(base: RunConfig, models: list[str] | str | None, out: Path) -> tuple[dict[str, int], list[str]]:
    """The dry run's arithmetic part: scenes each model's benchmark renders (by model key), and why a model has
    none."""
    from shiftlens.analyses.arithmetic.benchmark import scenes_needed

    scenes: dict[str, int] = {}
    notes: list[str] = []
    for spec in resolve(models):
        p, why = arithmetic_plan(base, spec, out)
        if p is None:
            notes.append(f"{parse_spec(spec).key}: no arithmetic benchmark: {why}")
        else:
            scenes[parse_spec(spec).key] = len(scenes_needed(p.problems, p.config.canvas, p.config.stride))
    return scenes, notes


def finished(cfg: RunConfig) -> bool:
    """Whether cfg.out holds a complete run of exactly this config (then it is reused, not run again)."""
    try:
        record = ResultsDir(cfg.out).read_run()
    except ShiftlensError:
        return False
    return (record is not None and record.status == "complete" and record.fingerprint == cfg.fingerprint()
            and all(a in record.config.analyses for a in cfg.analyses))


@dataclass(frozen=True)
class ModelWork:
    """One model's runs, computed in one process (this one, or one Ray worker: `--executor ray` spreads the models
    over the workers). Each run resumes from its own saved parts, so a killed attempt's work is kept."""

    key: str
    runs: tuple[RunConfig, ...]
    """The runs still to compute (a finished one is not listed)."""
    site: str | None
    """The move run's folder when its results site is to be (re)built, else None."""
    force: bool = False
    arithmetic: ArithmeticConfig | None = None
    """The arithmetic benchmark still to compute, else None."""


class WorkerExecutor(LocalExecutor):
    """The local executor inside one Ray worker: the model's parts in that worker's process, and run.json says
    which worker computed them."""

    name = "ray-worker"

    def __init__(self, worker: str) -> None:
        self.worker = worker

    def describe(self) -> str:
        return f"{self.worker}, the whole model on that worker (shiftlens leaderboard --executor ray)"


def compute_model(work: ModelWork, progress: Progress | None = None, log: Callable[[str], None] | None = None,
                  worker: str | None = None) -> list[str]:
    """The model's unfinished runs and its site; returns the lines it logged. On a Ray worker (`worker` names it)
    the parts are computed in the worker's process and the lines go back to the driver."""
    lines: list[str] = []
    say = log or lines.append
    executor = WorkerExecutor(worker) if worker else None
    for cfg in work.runs:
        api.run(cfg, force=work.force, progress=progress, log=say, executor=executor)
    if work.arithmetic is not None:
        from shiftlens.api.arithmetic import run as run_arithmetic

        run_arithmetic(work.arithmetic, force=work.force, progress=progress, log=say)
    if work.site is not None:
        from shiftlens.site import build as build_site

        build_site(work.site)
    return lines


def run(base: RunConfig, models: list[str] | str | None, out: Path | str, force: bool = False,
        progress: Progress | None = None, log: Callable[[str], None] = lambda s: None,
        executor: Executor | None = None) -> LeaderboardResult:
    """Every model's runs (or their finished folders), then tables/leaderboard.csv, the plot and the page.

    `--executor ray`: each model goes whole to one free Ray worker, as many models at once as there are workers;
    a worker lost mid-model is restarted and the model requeued, resuming from its saved parts. `executor`: a
    RayExecutor to use (and leave open); None starts one when a model needs computing and closes it at the end."""
    out = Path(out)
    specs = resolve(models)
    base.validate()
    with ResultsDir(out).lock(), ExitStack() as stack:
        def ray_executor() -> Any:
            if executor is None:
                return stack.enter_context(closing(make_executor(base, resolve_device(base.device), log)))
            return executor

        return _run_models(base, specs, out, force, progress, log, ray_executor)


def _run_models(base: RunConfig, specs: list[str], out: Path, force: bool, progress: Progress | None,
                log: Callable[[str], None], ray_executor: Callable[[], Any]) -> LeaderboardResult:
    outcomes: dict[str, ModelOutcome] = {}
    works: list[ModelWork] = []
    notes: list[str] = []
    for spec in specs:
        parsed = parse_spec(spec)
        move, circular = configs(base, spec, out)
        outcome = dict(spec=spec, key=parsed.key, folder=str(Path(move.out).relative_to(out)),
                       circular=str(Path(circular.out).relative_to(out)))
        try:
            if parsed.entry.logits_layer is None:
                raise ShiftlensError(f"model {parsed.key} has no logits layer, and the leaderboard's consistency "
                                     "needs ImageNet class scores: give a classifier")
            api.check_weights([parsed], base.weights)
        except ShiftlensError as exc:
            log(f"{parsed.key}: skipped: {exc}")
            outcomes[spec] = ModelOutcome(**outcome, status="skipped", note=str(exc))
            continue
        runs = tuple(cfg for cfg in (move, circular) if not finished(cfg))
        arith, why = arithmetic_plan(base, spec, out)
        if arith is None:
            log(f"{parsed.key}: no arithmetic benchmark: {why}")
            outcome["arithmetic_note"] = why
        else:
            outcome["arithmetic"] = str(Path(arith.config.out).relative_to(out))
        arith_todo = arith.config if arith is not None and not arithmetic_finished(arith.config) else None
        site = Path(move.out) / "site" / "index.html"
        rebuild = base.site and (bool(runs) or not site.is_file())
        if not runs and arith_todo is None and not rebuild:
            log(f"{parsed.key}: finished runs in {outcome['folder']}, {outcome['circular']}"
                f"{', ' + outcome['arithmetic'] if outcome['arithmetic'] else ''} reused")
            outcomes[spec] = ModelOutcome(**outcome, status="reused")
            continue
        computed = bool(runs) or arith_todo is not None
        outcomes[spec] = ModelOutcome(**outcome, status="computed" if computed else "reused")
        works.append(ModelWork(spec, runs, move.out if rebuild else None, force, arith_todo))
    if works and base.executor == "ray":
        from shiftlens.executors.ray import Task

        ex = ray_executor()
        notes.append(f"--executor ray: the models spread over {ex.describe()}, one whole model per worker at a time")
        log(notes[-1])

        def done(task: Task, worker: str, lines: list[str], seconds: float) -> None:
            for line in lines:
                log(f"{worker}: {line}")
            outcomes[task.label].seconds = round(seconds, 1)
            log(f"{task.label}: done on Ray worker {worker} in {seconds:.1f} s")

        ex.spread([Task(w.key, compute_model, (w,)) for w in works], done)
    else:
        for w in works:
            t0 = time.perf_counter()
            compute_model(w, progress, log)
            outcomes[w.key].seconds = round(time.perf_counter() - t0, 1)
    ordered = [outcomes[spec] for spec in specs]
    table = build_table(out, ordered, base.site)
    gaps = grid_gaps(table)
    if gaps:
        notes.append(gaps)
        log(gaps)
    figure = plot(out, table)
    if figure is None:
        notes.append("no model has both our canvas consistency and Zhang 2019's: no comparison plot")
    record = LeaderboardRecord(config=base, models=ordered,
                               finished=datetime.now(timezone.utc).isoformat(), notes=notes)
    atomic_write_text(out / "leaderboard.json", record.model_dump_json(indent=2))
    if base.site:
        from shiftlens.leaderboard.site import build as build_page

        build_page(out, table, [gaps] if gaps else [])
    return LeaderboardResult(out, table, ordered, figure, notes)


def build_table(out: Path, outcomes: list[ModelOutcome], with_site: bool) -> pd.DataFrame:
    """tables/leaderboard.csv from the models' own tables, ranked, with the published numbers beside them."""
    frames = []
    for o in outcomes:
        if o.status == "skipped":
            continue
        site = f"{o.folder}/site/index.html" if with_site else ""
        arithmetic = out / o.arithmetic if o.arithmetic else None
        frames.append(metrics.model_rows(out / o.folder, out / o.circular, site, arithmetic))
    columns = (["model", "layer", "weights", "untrained", "weights_source", "net_stride", "folder", "site"]
               + [m.name for m in metrics.METRICS] + ["grid_share_note", "arithmetic_folder", "arithmetic_note"])
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    by_key = {o.key: o for o in outcomes}
    rows["folder"] = [by_key[m].folder for m in rows["model"]]
    rows["arithmetic_folder"] = [by_key[m].arithmetic for m in rows["model"]]
    rows["arithmetic_note"] = [by_key[m].arithmetic_note for m in rows["model"]]
    table = anchors.attach(metrics.rank(rows))
    rd = ResultsDir(out)
    rd.write_table("leaderboard", table)
    copy_file(anchors.ANCHORS_CSV, rd.tables_dir / "anchors.csv")
    return rd.read_table("leaderboard")  # as written, so the page shows the CSV's numbers


def grid_gaps(table: pd.DataFrame) -> str:
    """One line when the grid share is empty in some rows, with why (each row's `grid_share_note`); '' if none."""
    notes = table["grid_share_note"].fillna("").astype(str) if "grid_share_note" in table else pd.Series(dtype=str)
    empty = table["grid_share"].isna() if "grid_share" in table else pd.Series(dtype=bool)
    if not empty.any():
        return ""
    why = "; ".join(dict.fromkeys(n for n in notes[empty] if n)) or "see docs/leaderboard.md"
    return (f"grid_share is empty in {int(empty.sum())} of {len(table)} row(s), not zero: {why} "
            "(tables/leaderboard.csv, grid_share_note)")


def plot(out: Path, table: pd.DataFrame) -> Path | None:
    """Our canvas consistency against Zhang 2019's crop consistency, for the models that have both."""
    both = table.dropna(subset=["canvas_consistency", "published_crop_consistency"])
    path = out / FIGURE
    if both.empty:
        path.unlink(missing_ok=True)  # an earlier leaderboard's plot (this command's file) no longer applies
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(both["published_crop_consistency"], both["canvas_consistency"], color="tab:blue")
    for r in both.itertuples():
        ax.annotate(f"{r.model}:{r.layer}", (r.published_crop_consistency, r.canvas_consistency), fontsize=8,
                    xytext=(4, 2), textcoords="offset points")
    ax.set_xlabel("Zhang 2019: consistency of two random 224 px crops (ImageNet val)")
    ax.set_ylabel("shiftlens: canvas consistency (p_random, our patches)")
    ax.set_title("Top-1 consistency: two protocols", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
