"""The intercode environment: InterCode-Bash in a bubblewrap sandbox (its registration).

Heavy parts (the sandbox, scikit-learn) load when an environment is made. The root file system
is built once with `leap intercode build-root` (see rootfs.py); the env's docstring (env.py)
says what the rollout loop can rely on.
"""

from __future__ import annotations

from pathlib import Path

from leap.envs.base import Environment, TaskSource, register
from leap.envs.intercode.params import IntercodeParams


def make_env(params: IntercodeParams, horizon: int) -> Environment:
    from leap.envs.intercode.env import InterCodeEnv

    return InterCodeEnv(params, horizon=horizon)


def make_tasks(params: IntercodeParams, seed: int) -> TaskSource:
    from leap.envs.intercode.tasks import IntercodeTaskSource

    return IntercodeTaskSource(params, seed)


register(
    "intercode",
    make_env=make_env,
    make_tasks=make_tasks,
    params=IntercodeParams,
    oracle="leap.envs.intercode.oracle:oracle",
    prompts_dir=Path(__file__).parent / "prompts",
    cli="leap.envs.intercode.cli:app",
    cli_help="InterCode Bash: build the sandbox root, check gold.",
)
