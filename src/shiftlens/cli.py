"""The `shiftlens` command line: a thin typer layer over `shiftlens.api`.

Every ShiftlensError ends the command with its one-line message and exit code 2, never a traceback.
"""

from __future__ import annotations

import dataclasses
import errno
import inspect
import math
import sys
import types
import typing
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from shiftlens import config as config_mod
from shiftlens.errors import ShiftlensError
from shiftlens.progress import RichProgress


def _split_models(text: str) -> list[str]:
    """`--models` text -> one string per spec (models.specs.split_specs, the one spec splitter)."""
    from shiftlens.models.specs import split_specs  # torch loads only when models are given

    return split_specs(text)

app = typer.Typer(add_completion=False, no_args_is_help=True, help="How shift-invariant are a network's features?")
console = Console(stderr=True)
out_console = Console(width=max(Console().width, 140))


@app.callback()
def _group() -> None:
    """shiftlens: measure and show how shift-invariant the features of a convolutional network are."""


def fail(exc: ShiftlensError | str) -> None:
    """One line on stderr and exit code 2: how every command reports bad input."""
    console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


# Refusals to write that a user fixes by choosing another place (a file where a folder belongs included).
WRITE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EISDIR,
                errno.EEXIST, errno.EFBIG, errno.ENAMETOOLONG}


def _within(path: Path, root: Path) -> bool:
    """Whether `path` is `root`, inside it, or one of the folders above it (made on the way to it)."""
    path, root = path.resolve(), root.resolve()
    return path == root or root in path.parents or path in root.parents


@contextmanager
def one_line_errors(out: Path | None = None, hint: str = "choose a writable --out"):
    """End the command with one line and exit code 2 on bad input (ShiftlensError) or when the system refuses to
    write the results; an OSError about anything else is a bug and keeps its traceback."""
    try:
        yield
    except ShiftlensError as exc:
        fail(exc)
    except OSError as exc:
        path = exc.filename if exc.filename is not None else out
        if out is not None and path is not None and _within(Path(path), out):
            fail(f"cannot write {path}: {exc.strerror or exc}: {hint}")
        if exc.errno in WRITE_ERRNOS and path is not None:
            fail(f"cannot use {path}: {exc.strerror or exc}")
        raise


def similarity_table(df) -> Table:
    table = Table(title="Cosine similarity to each anchor: mean ± std over patches of the per-patch mean map")
    for col in ("model", "layer", "weights", "size"):
        table.add_column(col)
    anchors = list(dict.fromkeys(df["anchor"]))
    for a in anchors:
        table.add_column(a, justify="right")
    for (model, layer, weights, size), g in df.groupby(["model", "layer", "weights", "patch_size"], sort=False):
        cells = {r.anchor: f"{r.mean:.3f} ± {r.std:.3f}" for r in g.itertuples()}
        table.add_row(model, layer, weights, str(size), *[cells.get(a, "") for a in anchors])
    return table


def build_config(preset: str, **overrides) -> config_mod.RunConfig:
    """The preset or TOML file with the flags that were given applied on top, validated."""
    cfg = config_mod.load(preset)
    if overrides.get("models"):
        overrides["models"] = _split_models(";".join(overrides["models"]))
    if overrides.get("sizes") is not None:
        overrides["sizes"] = config_mod.parse_sizes(overrides["sizes"])
    if overrides.get("analyses") is not None:
        overrides["analyses"] = config_mod.split_list(overrides["analyses"])
    if overrides.get("units") is not None:
        try:
            overrides["units"] = [int(u) for u in config_mod.split_list(overrides["units"])]
        except ValueError:
            raise ShiftlensError(f"--units {overrides['units']!r} is invalid: give unit indices separated by commas, "
                                 "e.g. 3,17") from None
    return config_mod.with_overrides(cfg, **overrides).validate()


PresetArg = Annotated[str, typer.Argument(help="preset (quick, paper) or a TOML config file")]


def _shown(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return " ".join(map(str, value)) if value and isinstance(value[0], str) and ":" in value[0] else \
            ", ".join(map(str, value)) or "none"  # a space after each comma: a long list wraps, never truncates
    if isinstance(value, str) and len(value) > 30 and "," in value:  # one long word would be truncated in the help
        source, _, items = value.rpartition(":")
        return f"{source + ':' if source else ''}{len(items.split(','))} items, see shiftlens config PRESET"
    return "none" if value is None else str(value)


def _default_note(f: dataclasses.Field, presets: dict[str, config_mod.RunConfig]) -> str:
    """What leaving the flag out means: its `unset` text, or what the presets set, e.g. `quick, stamps presets: 8;
    paper preset: 1` (the flags default to None = the preset's value, which typer would not show)."""
    if "unset" in f.metadata:
        return f"default: {f.metadata['unset']}"
    by_value: dict[str, list[str]] = {}  # presets that agree are named together
    for preset, cfg in presets.items():
        by_value.setdefault(_shown(getattr(cfg, f.name)), []).append(preset)
    if len(by_value) == 1:
        return f"default: {next(iter(by_value))}"
    return "; ".join(f"{', '.join(ps)} preset{'s' if len(ps) > 1 else ''}: {v}" for v, ps in by_value.items())


def _flag_type(hint, repeat: bool) -> type:
    """The type a flag parses: a repeated flag gives strings; a list or a union (`str | list[int]`) is one string
    that build_config splits; a single type (`int | None` too) is itself."""
    if repeat:
        return list[str]
    union = typing.get_origin(hint) in (types.UnionType, typing.Union)
    kept = [a for a in typing.get_args(hint) if a is not type(None)] if union else [hint]
    return kept[0] if len(kept) == 1 and kept[0] in (bool, int, float, str) else str


FIELDS = {f.name: f for f in dataclasses.fields(config_mod.RunConfig)}


def _config_options() -> dict[str, Any]:
    """One typer option per RunConfig field that has a flag, all from the field: its name, type, docstring (the help,
    ended by what leaving it out means) and metadata (`flags`, `repeat`, `unset`); default None = the preset's."""
    presets = {name: config_mod.load(name) for name in config_mod.PRESETS}
    hints, docs = typing.get_type_hints(config_mod.RunConfig), config_mod.field_docs()
    options = {}
    for f in FIELDS.values():
        flags = f.metadata.get("flags", ())
        if flags is None:
            continue
        kind = _flag_type(hints[f.name], f.metadata.get("repeat", False))
        options[f.name] = Annotated[Optional[kind], typer.Option(*flags, help=f"{docs[f.name]} "
                                                                             f"({_default_note(f, presets)})")]
    return options


OPTIONS = _config_options()
"""RunConfig's flags by field name: `shiftlens run` and `config` take them all (config_options), other commands some
by name (`patches: OPTIONS["patches"] = None`)."""


def config_options(exclude: tuple[str, ...] = ()):
    """A command takes RunConfig's flags (less `exclude`) in its `**flags`, ready for build_config. Its own parameter
    of a field's name replaces that flag in place; the command's arguments come first, its other options last."""

    def add(command):
        own = inspect.signature(command, eval_str=True).parameters
        names = [n for n in OPTIONS if n not in exclude]

        def argument(p: inspect.Parameter) -> bool:
            return any(isinstance(m, typer.models.ArgumentInfo) for m in getattr(p.annotation, "__metadata__", ()))

        params = [p for p in own.values() if argument(p)]
        params += [own.get(n) or inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None,
                                                   annotation=OPTIONS[n]) for n in names]
        params += [p for n, p in own.items() if n not in names and not argument(p) and p.kind != p.VAR_KEYWORD]
        command.__signature__ = inspect.Signature([p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params])
        return command

    return add


@app.command()
@config_options()
def run(
    preset: PresetArg = "quick",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan and a measured time estimate, run nothing")] = False,
    force: Annotated[bool, typer.Option("--force", help="replace results of a different config in --out")] = False,
    **flags,
) -> None:
    """Run the measurement: patches -> shifted canvases -> features -> analyses -> tables, figures, store."""
    with one_line_errors():
        cfg = build_config(preset, **flags)
        cfg = config_mod.with_out(cfg)  # no --out: a folder of this config's own (README, Results folder)
    from shiftlens import api

    with one_line_errors(Path(cfg.out)):
        if dry_run:
            p = api.plan(cfg, dry_run=True)
            print_plan(p, api.estimate(p))
            return
        with RichProgress() as progress:
            result = api.run(cfg, force=force, progress=progress, log=lambda s: console.print(s))
        site = None
        if cfg.site:
            from shiftlens.site import build as build_site

            site = build_site(result.out)
    # soft_wrap: a path is never broken across lines, so it can be copied
    out_console.print(f"results: {result.out.resolve()}  ({result.computed} parts computed, {result.skipped} resumed)",
                      markup=False, highlight=False, soft_wrap=True)
    if site is not None:
        out_console.print(f"site: {site.resolve()}  (open {(site / 'index.html').resolve().as_uri()}, or "
                          f"shiftlens serve {result.out})", markup=False, highlight=False, soft_wrap=True)
    if "similarity" in result.tables:
        out_console.print(similarity_table(result.tables["similarity"]))
    for name in ("separability", "location", "consistency"):
        if name in result.tables:
            out_console.print(f"tables/{name}.csv: {len(result.tables[name])} rows")


@app.command("config")
@config_options()
def config_cmd(preset: PresetArg = "quick", **flags) -> None:
    """Print the effective config (preset or file plus flags) as TOML: save it, edit it, `shiftlens run FILE.toml`."""
    with one_line_errors():
        cfg = build_config(preset, **flags)
    typer.echo(f"# shiftlens run config (fingerprint {cfg.fingerprint()}): save as a .toml file and pass it to "
               "`shiftlens run`")
    if cfg.out is None:
        typer.echo(f"# results go to {config_mod.default_out(cfg)} (named from the preset and what differs; "
                   "set out = \"DIR\" to choose)")
    typer.echo(config_mod.to_toml(cfg), nl=False)


@app.command("models")
def models_cmd() -> None:
    """List the built-in models: layers (meaning, feature size), total stride, where the weights come from."""
    from shiftlens.models import REGISTRY
    from shiftlens.models.summary import feature_sizes

    table = Table(title="Built-in models (any torchvision or timm model also works through a prefixed spec)")
    for col in ("model", "layer", "size", "meaning", "stride", "weights (imagenet)"):
        table.add_column(col)
    for entry in REGISTRY.values():
        if entry.extra.get("variant_of"):
            continue
        sizes = feature_sizes(entry)
        for i, spec in enumerate(entry.layers.values()):
            default = " (default)" if spec.name in entry.default_layers else ""
            table.add_row(entry.name if i == 0 else "", spec.name + default, str(sizes.get(spec.name) or "?"),
                          spec.description, f"{entry.net_stride or '?'} px" if i == 0 else "",
                          entry.weights_source if i == 0 else "")
    out_console.print(table)
    out_console.print("Anti-aliased filter sizes: NAME_aa1 .. NAME_aa7 (e.g. resnet50_aa3); NAME_aa is Bin-5; "
                      "ImageNet weights were released for sizes 2-5.")
    out_console.print("Adaptive polyphase sampling (exactly invariant to circular shifts): resnet18_aps, resnet50_aps, "
                      "mobilenet_v2_aps; NAME_aps2 .. NAME_aps5 blur before each subsampling. No ImageNet weights "
                      "were released: --weights random or NAME_aps@PATH.")
    out_console.print("Any network: torchvision:NAME:MODULE[,MODULE] or timm:NAME:MODULE[,MODULE] "
                      "(timm: pip install 'shiftlens[timm]'); a layer is a module path, plus logits. "
                      "Python: shiftlens.models.custom(name, module, layers, mean, std).", markup=False)


@app.command("patches")
def patches_cmd(
    source: Annotated[str, typer.Argument(help="a --patches spec: tuxpaint[:CATEGORY,...], openclipart[:CATEGORY,...], "
                                                 "sample, folder:DIR or coco:ANNOTATIONS.json:IMAGES_DIR")],
    skipped: Annotated[bool, typer.Option("--skipped", help="also list every skipped file with its reason")] = False,
    min_object_size: Annotated[float, typer.Option(help=config_mod.field_docs()["min_object_size"])] = FIELDS["min_object_size"].default,
    per_category: Annotated[int, typer.Option(help=config_mod.field_docs()["per_category"])] = FIELDS["per_category"].default,
) -> None:
    """What a patch source holds: its categories, how many objects each gives, and what was skipped and why."""
    from collections import Counter

    from shiftlens.patches import load_patches
    from shiftlens.patches.debian import PACKAGES, parse_spec, survey

    with one_line_errors():
        cfg = config_mod.RunConfig(patches=source, min_object_size=min_object_size, per_category=per_category).validate()
        if source.partition(":")[0] in PACKAGES:
            found = survey(parse_spec(source), min_object_size)
            rows = [(cat, kept, sum(why.values()), "; ".join(f"{n} {r}" for r, n in sorted(why.items())))
                    for cat, (kept, why) in found.categories().items()]
            taken = sum(min(kept, per_category) for _, kept, _, _ in rows)
            summary = (f"{len(found.kept)} objects, {len(found.skipped)} files skipped ({found.root}); a run takes "
                       f"{taken} (per_category {per_category})")
        else:
            counts = Counter(p.category for p in load_patches(cfg))
            rows, found = [(cat, n, 0, "") for cat, n in sorted(counts.items())], None
            summary = f"{sum(counts.values())} objects"
    table = Table(title=f"patch source {escape(source)}")
    for col, justify in (("category", "left"), ("objects", "right"), ("a run takes", "right"), ("skipped", "right"),
                         ("why skipped", "left")):
        table.add_column(col, justify=justify)
    for cat, kept, n_skipped, why in rows:
        taken = str(min(kept, per_category)) if found is not None else str(kept)
        table.add_row(escape(cat), str(kept), taken, str(n_skipped), escape(why))
    out_console.print(table)
    out_console.print(escape(summary), highlight=False, soft_wrap=True)
    if found is not None and skipped:
        for rel, (_, why) in sorted(found.skipped.items()):
            out_console.print(f"{escape(rel)}: {escape(why)}", highlight=False, soft_wrap=True)


@app.command("leaderboard")
@config_options(exclude=("protocol", "shift", "background", "keep_aspect", "square_crop", "analyses", "svm",
                         "units_topk", "units"))  # the leaderboard chooses the analyses and shifts itself
def leaderboard_cmd(
    preset: PresetArg = "quick",
    models: Annotated[Optional[list[str]], typer.Option("--models", "-m", help="model specs as for run, globs (timm:convnext_*, torchvision:resnet*) or default (the usual backbones and their twins); repeat or separate with ';'")] = None,
    out: Annotated[str, typer.Option(help="leaderboard folder: models/KEY/ holds each model's run")] = "results/leaderboard",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan and a measured time estimate, run nothing")] = False,
    force: Annotated[bool, typer.Option("--force", help="replace a model's results of a different config")] = False,
    **flags,
) -> None:
    """Rank many networks by shift invariance: one ordinary run folder per model (plus a circular-shift run),
    tables/leaderboard.csv read from their tables, published numbers beside them, and a Leaderboard page."""
    with one_line_errors():
        cfg = build_config(preset, out=out, **flags)
    from shiftlens import api
    from shiftlens.leaderboard import run as board

    with one_line_errors(Path(out)):
        if dry_run:  # the same models at the same batch sizes: one warm-up measures both plans
            move, circular = board.plans(cfg, models, Path(out))
            ips = api.estimate(move)
            for label, p in (("shifts over the canvas, every leaderboard analysis", move),
                             ("circular shifts, consistency only (img/s as measured above)", circular)):
                out_console.print(f"[bold]{label}[/]")
                print_plan(p, ips)
            scenes, why = board.arithmetic_scenes(cfg, models, Path(out))
            seconds = sum(n / ips[k] for k, n in scenes.items() if k in ips)
            out_console.print("[bold]arithmetic benchmark, features only (img/s as measured above)[/]")
            out_console.print(f"{sum(scenes.values()):,} scenes for {len(scenes)} model(s) "
                              f"({board.ARITHMETIC_PROBLEMS} problems each), about {_duration(seconds)}", markup=False)
            for line in why:
                out_console.print(line, markup=False, soft_wrap=True)
            return
        result = board.run(cfg, models, Path(out), force=force, progress=RichProgress(),
                           log=lambda s: console.print(escape(s), highlight=False, soft_wrap=True))
    table = Table(title="Shift-invariance leaderboard (tables/leaderboard.csv; definitions: docs/leaderboard.md)")
    shown = ["global_invariance", "grid_share", "location_r2", "separability", "canvas_consistency",
             "circular_consistency", "rank_mean"]
    for col in ["model", "layer", "weights", *shown]:
        table.add_column(col, no_wrap=col == "model")
    for r in result.table.itertuples():
        table.add_row(r.model, str(r.layer), r.weights, *[f"{getattr(r, c):.3f}" for c in shown])
    out_console.print(table)
    done = {s: sum(o.status == s for o in result.outcomes) for s in ("computed", "reused", "skipped")}
    out_console.print(f"leaderboard: {result.out.resolve()}  ({done['computed']} models computed, {done['reused']} "
                      f"reused, {done['skipped']} skipped){'; page: site/index.html' if cfg.site else ''}")


@app.command("report")
def report_cmd(
    results_dir: Annotated[Path, typer.Argument(help="a results folder made by `shiftlens run`")],
    every_position: Annotated[bool, typer.Option(
        "--every-position", help="keep every position of each patch's own maps; by default a map with more "
        "positions per side than site.SITE_CELLS (stride 1 at the paper's sizes) keeps every second one, and the "
        "corners and centre")] = False,
) -> None:
    """Build the static results website RESULTS_DIR/site/ (open its index.html, or copy it to any web host)."""
    from shiftlens.site import SITE_CELLS, build as build_site

    with one_line_errors(Path(results_dir), hint="make the results folder writable, or copy it somewhere writable"):
        site = build_site(results_dir, max_cells=0 if every_position else SITE_CELLS)
    typer.echo(f"site: {site.resolve()}  (open {(site / 'index.html').resolve().as_uri()})")


@app.command("serve")
def serve_cmd(
    results_dir: Annotated[Path, typer.Argument(help="a results folder made by `shiftlens run`")],
    port: Annotated[int, typer.Option(help="port on 127.0.0.1 (0 picks a free one)")] = 8000,
) -> None:
    """Serve RESULTS_DIR/site on http://127.0.0.1:PORT for a local look (builds the site first if missing)."""
    if not 0 <= port <= 65535:  # checked before the site is built
        fail(f"port {port} is invalid: use 0-65535 (0 picks a free one)")
    from shiftlens.site import build as build_site, make_server

    with one_line_errors(Path(results_dir), hint="make the results folder writable, or copy it somewhere writable"):
        site = Path(results_dir) / "site"
        if not (site / "index.html").is_file():
            site = build_site(results_dir)
        server = make_server(site, port)
    host, bound = server.server_address[:2]
    typer.echo(f"serving {site.resolve()} on http://{host}:{bound}/  (Ctrl+C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command("bench", add_help_option=False,
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench_cmd(ctx: typer.Context) -> None:
    """Run the repository's benchmark (`python -m benchmarks`, from the repository root); `--help` lists its options."""
    import subprocess

    root = Path.cwd()
    if not (root / "benchmarks" / "__main__.py").is_file():
        fail(ShiftlensError(f"shiftlens bench runs the benchmarks/ package of a source checkout, and {root} has none: "
                            "run it from the repository root (or run `python -m benchmarks` there)"))
    raise typer.Exit(subprocess.run([sys.executable, "-m", "benchmarks", *ctx.args], cwd=root).returncode)


def _named(items: list[str], what: str, example: str) -> dict[str, str]:
    """`NAME=TEXT` items -> {NAME: TEXT}; an expression without `NAME=` is named expr1, expr2, ..."""
    out: dict[str, str] = {}
    for i, item in enumerate(items, 1):
        name, sep, text = item.partition("=")
        if not sep and what == "--expr":
            name, text = f"expr{i}", item
        if not name.strip() or not text.strip():
            fail(f"{what} {item!r}: write {example}")
        out[name.strip()] = text.strip()
    return out


@app.command("arithmetic")
def arithmetic_cmd(
    file: Annotated[Optional[Path], typer.Argument(help="TOML file: scenes.NAME tables (objects with patch, size, y, x), an expressions table, any option below")] = None,
    expr: Annotated[Optional[list[str]], typer.Option("--expr", help="\"A - B + C\" or NAME=\"A - B + C\" over named scenes (repeat)")] = None,
    scene: Annotated[Optional[list[str]], typer.Option("--scene", help="NAME=\"cat_01@10,20 cup_01:125@120,40\" (patch[:size]@y,x; repeat)")] = None,
    models: OPTIONS["models"] = None,
    weights: OPTIONS["weights"] = None,
    patches: OPTIONS["patches"] = None,
    size: Annotated[Optional[int], typer.Option(help="object side in px where a scene gives none, and the benchmark's (75)")] = None,
    stride: Annotated[Optional[int], typer.Option(help="grid step in px of retrieval candidates and random positions (16)")] = None,
    problems: Annotated[Optional[int], typer.Option(help="random move/add/remove problems (9; 0 = none)")] = None,
    seed: Annotated[Optional[int], typer.Option(help="seed of the random problems and random weights")] = None,
    device: OPTIONS["device"] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="scenes per forward pass (0 = auto)")] = None,
    out: Annotated[Optional[str], typer.Option(help="results folder (default: results/arithmetic, plus each setting that differs from the demo's)")] = None,
    inverter: Annotated[Optional[str], typer.Option(help="images of the expressions: auto (shipped decoder, else optimise), optimise, decoder, decoder:PATH, none")] = None,
    inversion_steps: Annotated[Optional[int], typer.Option("--inversion-steps", help="gradient steps of the optimise inverter (200)")] = None,
    site: OPTIONS["site"] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check everything and print what would be computed, run nothing")] = False,
    force: Annotated[bool, typer.Option("--force", help="replace arithmetic results of a different config in --out")] = False,
) -> None:
    """Feature arithmetic on multi-object scenes (the paper's Experiment 3): cos(r, f(E)), retrieval, a benchmark.

    With no arguments: a demo like the paper's Fig. 6, its images drawn by the shipped decoders."""
    import dataclasses

    from shiftlens.api import arithmetic as arith

    with one_line_errors():
        cfg = arith.load_toml(file) if file is not None else arith.ArithmeticConfig()
        if scene:  # the user's scenes join a file's, and replace the demo's
            own = cfg.scenes if cfg.scenes != arith.DEMO_SCENES else {}
            cfg.scenes = {**own, **_named(scene, "--scene", 'NAME="cat_01@10,20 cup_01:125@120,40"')}
        if expr:
            cfg.expressions = _named(expr, "--expr", 'NAME="A - B + C"')
        elif scene and cfg.expressions == arith.DEMO_EXPRESSIONS:
            fail("--scene defines scenes but no --expr uses them: add e.g. --expr \"A - B\"")
        flags = dict(models=_split_models(";".join(models)) if models else None, weights=weights,
                     patches=patches, size=size, stride=stride, problems=problems, seed=seed, device=device,
                     batch_size=batch_size, out=out, inverter=inverter, inversion_steps=inversion_steps)
        cfg = dataclasses.replace(cfg, **{k: v for k, v in flags.items() if v is not None}).with_out()
    with one_line_errors(Path(cfg.out)):
        if dry_run:
            print_arithmetic_plan(arith.plan(cfg))
            return
        with RichProgress() as progress:
            result = arith.run(cfg, force=force, progress=progress,
                                   log=lambda s: console.print(s, markup=False, soft_wrap=True))
        if site is not False:
            from shiftlens.site import build as build_site

            build_site(result.out)
    site_note = ", site/index.html" if site is not False else ""
    out_console.print(f"results: {result.out.resolve()}  (figures/, tables/{site_note})")
    per = result.tables["arithmetic_per_problem"]
    table = Table(title="Expressions: r = sum c_i f(S_i) + (1 - sum c_i) f(blank) against the expected scene E")
    for col in ("model", "layer", "weights", "expression", "probe", "cos(r,E)", "best operand", "rank", "px error"):
        table.add_column(col)
    for r in per[per["kind"] == "expression"].itertuples():
        table.add_row(r.model, r.layer, r.weights, f"{r.problem}: {r.expression}", str(r.probe), f"{r.cos_result:.3f}",
                      f"{r.cos_best_operand:.3f}", f"{r.rank:g}/{r.n_candidates}", f"{r.pixel_error:.1f}")
    out_console.print(table)
    summary = result.tables["arithmetic"]
    table = Table(title="Per kind: top-1 retrieval, median pixel error, mean cosines, [95% interval over problems] "
                        "(tables/arithmetic.csv)")
    for col in ("model", "layer", "weights", "kind", "n", "top-1", "median px", "cos(r,E)", "best operand", "gain"):
        table.add_column(col)

    def ci(low: float, high: float, fmt: str) -> str:
        return "" if math.isnan(low) else f" [{low:{fmt}}, {high:{fmt}}]"

    for r in summary.itertuples():
        table.add_row(r.model, r.layer, r.weights, r.kind, str(r.n_problems),
                      f"{r.top1_accuracy:.2f}" + ci(r.top1_accuracy_ci_low, r.top1_accuracy_ci_high, ".2f"),
                      f"{r.median_pixel_error:.1f}", f"{r.mean_cos_result:.3f}", f"{r.mean_cos_best_operand:.3f}",
                      f"{r.mean_cos_gain:+.3f}" + ci(r.mean_cos_gain_ci_low, r.mean_cos_gain_ci_high, "+.3f"))
    out_console.print(table)
    layers = result.tables.get("arithmetic_layers")
    if layers is not None and len(layers):
        table = Table(title="First layer minus each later layer, paired over the same problems, "
                            "[95% interval] (tables/arithmetic_layers.csv)")
        for col in ("model", "weights", "kind", "layers", "n", "top-1 diff", "rank diff", "gain diff"):
            table.add_column(col)
        for r in layers.itertuples():
            table.add_row(r.model, r.weights, r.kind, f"{r.layer_a} - {r.layer_b}", str(r.n_problems),
                          f"{r.top1_diff:+.2f}" + ci(r.top1_diff_ci_low, r.top1_diff_ci_high, "+.2f"),
                          f"{r.rank_diff:+.1f}" + ci(r.rank_diff_ci_low, r.rank_diff_ci_high, "+.1f"),
                          f"{r.cos_gain_diff:+.3f}" + ci(r.cos_gain_diff_ci_low, r.cos_gain_diff_ci_high, "+.3f"))
        out_console.print(table)


inverter_app = typer.Typer(add_completion=False, no_args_is_help=True,
                           help="Decoders: generators from a layer's features to an image (the `decoder` inverter).")
app.add_typer(inverter_app, name="inverter")


@inverter_app.command("train")
def inverter_train(
    model: Annotated[str, typer.Option(help="one model and layer, e.g. efficientnet_lite0:pool")],
    out: Annotated[Path, typer.Option(help="the decoder file to write (its resumable state goes beside it, FILE.state)")],
    patches: OPTIONS["patches"] = None,
    weights: OPTIONS["weights"] = None,
    steps: Annotated[Optional[int], typer.Option(help="generator steps in all (640)")] = None,
    batch: Annotated[Optional[int], typer.Option(help="scenes per step (16)")] = None,
    seed: Annotated[Optional[int], typer.Option(help="seed of the scenes, the held-out patches and the generator (0)")] = None,
    adversarial: Annotated[bool, typer.Option("--adversarial/--no-adversarial", help="add the conditional adversarial loss")] = False,
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="flip scenes and permute their colour channels (docs/decoder.md)")] = False,
    checkpoint_every: Annotated[Optional[int], typer.Option("--checkpoint-every", help="steps between checkpoints and validations (32)")] = None,
    size: Annotated[int, typer.Option(help="px the generator draws: 56, 112 or 224 (docs/decoder.md)")] = 112,
    held_out: Annotated[Optional[int], typer.Option("--held-out", help="objects of each source never trained on (2)")] = None,
    per_category: Annotated[Optional[int], typer.Option("--per-category", help="objects per category of a Debian or COCO source (20)")] = None,
    mix: Annotated[Optional[str], typer.Option(help="objects (each object equally likely) or sources (each source equally likely)")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Adam's learning rate (0.001)")] = None,
    lr_half_life: Annotated[Optional[int], typer.Option("--lr-half-life", help="steps over which the learning rate halves; 0 = constant (0)")] = None,
    warmup: Annotated[Optional[int], typer.Option(help="steps of linear learning-rate warm-up (0)")] = None,
    comparator: Annotated[Optional[str], typer.Option(help="module of the network whose activations the feature loss "
                                                      "compares (default: a stride-8 stage, docs/decoder.md)")] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="continue from --out's checkpoint")] = True,
    force: Annotated[bool, typer.Option("--force", help="start over when --out was trained with other settings")] = False,
) -> None:
    """Train a decoder on scenes of the patches rendered on the fly; checkpoints, resumes, validates on held-out
    patches, and records data, settings and losses inside the file."""
    from pydantic import ValidationError

    from shiftlens.inversion.decoder import TrainSettings, explain, generator_for
    from shiftlens.inversion.train import train

    with one_line_errors(out.parent, hint="choose a writable --out"):
        given = dict(patches=patches, weights=weights, steps=steps, batch=batch, seed=seed,
                     checkpoint_every=checkpoint_every, held_out=held_out, per_category=per_category, mix=mix, lr=lr,
                     lr_half_life=lr_half_life, warmup=warmup, comparator=comparator)
        try:
            settings = TrainSettings(spec=model, adversarial=adversarial, augment=augment,
                                     generator=generator_for(size),
                                     **{k: v for k, v in given.items() if v is not None})
        except ValidationError as exc:  # every option is checked before any work
            raise ShiftlensError(explain(exc, {k: "--" + k.replace("_", "-") for k in given})) from None
        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
                       TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console)
        task = bar.add_task(f"training {model}", total=settings.steps, loss="")

        def progress(step: int, total: int, rec) -> None:
            bar.start()  # on the first step: the checks before it end in one line, with no bar drawn before it
            bar.update(task, completed=step, loss=f"loss {rec.total:.4f}")

        try:
            meta = train(settings, out, resume=resume, force=force, progress=progress, log=lambda s: bar.console.print(s))
        finally:
            if bar.live.is_started:
                bar.stop()
    last = meta.validation[-1] if meta.validation else None
    out_console.print(f"decoder: {out.resolve()} ({meta.steps_done} steps, {meta.train_seconds / 60:.1f} min)")
    if last is not None:
        out_console.print(f"held-out patches {', '.join(meta.held_out_patches)}: MAE {last.held_out_mae:.3f} (training "
                          f"patches {last.training_mae:.3f}); centroid within {last.radius_px:g}px "
                          f"{last.held_out_centroid_share:.2f} (training {last.training_centroid_share:.2f})")


@inverter_app.command("evaluate")
def inverter_evaluate(
    file: Annotated[str, typer.Argument(help="a decoder file (shiftlens inverter train --out FILE), or "
                                        "shipped:MODEL:LAYER for a packaged one")],
    patches: Annotated[str, typer.Option(help="the objects to reconstruct: a source or several joined by + (e.g. tuxpaint: held-out objects of another source)")],
    out: Annotated[Optional[Path], typer.Option(help="folder for evaluation.json, evaluation.csv and evaluation.png")] = None,
    n: Annotated[int, typer.Option(help="single-object scenes per group (held-out, training objects)")] = 48,
    seed: Annotated[int, typer.Option(help="seed of the scenes")] = 123,
    model: Annotated[Optional[str], typer.Option(help="MODEL:LAYER the decoder must be for (refused otherwise)")] = None,
    weights: OPTIONS["weights"] = None,
    per_category: Annotated[int, typer.Option("--per-category", help="objects per category of a Debian or COCO source")] = 20,
    figure: Annotated[int, typer.Option(help="scenes per group in the figure (0: none)")] = 8,
    probe: Annotated[bool, typer.Option("--probe/--no-probe", help="also fit the cross-object ridge probe on 512 "
                                        "scenes of the training objects and report where it places the same scenes' "
                                        "objects")] = True,
) -> None:
    """Reconstruct seeded single-object scenes of objects the decoder was not trained on and of those it was:
    pixel error, centroid within 10 px, median centroid error against guessing the centre, and recognition."""
    from shiftlens.inversion.evaluation import evaluate_file

    with one_line_errors(out, hint="choose a writable --out"):
        from shiftlens.analyses.cross_object import ridge_fit_predict

        report = evaluate_file(file, patches, n=n, seed=seed, out=out, model=model, weights=weights,
                               per_category=per_category, figure_n=figure,
                               log=lambda s: console.print(s, markup=False, highlight=False),
                               probe=ridge_fit_predict if probe else None)
    table = Table(title=f"{report.spec}{' (untrained weights)' if report.untrained else ''} decoder {file} "
                        f"({report.steps} steps) on {patches}: {n} scenes per group, seed {seed}")
    for col in ("objects", "n", "error", f"within {report.radius_px:g} px", "median centroid px", "centre guess px",
                "ridge probe px", "recognised", "gain over centre px [95% CI]", "gain over probe px [95% CI]"):
        table.add_column(col)
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    gain = lambda m, lo, hi: "-" if m is None else f"{m:+.1f} [{fmt(lo, '+.1f')}, {fmt(hi, '+.1f')}]"  # noqa: E731
    for g in report.groups:
        table.add_row(f"{g.group.replace('_', '-')} ({g.objects})", str(g.scenes), fmt(g.mae, ".3f"),
                      fmt(g.centroid_share, ".2f"), fmt(g.median_centroid_error_px, ".1f"),
                      fmt(g.centre_median_error_px, ".1f"), fmt(g.probe_median_error_px, ".1f"),
                      fmt(g.recognised_share, ".2f"),
                      gain(g.gain_over_centre_px, g.gain_over_centre_ci_low, g.gain_over_centre_ci_high),
                      gain(g.gain_over_probe_px, g.gain_over_probe_ci_low, g.gain_over_probe_ci_high))
    out_console.print(table)
    if report.probe_objects:
        out_console.print(f"ridge probe fitted on {report.probe_objects}", markup=False, highlight=False)
    if report.note:
        out_console.print(report.note, markup=False)
    for what, where in report.outputs.items():
        out_console.print(f"{what}: {where}", markup=False, highlight=False)


units_app = typer.Typer(no_args_is_help=True, help="Single units of a run's layers (the units analysis).")
app.add_typer(units_app, name="units")


@units_app.command("visualise")
def units_visualise_cmd(
    results_dir: Annotated[Path, typer.Argument(help="a results folder made by `shiftlens run`")],
    model: Annotated[str, typer.Option("--model", help="MODEL:LAYER, a layer the run tapped")],
    unit: Annotated[Optional[int], typer.Option(help="the unit to maximise")] = None,
    caricature: Annotated[bool, typer.Option("--caricature", help="exaggerate what the layer detects in one canvas (--patch, --position)")] = False,
    patch: Annotated[Optional[str], typer.Option(help="--caricature: the patch id")] = None,
    position: Annotated[Optional[str], typer.Option(help="--caricature: Y,X, the patch's top-left in px (a grid position)")] = None,
    patch_size: Annotated[Optional[int], typer.Option("--patch-size", help="--caricature: the patch size (default: the run's first)")] = None,
    steps: Annotated[Optional[int], typer.Option(help="optimiser steps (200)")] = None,
    tv_weight: Annotated[Optional[float], typer.Option("--tv-weight", help="total-variation prior weight (15)")] = None,
    size: Annotated[Optional[int], typer.Option(help="image side in px (224)")] = None,
    seed: Annotated[Optional[int], typer.Option(help="seed of the start image and jitter (0)")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "cpu",
) -> None:
    """The image that maximises a unit (activation maximisation with the inversion's priors), or a caricature of a
    canvas, written to RESULTS_DIR/figures/units/ with how far it raised the unit over its random start."""
    pos = None
    if position is not None:
        try:
            y, x = (int(v) for v in position.split(","))
            pos = (y, x)
        except ValueError:
            fail(f"--position {position!r}: give Y,X in pixels, e.g. 40,120")
    with one_line_errors(Path(results_dir), hint="make the results folder writable"):
        from shiftlens.api.units import visualise

        entry, _ = visualise(results_dir, model, unit, as_caricature=caricature, patch=patch, position=pos,
                             patch_size=patch_size, device=device, steps=steps, tv_weight=tv_weight, size=size,
                             seed=seed)
    what = "caricature" if caricature else f"unit {unit}"
    label = " (UNTRAINED weights)" if entry.untrained else ""
    out_console.print(f"{entry.model}:{entry.layer} {what}{label}: {entry.start_value:.4g} at the start image -> "
                      f"{entry.value:.4g} (gain {entry.gain:.1f}x its start size), {entry.seconds:.0f} s; "
                      f"written {Path(results_dir) / entry.file}", markup=False)
    if not caricature and entry.patch is not None:
        out_console.print(f"(noise starts left the unit at 0, so it climbed from the run's canvas that drives it most: "
                          f"{entry.patch} at {entry.position[0]},{entry.position[1]})", markup=False)


def print_arithmetic_plan(p) -> None:
    """What `shiftlens arithmetic` would compute: every check has passed, nothing is computed or written."""
    from shiftlens.analyses.arithmetic.benchmark import scenes_needed

    cfg = p.config
    n_scenes = len(scenes_needed(p.problems, cfg.canvas, cfg.stride))
    models = ", ".join(f"{s.key}:{','.join(s.layers)}" for s in p.models)
    out_console.print(f"plan on {p.device} ({p.precision}): {models}; {len(p.scenes)} scene(s), "
                      f"{len(p.expressions)} expression(s), {len(p.problems)} problem(s) = {n_scenes:,} scenes "
                      f"to render per model; inverter {cfg.inverter}; results would go to {cfg.out}", markup=False,
                      soft_wrap=True)
    for note in p.notes:
        out_console.print(note, markup=False)


def print_plan(p, ips: dict[str, float]) -> None:
    table = Table(title=f"Plan on {p.device} ({p.precision}); measured on a short eager warm-up with random weights")
    for col in ("model", "layers", "patches", "sizes", "positions/patch", "images", "img/s", "estimated time"):
        table.add_column(col)
    total_s = 0.0
    for spec in p.models:
        images = p.images_per_model
        seconds = images / ips[spec.key]
        total_s += seconds
        table.add_row(spec.key, ",".join(spec.layers), str(p.n_patches), " / ".join(map(str, p.config.sizes)),
                      " / ".join(f"{v:,}" for v in p.positions.values()), f"{images:,}", f"{ips[spec.key]:,.0f}",
                      _duration(seconds))
    out_console.print(table)
    for note in p.notes:
        out_console.print(note, markup=False, soft_wrap=True)
    out_console.print(f"total: {p.total_images:,} images, about {_duration(total_s)} on this device; results would "
                      f"go to {p.config.out}", markup=False, soft_wrap=True)
    if p.config.stride > 1:  # what the same run costs at every position, as the paper measured
        from shiftlens.canvases import grid

        c = p.config
        every = sum(len(grid(c.canvas, s, 1, c.protocol, c.shift)[0]) for s in c.sizes) * p.n_patches
        every_s = sum(every / ips[spec.key] for spec in p.models)
        out_console.print(f"at stride 1 (every position, as the paper): {every * len(p.models):,} images, about "
                          f"{_duration(every_s)} on this device")
    if p.config.executor == "ray":
        n = p.config.workers or 8
        out_console.print(f"--executor ray, {n} workers each as fast as this device: about {_duration(total_s / n)} "
                          "at perfect scaling, plus starting the workers and compiling (README, Running on a cluster: "
                          "measured efficiency and start-up)")
    from shiftlens.stream import resolve_compile

    if resolve_compile(p.config.compile, p.device, p.images_per_model):
        out_console.print("models are compiled for this run (--compile auto): expect up to ~2x less on a CPU "
                          "(docs/performance.md), plus some seconds of compiling per model")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def main() -> None:
    try:
        app()
    except ShiftlensError as exc:  # raised outside a command's own handler
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
