"""The dependency rules of DESIGN.md, read from the imports (every import statement, function-level
ones included; ``if TYPE_CHECKING`` blocks excluded)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in sorted(SRC.rglob("*.py"))}


def _imports(path: Path) -> dict[str, int]:
    """Explicit imports of ``path``: module name -> first line (``from leap import x`` counts as
    ``leap.x`` when x is a module; third-party packages by their top-level name)."""
    mod = _module(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out: dict[str, int] = {}

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and getattr(child.test, "id", getattr(child.test, "attr", "")) == (
                "TYPE_CHECKING"
            ):
                continue
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    target = ".".join([*base, child.module] if child.module else base)
                else:
                    target = child.module or ""
                subs = [f"{target}.{a.name}" for a in child.names if f"{target}.{a.name}" in MODULES]
                names = subs if subs and len(subs) == len(child.names) else [target, *subs]
            for name in names:
                out.setdefault(name if name.startswith("leap") else name.split(".")[0], child.lineno)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return out


GRAPH = {mod: _imports(path) for mod, path in MODULES.items()}


def _in(mod: str, package: str) -> bool:
    return mod == package or mod.startswith(package + ".")


def _violations(importers: str | None, forbidden: list[str], *, allow: tuple[str, ...] = ()) -> list[str]:
    out = []
    for mod, deps in GRAPH.items():
        if (importers is not None and not _in(mod, importers)) or mod in allow:
            continue
        for dep, line in deps.items():
            if any(_in(dep, f) for f in forbidden) and not (
                importers is None and _in(mod, dep.split(".")[0])
            ):
                out.append(f"{MODULES[mod].relative_to(SRC)}:{line} imports {dep}")
    return out


def test_records_imports_nothing_of_the_project() -> None:
    assert [d for d in GRAPH["leap.records"] if _in(d, "leap")] == []


def test_the_agent_vocabulary_imports_only_records() -> None:
    assert {d for d in GRAPH["leap.agent"] if _in(d, "leap")} == {"leap.records"}


@pytest.mark.parametrize(
    ("importers", "forbidden"),
    [
        ("leap.envs", ["leap.teachers", "leap.students", "leap.stages", "leap.tracking", "leap.cli"]),
        ("leap.students", ["leap.envs", "leap.teachers", "leap.stages", "leap.tracking", "leap.cli"]),
        ("leap.teachers", ["leap.stages", "leap.tracking", "leap.cli"]),
        ("leap.prompts", ["leap.envs", "leap.teachers", "leap.students", "leap.stages", "leap.cli"]),
    ],
)
def test_layers_import_nothing_above_them(importers: str, forbidden: list[str]) -> None:
    assert _violations(importers, forbidden) == []


def test_only_the_cli_imports_stages() -> None:
    outside = [m for m in GRAPH if not _in(m, "leap.stages") and m != "leap.cli"]
    bad = [f"{m} imports {d}" for m in outside for d in GRAPH[m] if _in(d, "leap.stages")]
    assert bad == []


def test_only_tracking_imports_mlflow() -> None:
    bad = [f"{m}:{line}" for m, deps in GRAPH.items() for d, line in deps.items() if d == "mlflow"]
    assert bad == ["leap.tracking:" + str(GRAPH["leap.tracking"]["mlflow"])]


def test_no_import_cycle() -> None:
    """Tarjan's strongly connected components over the project's import graph."""
    graph = {m: [d for d in deps if d in MODULES] for m, deps in GRAPH.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            connect(v)
    assert cycles == []


def test_the_rules_see_a_violation() -> None:
    """The checks are not vacuous: an env module importing a teacher is caught, a cycle is found."""
    GRAPH["leap.envs.toy"]["leap.teachers.oracle"] = 1
    GRAPH["leap.records"]["leap.agent"] = 1
    try:
        assert _violations("leap.envs", ["leap.teachers"]) == [
            "leap/envs/toy/__init__.py:1 imports leap.teachers.oracle"
        ]
        with pytest.raises(AssertionError):
            test_no_import_cycle()
    finally:
        del GRAPH["leap.envs.toy"]["leap.teachers.oracle"], GRAPH["leap.records"]["leap.agent"]
