"""The package's floor plan: no import circle and no upward import, function-local imports included.

Each top-level unit of ``src/classwise`` (a module, or a subpackage as a whole) has a floor; a unit may
import only from lower floors (and within itself). The floors mirror the pipeline
(data -> models -> attacks -> per-sample results -> analysis -> report); docs/architecture.md
draws the same plan.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "classwise"

FLOORS = [
    {"errors", "progress", "presets", "machine", "__init__"},
    {"fileio", "inputs", "spec"},
    {"config", "results", "runfiles"},
    {"data", "models", "config_keys"},
    {"checkpoint"},
    {"runs", "analysis"},
    {"attacks", "perf", "evalstate"},
    {"evaluate", "probes", "identity"},
    {"train", "report"},
    {"jobs", "compare"},
    {"homing", "pipeline"},
    {"cli"},
    {"__main__"},
]
FLOOR = {unit: i for i, units in enumerate(FLOORS) for unit in units}


def _module(path: Path) -> tuple[str, bool]:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    is_pkg = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_pkg else parts), is_pkg


def _targets(module: str, is_pkg: bool, node: ast.AST) -> list[str]:
    """The classwise modules an import statement names (relative imports resolved)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    assert isinstance(node, ast.ImportFrom)
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    if node.level:
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [target] + [f"{target}.{a.name}" for a in node.names]


def import_graph() -> dict[str, set[str]]:
    """Module -> the classwise modules it imports anywhere in its file (local imports too)."""
    files = {_module(p): p for p in SRC.rglob("*.py")}
    names = {m for m, _ in files}
    graph: dict[str, set[str]] = {m: set() for m in names}
    for (module, is_pkg), path in files.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(module, is_pkg, node):
                    while target and target not in names:
                        target = target.rpartition(".")[0]
                    if target.startswith("classwise") and target != module and not module.startswith(target + "."):
                        graph[module].add(target)
    return graph


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_unit_has_a_floor():
    units = {_unit(m) for m in import_graph()}
    assert units <= set(FLOOR), f"give these units a floor: {sorted(units - set(FLOOR))}"


def test_no_upward_import():
    upward = sorted(f"{m} -> {t}" for m, targets in import_graph().items() for t in targets
                    if _unit(m) != _unit(t) and FLOOR[_unit(t)] >= FLOOR[_unit(m)])
    assert not upward, "imports that run upward or sideways:\n" + "\n".join(upward)


def test_no_import_circle():
    graph = import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
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
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_the_checks_see_a_planted_upward_import(tmp_path, monkeypatch):
    """The walk reads function-local imports: a lazy import of the CLI from data/ is caught."""
    import shutil

    copy = tmp_path / "classwise"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "data" / "planted.py").write_text("def f():\n    from ..cli import main\n    return main\n")
    monkeypatch.setattr(__import__(__name__), "SRC", copy)
    upward = [t for t in import_graph()["classwise.data.planted"] if FLOOR[_unit(t)] >= FLOOR["data"]]
    assert upward == ["classwise.cli"]
