"""Every third-party package the code imports is a declared dependency of the project."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

REPO = Path(__file__).resolve().parents[1]
# Imported only behind an optional extra, declared there.
OPTIONAL = {"bitsandbytes": "gpu"}


def _imports() -> dict[str, str]:
    out: dict[str, str] = {}
    for path in sorted((REPO / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "leap":
                    out.setdefault(top, str(path.relative_to(REPO)))
    return out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_package_is_declared() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {_norm(re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0]) for d in project["dependencies"]}
    extras = {
        extra: {_norm(re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0]) for d in deps}
        for extra, deps in project["optional-dependencies"].items()
    }
    dists = importlib.metadata.packages_distributions()
    missing = []
    for module, where in _imports().items():
        names = {_norm(d) for d in dists.get(module, [module])}
        allowed = extras.get(OPTIONAL[module], set()) if module in OPTIONAL else declared
        if not names & allowed:
            missing.append(f"{module} (imported in {where}; distribution {sorted(names)})")
    assert not missing, "undeclared dependencies:\n  " + "\n  ".join(missing)
