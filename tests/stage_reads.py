"""What each pipeline stage reads, for the dvc.yaml completeness test (tests/test_plugin_env.py).

Two sources, each chosen for being hard to fool:

- **Code** — static: the project modules a stage module imports, transitively, from every import
  statement anywhere in them (function-level imports included; ``if TYPE_CHECKING`` blocks not).
  Static analysis over-approximates (a module imported for one teacher kind counts for all),
  which is the safe direction for a dependency list. What it cannot see is code reached through
  the environment registry; that is recorded while the stage runs (below).
- **Params, templates, environment code** — recorded while the stage really runs (``recording``):
  every field read on the Params tree (a patched ``__getattribute__`` on its pydantic classes, so
  reads through any alias — ``params.student`` handed to the student's constructor — count; a
  dict field read by key counts as that key, ``loop.iterations.1``), every template the prompt
  layer looks up (found or not: a missing environment override is a dependency too), and every
  use of an environment's registered factories or oracle. A copy of a section (``model_copy``)
  reads as the section. Reads made inside ``leap.tracking`` do
  not count: MLflow is a side channel, not a DVC output. ``model_dump``/``fingerprint`` read no
  field this way; the stages only use them for journal keys and MLflow.
"""

from __future__ import annotations

import ast
import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"

# Modules no stage's dvc deps need to list: the CLI that dispatches, config (params.yaml values are
# tracked key by key under `params:`), paths (where, not what: deps/outs name the files) and
# tracking (MLflow, a side channel).
NOT_DEPS = {"leap", "leap.__main__", "leap.cli", "leap.config", "leap.paths", "leap.tracking"}


# ---------------------------------------------------------------- code: static imports


def module_file(mod: str) -> Path | None:
    base = SRC / Path(*mod.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def imports_of(mod: str) -> set[str]:
    """Project modules ``mod`` imports (``from leap import x`` counts as ``leap.x`` when x is one)."""
    path = module_file(mod)
    assert path is not None, mod
    out: set[str] = set()
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                out.update(a.name for a in child.names if a.name.split(".")[0] == "leap")
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    target = ".".join([*base, child.module] if child.module else base)
                else:
                    target = child.module or ""
                if target.split(".")[0] != "leap":
                    continue
                out.add(target)
                for a in child.names:
                    if module_file(f"{target}.{a.name}") is not None:
                        out.add(f"{target}.{a.name}")
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    # Importing a.b.c runs a/__init__ and a/b/__init__ too.
    for m in list(out):
        parts = m.split(".")
        out.update(".".join(parts[:k]) for k in range(1, len(parts)))
    return {m for m in out if module_file(m) is not None}


@functools.cache
def closure(mod: str) -> frozenset[str]:
    seen: set[str] = set()
    todo = [mod]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        if m not in NOT_DEPS:  # config's own imports (the registry, for validation) are not the stage's
            todo.extend(imports_of(m) - seen)
    return frozenset(seen)


def code_deps(stage_module: str) -> set[str]:
    """Repo paths of the project modules a stage module runs (less NOT_DEPS), its packages' too."""
    parts = stage_module.split(".")
    mods = set(closure(stage_module)) | {".".join(parts[:k]) for k in range(1, len(parts))}
    return {str(module_file(m).relative_to(REPO)) for m in mods - NOT_DEPS}  # type: ignore[union-attr]


# ---------------------------------------------------------------- params, templates, env code: recorded


@dataclass
class Reads:
    params: set[str] = field(default_factory=set)
    templates: set[str] = field(default_factory=set)  # template names, e.g. "cats/student_system.j2"
    env_code: set[str] = field(default_factory=set)  # environments whose factories or oracle ran


class _State:
    current: Reads | None = None
    paused: int = 0
    paths: dict[int, str] = {}  # noqa: RUF012  (id of a model in the params tree -> its dotted path)


class _RecordingDict(dict):
    """A dict field: a read by key records ``path.key``; anything else records the whole field."""

    def __init__(self, data: dict, path: str) -> None:
        super().__init__(data)
        self._path = path

    def __getitem__(self, k: Any) -> Any:
        _record(f"{self._path}.{k}")
        return super().__getitem__(k)

    def get(self, k: Any, default: Any = None) -> Any:
        _record(f"{self._path}.{k}")
        return super().get(k, default)

    def _whole(self) -> None:
        _record(self._path)

    def __iter__(self):  # type: ignore[no-untyped-def]
        self._whole()
        return super().__iter__()

    def __contains__(self, k: object) -> bool:
        self._whole()
        return super().__contains__(k)

    def __len__(self) -> int:
        self._whole()
        return super().__len__()

    def keys(self):  # type: ignore[no-untyped-def]
        self._whole()
        return super().keys()

    def items(self):  # type: ignore[no-untyped-def]
        self._whole()
        return super().items()

    def values(self):  # type: ignore[no-untyped-def]
        self._whole()
        return super().values()


def _record(key: str) -> None:
    if _State.current is not None and not _State.paused:
        _State.current.params.add(key)


def _walk(model: BaseModel, path: str, classes: set[type]) -> None:
    _State.paths[id(model)] = path
    classes.add(type(model))
    children = {name: model.__dict__.get(name) for name in type(model).model_fields}
    children.update(model.__pydantic_extra__ or {})
    for name, value in children.items():
        if isinstance(value, BaseModel):
            _walk(value, f"{path}.{name}" if path else name, classes)


def _patch_class(mp: pytest.MonkeyPatch, cls: type) -> None:
    original = cls.__getattribute__

    def getattribute(self: Any, name: str) -> Any:
        value = original(self, name)
        if _State.current is None or _State.paused or name.startswith("_"):
            return value
        path = _State.paths.get(id(self))
        if path is None or name not in type(self).model_fields:
            return value
        key = f"{path}.{name}" if path else name
        if isinstance(value, BaseModel):
            return value  # a section: the fields read from it are recorded
        if isinstance(value, dict):
            return _RecordingDict(value, key)
        _record(key)
        return value

    mp.setattr(cls, "__getattribute__", getattribute)


def _paused(fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _State.paused += 1
        try:
            return fn(*args, **kwargs)
        finally:
            _State.paused -= 1

    return wrapper


STAGES = (
    "prepare",
    "demos",
    "aggregate",
    "train",
    "rollout",
    "correct",
    "realize",
    "evaluate",
    "baseline",
    "report",
)


@contextlib.contextmanager
def recording(log: dict[str, Reads]) -> Iterator[None]:
    """While active, each `leap.stages.<x>.run(params, i)` call records into ``log["x@i"]``."""
    import importlib

    import leap.envs.base as envs_base
    import leap.tracking as tracking
    from leap import prompts

    mp = pytest.MonkeyPatch()
    patched: set[type] = set()

    def track(model: BaseModel, path: str) -> None:
        classes: set[type] = set()
        _walk(model, path, classes)
        for cls in classes - patched:
            _patch_class(mp, cls)
            patched.add(cls)

    model_copy = BaseModel.model_copy

    def copied(self: BaseModel, *args: Any, **kwargs: Any) -> Any:
        # A copy of a params section (``tp.local.model_copy(update=...)``) is read as the section.
        out = model_copy(self, *args, **kwargs)
        path = _State.paths.get(id(self))
        if path is not None and _State.current is not None:
            track(out, path)
        return out

    mp.setattr(BaseModel, "model_copy", copied)

    def wrap(name: str, run: Any) -> Any:
        @functools.wraps(run)
        def recorded(params: Any, *args: Any, **kwargs: Any) -> Any:
            iteration = args[0] if args else kwargs.get("iteration")
            label = name if iteration is None else f"{name}@{iteration}"
            _State.paths = {}
            track(params, "")
            prompts.jinja_env().cache.clear()  # every template is looked up again
            _State.current = log.setdefault(label, Reads())
            try:
                return run(params, *args, **kwargs)
            finally:
                _State.current = None

        return recorded

    for name in STAGES:
        module = importlib.import_module(f"leap.stages.{name}")
        mp.setattr(module, "run", wrap(name, module.run))
    for name in dir(tracking):
        obj = getattr(tracking, name)
        if callable(obj) and getattr(obj, "__module__", "") == "leap.tracking" and not isinstance(obj, type):
            mp.setattr(tracking, name, _paused(obj))

    template_path = prompts.template_path

    def recorded_template(name: str) -> Path:
        if _State.current is not None:
            _State.current.templates.add(name)
        return template_path(name)

    mp.setattr(prompts, "template_path", recorded_template)
    for part in ("env", "task_source", "oracle_fn"):
        original = getattr(envs_base.EnvSpec, part)

        def used(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            if _State.current is not None:
                _State.current.env_code.add(self.name)
            return _original(self, *args, **kwargs)

        mp.setattr(envs_base.EnvSpec, part, used)
    try:
        yield
    finally:
        mp.undo()
        _State.current = None
