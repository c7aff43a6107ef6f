"""The environment interface (Gymnasium's reset/step conventions) and the plug-in registry.

An environment plays text episodes. The student sees only the observation strings and
``info["admissible_actions"]``; ``info["privileged"]`` is recorded for the teacher and
never rendered into a student prompt.

Adding an environment is one package and one :func:`register` call that carries everything
about it (modelled on Gymnasium's ``register``/``EnvSpec``): the environment factory, the task
source, the model of its ``env.<name>`` section in params.yaml, its oracle, its prompt templates
and an optional sub-command. Any part may be given as ``"module:attribute"``, imported on first
use, so registering stays cheap: ``import leap.config`` imports no environment, and validating
params.yaml imports only the registration modules of the environments it names.

Where registrations come from (looked up in this order, each only when a name is asked for):

1. :func:`register` calls already made (e.g. by a test, or by an application before it runs);
2. the package ``leap.envs.<name>`` (the environments that ship with leap);
3. the entry point ``<name>`` of the group ``leap.envs`` of an installed distribution
   (``[project.entry-points."leap.envs"] myenv = "my_package.my_env"``): its module is imported
   and calls :func:`register`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from leap import prompts
from leap.agent import OracleFn
from leap.records import PrivilegedState, Task

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "leap.envs"

# Keys every environment may put in ``info`` (all optional):
#   admissible_actions: list[str]   actions the student may take now (where the env has them)
#   privileged: dict                teacher-only snapshot (e.g. {"expert_action": "go to fridge 1"})
#   valid_action: bool              False when the action was not understood / did nothing
#   won: bool                       the task is solved
#   score: float                    the task score so far (final score at termination)
#   score_components: dict          e.g. WebShop's Att/Opt/Type/Price
INFO_KEYS = ("admissible_actions", "privileged", "valid_action", "won", "score", "score_components")


class EnvError(RuntimeError):
    """The environment could not be created or broke (not an agent mistake)."""


@runtime_checkable
class Environment(Protocol):
    """One episode at a time; create several instances to batch."""

    name: str

    def reset(self, task: Task, *, seed: int | None = None) -> tuple[str, dict[str, Any]]:
        """Start ``task``; return the first observation and info."""
        ...

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Apply ``action``; return (observation, reward, terminated, truncated, info).

        An invalid action must not raise: return ``info["valid_action"] = False`` and an
        observation saying nothing happened.
        """
        ...

    def close(self) -> None: ...


@runtime_checkable
class TaskSource(Protocol):
    """Knows an environment's tasks and their privileged states (used by `prepare`).

    ``PrivilegedState.plan`` is the dataset's expert action sequence from reset where the
    dataset has one (ALFWorld's walkthrough, InterCode's gold command): `demos` with
    ``demos.source: dataset`` replays it and has the teacher write the reasons.
    """

    def prepare(self) -> None:
        """Create whatever the tasks need on disk (e.g. generate games); idempotent."""
        ...

    def tasks(self, split: str) -> list[Task]: ...

    def privileged_state(self, task: Task) -> PrivilegedState: ...


class NoParams(BaseModel):
    """The ``env.<name>`` section of an environment without parameters (it must be empty)."""

    model_config = ConfigDict(extra="forbid")


# The factories get the environment's own section of params.yaml (an instance of its ``params``
# model) and one value from the shared `env` section: the horizon, or the global seed.
EnvFactory = Callable[[Any, int], Environment]  # (section, horizon) -> Environment
TaskSourceFactory = Callable[[Any, int], TaskSource]  # (section, seed) -> TaskSource


def _load(ref: Any) -> Any:
    """A registration part given as ``"module:attribute"`` is imported on first use."""
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class EnvSpec:
    """Everything about one environment. Parts may be ``"module:attribute"`` strings (lazy)."""

    name: str
    make_env: EnvFactory | str
    make_tasks: TaskSourceFactory | str
    params: type[BaseModel] | str = NoParams
    oracle: OracleFn | str | None = None
    # A directory of Jinja templates overriding the shared ones for this environment:
    # student_system.j2, teacher_correct.j2, teacher_correct_compact.j2, annotate.j2.
    prompts: Path | None = None
    cli: Any = None  # a Typer app (or "module:attribute"), mounted as `leap <name> ...`
    cli_help: str | None = None

    def env(self, section: BaseModel, horizon: int) -> Environment:
        return _load(self.make_env)(section, horizon)

    def task_source(self, section: BaseModel, seed: int) -> TaskSource:
        return _load(self.make_tasks)(section, seed)

    def params_model(self) -> type[BaseModel]:
        return _load(self.params)

    def oracle_fn(self) -> OracleFn:
        if self.oracle is None:
            raise EnvError(f"environment '{self.name}' registered no oracle")
        return _load(self.oracle)

    def cli_app(self) -> Any:
        return _load(self.cli)


_REGISTRY: dict[str, EnvSpec] = {}


def register(
    name: str,
    *,
    make_env: EnvFactory | str,
    make_tasks: TaskSourceFactory | str,
    params: type[BaseModel] | str = NoParams,
    oracle: OracleFn | str | None = None,
    prompts_dir: str | Path | None = None,
    cli: Any = None,
    cli_help: str | None = None,
) -> EnvSpec:
    """Register an environment under ``name`` (its ``env.name`` in params.yaml); returns its spec.

    ``prompts_dir``: the environment's own templates. leap's environments keep theirs in
    ``leap/envs/<name>/prompts``, where the prompt layer finds them even before registration."""
    if not name.isidentifier():
        raise ValueError(f"environment name {name!r} must be an identifier (it is a params.yaml key)")
    if name in _REGISTRY:
        log.debug("re-registering environment '%s'", name)
    prompt_path = Path(prompts_dir) if prompts_dir is not None else None
    if prompt_path is not None and not prompt_path.is_dir():
        raise ValueError(f"environment '{name}': prompts_dir {prompt_path} is not a directory")
    spec = EnvSpec(
        name=name,
        make_env=make_env,
        make_tasks=make_tasks,
        params=params,
        oracle=oracle,
        prompts=prompt_path,
        cli=cli,
        cli_help=cli_help,
    )
    _REGISTRY[name] = spec
    if prompt_path is not None:
        prompts.set_env_templates(name, prompt_path)
    return spec


def _builtin_names() -> list[str]:
    """The environment packages that ship with leap (found without importing them)."""
    import pkgutil

    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.ispkg)


def _entry_points(name: str | None = None) -> list[importlib.metadata.EntryPoint]:
    eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    return [ep for ep in eps if name is None or ep.name == name]


def _discover(name: str) -> None:
    if name in _REGISTRY or not name.isidentifier():
        return
    if name in _builtin_names():
        importlib.import_module(f"leap.envs.{name}")
        if name in _REGISTRY:
            return
    for ep in _entry_points(name):
        ep.load()


def spec(name: str) -> EnvSpec:
    """The registration of environment ``name`` (loading its registration module if needed)."""
    _discover(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise EnvError(f"unknown environment '{name}'; registered: {registered()}") from None


def registered() -> list[str]:
    """Every environment that can be used: registered ones, leap's own and installed plug-ins."""
    for name in _builtin_names() + [ep.name for ep in _entry_points()]:
        _discover(name)
    return sorted(_REGISTRY)


def _section(env_params: Any, name: str) -> BaseModel:
    """The ``env.<name>`` section of the `env` params (leap.config.EnvParams)."""
    sec = env_params.section(name) if hasattr(env_params, "section") else getattr(env_params, name, None)
    return sec if sec is not None else spec(name).params_model()()


def make_env(name: str, env_params: Any) -> Environment:
    """A new environment ``name`` configured by the `env` section of params.yaml."""
    return spec(name).env(_section(env_params, name), int(env_params.horizon))


@dataclass(frozen=True)
class EnvMaker:
    """A picklable factory of environment ``name``: what a worker process calls to build its own
    environment. ``make`` is the registered factory where it pickles by reference (a module-level class
    or function, or a ``"module:attribute"`` string); None (a lambda, say): the worker finds the
    registration by name itself, as a stage does (``leap.envs.<name>`` or an entry point)."""

    name: str
    make: EnvFactory | str | None
    section: BaseModel
    horizon: int

    def __call__(self) -> Environment:
        if self.make is None:
            return spec(self.name).env(self.section, self.horizon)
        return _load(self.make)(self.section, self.horizon)


def env_maker(name: str, env_params: Any) -> EnvMaker:
    """:func:`make_env` as a picklable :class:`EnvMaker` (for environments in worker processes)."""
    make: EnvFactory | str | None = spec(name).make_env
    try:
        pickle.dumps(make)
    except Exception:
        make = None
    return EnvMaker(name, make, _section(env_params, name), int(env_params.horizon))


def make_task_source(name: str, env_params: Any, seed: int) -> TaskSource:
    return spec(name).task_source(_section(env_params, name), seed)


def oracle(name: str) -> OracleFn:
    """The oracle function of environment ``name``."""
    return spec(name).oracle_fn()
