"""Environments: the interface and the plug-in registry (:mod:`leap.envs.base`), and one package
per environment. Importing this package loads no environment; each one's registration is imported
when its name is first asked for."""

from leap.envs.base import (
    EnvError,
    Environment,
    EnvSpec,
    TaskSource,
    make_env,
    make_task_source,
    register,
    registered,
    spec,
)

__all__ = [
    "EnvError",
    "EnvSpec",
    "Environment",
    "TaskSource",
    "make_env",
    "make_task_source",
    "register",
    "registered",
    "spec",
]
