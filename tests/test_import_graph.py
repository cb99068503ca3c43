"""The floors of the package: imports run one way, down, and no two modules import each other.

    pipeline                      what the DAGs are and where they run, the CLI, the loop
    components  serving  reports  executors and Beam jobs | the online path | HTML pages
    schemas                       contracts every stage reads (the ground floor)

A module may import its own package and any package on a lower floor. Packages on the same
floor stand apart: components, serving and reports never import one another (serving reads
schemas only; reports draws what its callers measured, so it imports schemas only, and only
pipeline calls it). `tandem/__init__.py` sits below everything and imports none of it.

Every `tandem.*` import counts, wherever it is written (module level or inside a function)
and however (absolute or relative). Importing a submodule is counted as importing that module
only, not its parent packages' __init__ (Python runs them, but they hold no logic here).
"""

from __future__ import annotations

import ast
import importlib.util
import os
from collections import defaultdict

import tandem

# The floors, written once: lower numbers are lower floors.
LAYERS = {"schemas": 0, "components": 1, "serving": 1, "reports": 1, "pipeline": 2}
ROOT_LAYER = -1  # the package's own __init__.py


def _modules() -> dict[str, str]:
    """Every module of the installed package's source folders: dotted name -> file."""
    found = {"tandem": tandem.__file__}
    for package in LAYERS:
        spec = importlib.util.find_spec(f"tandem.{package}")
        for folder in spec.submodule_search_locations:
            for dirpath, dirnames, filenames in os.walk(folder):
                dirnames[:] = [d for d in dirnames if d != "__pycache__"]
                for filename in filenames:
                    if not filename.endswith(".py"):
                        continue
                    rel = os.path.relpath(os.path.join(dirpath, filename), folder)[:-3]
                    parts = [p for p in rel.split(os.sep) if p != "__init__"]
                    found[".".join(["tandem", package, *parts])] = os.path.join(dirpath, filename)
    return found


def _imported_names(module: str, path: str) -> list[tuple[str, int]]:
    """Every dotted name an import statement in the file could refer to, with its line."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = module.split(".") if path.endswith("__init__.py") else module.split(".")[:-1]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, `level - 1` steps up
                base = package[:len(package) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names.append((source, node.lineno))
            names += [(f"{source}.{alias.name}", node.lineno) for alias in node.names]
    return names


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    """module -> the tandem modules it imports; and the imports of unknown tandem names."""
    modules = _modules()
    edges: dict[str, set[str]] = defaultdict(set)
    unknown = []
    for module, path in modules.items():
        for name, line in _imported_names(module, path):
            if name != "tandem" and not name.startswith("tandem."):
                continue
            parts = name.split(".")
            target = next((".".join(parts[:i]) for i in range(len(parts), 0, -1)
                           if ".".join(parts[:i]) in modules), None)
            if target is None or (target == "tandem" and name != "tandem"):
                unknown.append(f"{path}:{line} imports {name}, which is no tandem module")
            elif target != module:
                edges[module].add(target)
    return edges, unknown


def _layer(module: str) -> tuple[str, int]:
    if module == "tandem":
        return "tandem", ROOT_LAYER
    package = module.split(".")[1]
    return package, LAYERS[package]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_every_tandem_import_names_a_module_of_the_package():
    _, unknown = _graph()
    assert unknown == []


def test_imports_run_down_the_floors_and_never_between_neighbours():
    edges, _ = _graph()
    wrong = []
    for module, targets in sorted(edges.items()):
        package, layer = _layer(module)
        for target in sorted(targets):
            target_package, target_layer = _layer(target)
            if target_package != package and target_layer >= layer:
                wrong.append(f"{module} (floor {layer}) imports {target} (floor {target_layer})")
    assert wrong == []


def test_no_two_modules_import_each_other():
    edges, _ = _graph()
    assert _cycles(edges) == []


def test_the_graph_sees_the_whole_package():
    """The walk found the folders (an empty graph would pass the checks above)."""
    edges, _ = _graph()
    packages = {_layer(m)[0] for m in edges} | {_layer(t)[0] for ts in edges.values() for t in ts}
    assert set(LAYERS) <= packages
