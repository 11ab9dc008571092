"""Every module imports on its own, no shiftlens module imports another in a cycle (issue 15), and no import runs
back up the data flow (issue 23: a module imports only modules of its own layer or a lower one, LAYERS below).

The cycle check is static (ast), so it also sees imports inside functions, which a fresh-interpreter import would
only hit when the function runs. An import edge goes to the module named: `from shiftlens.models import zoo` is an
edge to `shiftlens.models.zoo`, `from shiftlens.models import custom` one to the package `shiftlens.models`. The
implicit import of a parent package's `__init__` is not an edge (else every package that imports its own
submodules, as timm does, would be a cycle).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import shiftlens

ROOT = Path(next(iter(shiftlens.__path__)))


def module_names() -> dict[str, Path]:
    """{dotted name: file} for every module of the package (`__init__.py` is its package's name)."""
    names = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = ("shiftlens", *path.relative_to(ROOT).with_suffix("").parts)
        if "assets" in parts:  # the site's hand-written assets are data, not modules
            continue
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _is_package(name: str, path: Path) -> bool:
    return path.name == "__init__.py" or name == "shiftlens"


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The shiftlens modules `name` imports anywhere in its file (module level or inside functions)."""
    package = name if _is_package(name, path) else name.rpartition(".")[0]
    edges: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            edges |= {a.name for a in node.names if a.name.split(".")[0] == "shiftlens"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "shiftlens":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                edges.add(sub if sub in known else target)
    return {e for e in edges if e in known and e != name}


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    known = set(modules) | {"shiftlens"}
    return {name: imported_modules(name, path, known) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path [a, b, ..., a], or None (depth-first search, three colours)."""
    colour = {n: 0 for n in graph}  # 0 unseen, 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt, 2) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if colour.get(nxt) == 0 and (found := visit(nxt)):
                return found
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if colour[node] == 0 and (found := visit(node)):
            return found
    return None


def all_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component that has one, so the message names every knot at once."""
    cycles, remaining = [], {n: set(e) for n, e in graph.items()}
    while (cycle := find_cycle(remaining)) is not None:
        cycles.append(cycle)
        remaining[cycle[0]].discard(cycle[1])  # break this knot at one edge and look for the next
    return cycles


LAYERS: list[tuple[str, ...]] = [
    ("shiftlens", "errors", "config", "progress"),  # the leaves (and the namespace package itself)
    ("store",),  # the results schema every later stage writes through and reads back; knows no experiment
    ("patches",),
    ("canvases",),
    ("scenes",),  # multi-object canvases
    ("models",),
    ("stream",),
    ("executors",),  # where parts are computed: the stream, never the analyses or the API that calls them
    ("inversion",),  # pre-images through a model's taps
    ("analyses", "paper"),  # every analysis's computation and tables, Experiment 3's (analyses/arithmetic/) too
    ("maps", "figures"),  # figures/NAME.py: an analysis's figure makers
    ("api",),  # what the CLI wraps: `run`, and api/NAME.py for an analysis's own operations (units, arithmetic)
    ("site",),  # site/NAME.py: an analysis's own page and its data
    ("leaderboard",),  # a view over ordinary run folders, each with its own site
    ("cli", "__main__"),
]
"""The data flow's layers, lowest first; each entry names top-level modules or packages of shiftlens. Written out
in docs/ARCHITECTURE.md as well."""


def layer_of(module: str) -> int:
    """The layer of a dotted shiftlens module name: that of its top-level module or package."""
    top = module.split(".")[1] if "." in module else module
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise KeyError(f"{module}: place its top-level name {top!r} in LAYERS (tests/test_imports.py and "
                   "docs/ARCHITECTURE.md)")


def upward_imports(graph: dict[str, set[str]], layer=layer_of) -> list[str]:
    """Every import from a lower layer to a higher one, as `a -> b`."""
    return sorted(f"{a} -> {b}" for a, edges in graph.items() for b in edges if layer(b) > layer(a))


def test_the_layer_check_refuses_an_import_up_the_flow_and_only_that():
    graph = {"shiftlens.store": {"shiftlens.analyses.arithmetic.config"}, "shiftlens.api.arithmetic": {"shiftlens.store"},
             "shiftlens.canvases.paste": {"shiftlens.canvases.background", "shiftlens.patches.patch"}}
    assert upward_imports(graph) == ["shiftlens.store -> shiftlens.analyses.arithmetic.config"]
    with pytest.raises(KeyError, match="place its top-level name 'newthing'"):
        layer_of("shiftlens.newthing.x")


def test_every_module_has_a_layer():
    for name in module_names():
        layer_of(name)


def test_no_import_runs_back_up_the_data_flow():
    upward = upward_imports(import_graph())
    assert not upward, "imports from a lower layer to a higher one (LAYERS): " + "; ".join(upward)


def test_the_layers_in_the_docs_are_the_tests():
    """docs/ARCHITECTURE.md writes the same order, one layer per `→`, modules of a layer joined by `/`."""
    doc = (Path(__file__).parents[1] / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    line = next(l for l in doc.splitlines() if l.startswith("Layers (lowest first):"))
    written = [tuple(n.strip(" `.") for n in step.split("/")) for step in line.partition(":")[2].split("→")]
    assert written == LAYERS


def test_the_cycle_finder_finds_cycles_and_only_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None  # a diamond is no cycle


def test_the_graph_sees_function_level_and_relative_imports(tmp_path):
    mod = tmp_path / "m.py"
    mod.write_text("from .zoo import X\n\ndef f():\n    from shiftlens.models import registry, custom\n")
    known = {"shiftlens.models", "shiftlens.models.registry", "shiftlens.models.zoo"}
    assert imported_modules("shiftlens.models.m", mod, known) == known


def test_no_import_cycle_among_shiftlens_modules():
    cycles = all_cycles(import_graph())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_model_registry_is_a_leaf():
    graph = import_graph()
    assert not {m for m in graph["shiftlens.models.registry"] if m.startswith("shiftlens.models")}


def test_every_module_imports_on_its_own():
    """Each module in a fresh interpreter state: one subprocess, shiftlens dropped from sys.modules between modules
    (heavy third-party imports such as torch stay loaded, which is what makes one process enough)."""
    names = sorted(n for n in module_names() if n != "shiftlens.__main__")  # that one runs the CLI: see below
    script = (
        "import importlib, sys, traceback\n"
        "failed = []\n"
        f"for name in {names!r}:\n"
        "    for key in [k for k in sys.modules if k == 'shiftlens' or k.startswith('shiftlens.')]:\n"
        "        del sys.modules[key]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {exc.__class__.__name__}: {exc}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"modules that do not import on their own:\n{proc.stdout}{proc.stderr[-2000:]}"


def test_the_package_runs_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "shiftlens", "--help"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "models" in proc.stdout, proc.stderr[-2000:]


@pytest.mark.parametrize("name", ["shiftlens.models.registry", "shiftlens.models.specs", "shiftlens.stream"])
def test_a_models_module_imported_first_sees_the_builtins(name):
    """Importing any models module runs the package's __init__, which registers the built-ins (no lazy hook)."""
    code = (f"import importlib; importlib.import_module({name!r})\n"
            "from shiftlens.models.registry import REGISTRY, SPEC_RESOLVERS\n"
            "assert 'alexnet' in REGISTRY and {'torchvision', 'timm'} <= set(SPEC_RESOLVERS), (sorted(REGISTRY), SPEC_RESOLVERS)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
