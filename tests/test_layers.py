"""The layers of the tree: nothing imports a layer above its own, and no modules import each other in a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import vlmrl

ROOT = Path(vlmrl.__file__).parent
LAYERS = {"infra": 0, "presets": 0, "games": 1, "policy": 2, "algos": 2, "tiny": 3, "evaluation": 4, "recipes": 5}
"""Lower first; a module may import its own layer and those below (the command line, cli.py, sits on top)."""
TOP = 6


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every vlmrl module the file imports, at the top or inside a function (lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] == "vlmrl"}


def layer_of(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], TOP) if len(parts) > 1 else TOP


GRAPH = {module_name(path): imports_of(path) for path in sorted(ROOT.rglob("*.py"))}
MODULES = set(GRAPH)


def test_every_subpackage_has_a_layer():
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")}
    assert packages == set(LAYERS), "give a new subpackage its place in LAYERS (and the README's layout)"


def test_nothing_imports_a_layer_above_its_own():
    upward = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if target in MODULES and layer_of(target) > layer_of(module)
    ]
    assert upward == []


def test_no_import_cycle_between_modules():
    edges = {module: {t for t in targets if t in MODULES and t != module} for module, targets in GRAPH.items()}
    # a package's __init__ naming its own modules is how a package exports them, not a cycle
    edges = {m: {t for t in ts if not m.startswith(t + ".") and not t.startswith(m + ".")} for m, ts in edges.items()}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module) :] + [module]))
        if module in done:
            return
        for target in sorted(edges[module]):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(edges):
        visit(module, [])
