"""The alfworld environment (its registration; the engine, oracle and CLI load on first use).

Games in the official ALFWorld layout run on the real engine (TextWorld PDDL + alfworld's
demangler). With ``env.alfworld.data_dir: null`` they are generated offline from the alfworld
package's own domain, grammar, goal library and floor plans (see :mod:`.generate`); those are
ALFWorld-format games, not the official splits, so their scores are not comparable with
published ALFWorld results.
"""

from __future__ import annotations

from pathlib import Path

from leap.envs.alfworld.params import AlfworldParams
from leap.envs.base import Environment, TaskSource, register


def make_env(params: AlfworldParams, horizon: int) -> Environment:
    from leap.envs.alfworld.env import AlfworldEnv

    return AlfworldEnv(memory=params.memory)


def make_tasks(params: AlfworldParams, seed: int) -> TaskSource:
    from leap.envs.alfworld.tasks import AlfworldTasks

    return AlfworldTasks(params, seed)


register(
    "alfworld",
    make_env=make_env,
    make_tasks=make_tasks,
    params=AlfworldParams,
    oracle="leap.envs.alfworld.oracle:alfworld_oracle",
    prompts_dir=Path(__file__).parent / "prompts",
    cli="leap.envs.alfworld.cli:app",
    cli_help="ALFWorld games: generate, check.",
)
