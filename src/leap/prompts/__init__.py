"""The prompt layer: one Jinja environment for every template the project renders.

Template names are paths: ``student.j2``, ``format.j2``, ``teacher/correct.j2`` and
``default/student_system.j2`` are shared and live here; ``<env>/<file>`` is environment
``<env>``'s own template, found in the directory its registration names
(``leap.envs.base.register(prompts_dir=...)``) or, for the environments that ship with leap,
in ``leap/envs/<env>/prompts/`` (found without importing the environment).

Undefined variables raise (StrictUndefined). Blocks trim the newline after them and strip the
indentation before them (``trim_blocks``/``lstrip_blocks``); a template that needs that
whitespace marks the tag with ``+``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jinja2
import yaml

ROOT = Path(__file__).resolve().parent
ENVS_ROOT = ROOT.parent / "envs"  # leap's own environments: envs/<name>/prompts/
SHARED_DIRS = ("default", "teacher")  # subdirectories of ROOT; no environment may take these names

_ENV_DIRS: dict[str, Path] = {}


def set_env_templates(env: str, directory: str | Path) -> None:
    """Environment ``env``'s templates are in ``directory`` (called by the environment registry)."""
    if env in SHARED_DIRS:
        raise ValueError(f"'{env}' names a shared template directory; choose another environment name")
    _ENV_DIRS[env] = Path(directory)
    jinja_env().cache.clear()  # type: ignore[union-attr]


def template_path(name: str) -> Path:
    """The file template ``name`` is read from (it may not exist)."""
    head, sep, rest = name.partition("/")
    if sep and head not in SHARED_DIRS:
        return _ENV_DIRS.get(head, ENVS_ROOT / head / "prompts") / rest
    return ROOT / name


def _source(name: str) -> tuple[str, str, Any] | None:
    path = template_path(name)
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    return text, str(path), lambda: True


def exists(name: str) -> bool:
    return template_path(name).is_file()


def _pretty(value: Any) -> str:
    # YAML reads better than JSON for nested facts and keeps lists compact.
    text = yaml.safe_dump(value, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)
    return "\n".join("  " + line for line in text.rstrip().splitlines())


@functools.lru_cache(maxsize=1)
def jinja_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_source),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        autoescape=False,
    )
    env.filters["pretty"] = _pretty
    return env


def get_template(name: str) -> jinja2.Template:
    return jinja_env().get_template(name)


def render(name: str, **variables: object) -> str:
    return get_template(name).render(**variables).strip()


def for_env(env: str, name: str, fallback: str) -> str:
    """``<env>/<name>`` when environment ``env`` has that template, else ``fallback``."""
    candidate = f"{env}/{name}"
    return candidate if exists(candidate) else fallback
