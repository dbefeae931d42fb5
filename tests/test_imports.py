"""The import graph of mtadv (data_utils/ as mtadv.data_utils) has no cycles, and its lower layers import
only from below them.

Built with `ast` from every `import mtadv...` / `from mtadv... import` (and data_utils' relative imports),
at module level and inside functions: a function-level import still runs, so it is an edge like any
other. Importing `a.b.c` runs `a.b` too, so it is an edge to every package on the way. Left out: imports
under `if TYPE_CHECKING:` (annotations; they never run) and imports by name through importlib (the
auto-imports of mtadv/adversarial/, mtadv/attacks/ and mtadv/tasks/, mtadv.taskdef.TASK_TYPES'
discovery of mtadv/tasks/, and mtadv.registries' ADV_METHODS and ATTACKS discovering mtadv/adversarial/
and mtadv/attacks/): those load plug-in folders whose modules register themselves, they do not use a
name from them.

A function-level import is allowed only to keep a module light to import (the commands' --help, `import
mtadv`, a YAML parser that need not load torch), and says so with the marker `# light-import: <why>` on
its line or the line above. One that is there to dodge a cycle is the cycle, and fails here.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROOTS = {"mtadv": REPO / "mtadv", "mtadv.data_utils": REPO / "data_utils"}
MARKER = re.compile(r"#\s*light-import:\s*\S")

# Bottom to top: what a layer's modules may import (their own layer included). Everything above
# mtadv.tasks (model, adversarial, attacks, trainer, build, predict, hf, cli) may import any of these.
# mtadv.config reads the method and attack registries (mtadv.registries), never the packages that fill
# them: those import mtadv.config for their settings.
LAYERS = {
    "mtadv.errors": (),
    "mtadv.registry": (),
    "mtadv.taskdef": ("mtadv.errors", "mtadv.registry", "mtadv.losses"),
    "mtadv.data_utils": ("mtadv.errors", "mtadv.registry", "mtadv.taskdef", "mtadv.data_utils"),
    "mtadv.evaluate": ("mtadv.data_utils", "mtadv.taskdef"),
    "mtadv.distributed": ("mtadv.data_utils", "mtadv.evaluate"),
    "mtadv.bundled": ("mtadv.errors",),
    "mtadv.registries": ("mtadv.registry",),
    "mtadv.config": ("mtadv.errors", "mtadv.registry", "mtadv.registries", "mtadv.bundled"),
    "mtadv.tasks": (
        "mtadv.errors",
        "mtadv.registry",
        "mtadv.taskdef",
        "mtadv.data_utils",
        "mtadv.evaluate",
        "mtadv.distributed",
        "mtadv.tasks",
    ),
}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (the longest prefix that is one)
    line: int
    lazy: bool  # inside a function
    marked: bool  # carries the light-import marker


def module_files() -> dict[str, Path]:
    out = {}
    for prefix, root in ROOTS.items():
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            out[".".join((prefix, *parts))] = path
    return out


MODULES = module_files()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    skip = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def _function_nodes(tree: ast.Module) -> set[int]:
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inside |= {id(n) for stmt in ast.iter_child_nodes(node) for n in ast.walk(stmt)}
    return inside


def imports_of(module: str) -> list[Import]:
    path = MODULES[module]
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = ast.parse(text)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    skip, lazy = _type_checking_nodes(tree), _function_nodes(tree)
    out = []
    for node in ast.walk(tree):
        if id(node) in skip or not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:  # relative: data_utils' `from .tokenize import ...`
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        text_of = "\n".join(lines[max(0, node.lineno - 2) : node.end_lineno])
        for name in names:
            target = _resolve(name) if name.split(".")[0] == "mtadv" else None
            if target and target != module:
                out.append(Import(module, target, node.lineno, id(node) in lazy, bool(MARKER.search(text_of))))
    return out


def edges() -> dict[str, set[str]]:
    """module -> the modules importing it runs (each target and the packages above it)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for imp in imports_of(module):
            name = imp.target
            while name:
                if not imp.source.startswith(name + "."):
                    graph[module].add(name)  # (a package the importer is inside of is being imported already)
                name = name.rpartition(".")[0] if "." in name else ""
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _path(graph: dict[str, set[str]], component: list[str]) -> str:
    """One cycle through the component, for the failure message: a -> b -> ... -> a."""
    start, inside = component[0], set(component)
    trail, seen = [start], {start}
    while True:
        step = sorted(w for w in graph[trail[-1]] if w in inside)
        nxt = next((w for w in step if w == start), None) or next((w for w in step if w not in seen), step[0])
        trail.append(nxt)
        if nxt in seen:
            return " -> ".join(trail[trail.index(nxt) :])
        seen.add(nxt)


def test_the_graph_sees_every_module_and_known_edges():
    """A sanity check of the parser itself: top-level, function-level, relative and parent-package edges."""
    graph = edges()
    assert {"mtadv.tasks.labeled", "mtadv.tasks.mlm", "mtadv.data_utils.readers", "mtadv.trainer"} <= set(graph)
    assert "mtadv.tasks.base" in graph["mtadv.tasks.labeled"] and "mtadv.tasks" not in graph["mtadv.tasks.labeled"]
    assert "mtadv.data_utils.tokenize" in graph["mtadv.data_utils.collate"]  # from .tokenize import ...
    assert {"mtadv.adversarial.perturb", "mtadv.adversarial"} <= graph["mtadv.trainer"]  # and its package
    assert "mtadv.build" in graph["mtadv.cli"]  # function-level
    assert "mtadv.config" not in graph["mtadv.tasks.base"]  # under TYPE_CHECKING


def test_function_level_imports_are_marked_light_imports():
    unmarked = sorted(
        {
            f"{MODULES[i.source].relative_to(REPO)}:{i.line} imports {i.target}"
            for m in MODULES
            for i in imports_of(m)
            if i.lazy and not i.marked
        }
    )
    assert not unmarked, (
        "function-level imports without `# light-import: <why>`; move them to the top of the module, or, if one "
        f"is there to avoid a cycle, break the cycle: {unmarked}"
    )


def test_mtadv_has_no_import_cycles():
    graph = edges()
    found = [_path(graph, c) for c in cycles(graph)]
    assert not found, f"import cycles (each layer may import only from layers below it): {found}"


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_lower_layers_import_only_from_below(layer):
    allowed = LAYERS[layer]
    wrong = sorted(
        {
            f"{MODULES[i.source].relative_to(REPO)}:{i.line} imports {i.target}"
            for m in MODULES
            if m == layer or m.startswith(layer + ".")
            for i in imports_of(m)
            if not any(i.target == a or i.target.startswith(a + ".") for a in allowed)
        }
    )
    assert not wrong, f"{layer} may import only {list(allowed) or 'nothing of mtadv'}: {wrong}"
