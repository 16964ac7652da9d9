"""The package layering: imports (lazy ones included) only go down, modules stay small.

    base (faceforge, allocator, errors, files, interrupts, safe_yaml -> config, registry, device)
      -> data, models, losses -> core -> evaluation -> inference, train -> prepare, serve -> cli

A package may import itself and any package of a lower layer, never one of its own layer or
above. A new package must be placed in :data:`LAYERS` (and in docs/architecture.md).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "faceforge"

LAYERS: list[set[str]] = [
    # base, part 1: nothing of faceforge below
    {"faceforge", "allocator", "errors", "safe_yaml"},
    {"config", "registry", "device", "files", "interrupts"},  # base, part 2: may raise errors
    {"data", "models", "losses"},
    {"core"},
    {"evaluation"},
    {"inference", "train"},
    {"prepare", "serve"},
    {"cli"},
    {"__main__"},  # python -m faceforge
]
LAYER = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    """faceforge.a.b -> "a" (subpackage or top-level module); faceforge -> "faceforge"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "faceforge"


def _imports(path: Path) -> list[str]:
    """Every faceforge module ``path`` imports, at any depth (function bodies included)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.append(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.append(node.module)
    return [name for name in found if name == "faceforge" or name.startswith("faceforge.")]


def package_edges() -> dict[tuple[str, str], list[str]]:
    """(importer unit, imported unit) -> modules where that import happens."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        source = _unit(_module_name(path))
        for target in map(_unit, _imports(path)):
            if target != source:
                edges.setdefault((source, target), []).append(str(path.relative_to(ROOT)))
    return edges


def test_every_package_is_placed_in_a_layer() -> None:
    units = {_unit(_module_name(p)) for p in ROOT.rglob("*.py")}
    assert units <= set(LAYER), f"place these in LAYERS: {sorted(units - set(LAYER))}"


def test_imports_only_go_down_the_layers() -> None:
    upward = [
        f"{source} -> {target} (in {', '.join(sorted(set(where)))})"
        for (source, target), where in package_edges().items()
        if LAYER[target] >= LAYER[source]
    ]
    assert not upward, "imports that do not go down a layer:\n" + "\n".join(upward)


def _reachable(start: str, edges: set[tuple[str, str]]) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        for source, target in edges:
            if source == node and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_no_package_level_import_cycle() -> None:
    edges = set(package_edges())
    units = {unit for edge in edges for unit in edge}
    cycles = sorted(u for u in units if u in _reachable(u, edges))
    assert not cycles, f"packages in an import cycle: {cycles}"


def test_the_cycle_check_sees_lazy_imports(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from faceforge.train.main import train\n")
    tree = ast.parse(path.read_text())
    lazy = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert [n.module for n in lazy] == ["faceforge.train.main"]


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines; split it"
