"""Play whole episodes with the ALFWorld oracle (the `check` command, tests, quick baselines)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leap.agent import FunctionTeacher, TeacherPolicy
from leap.envs.alfworld.env import AlfworldEnv
from leap.envs.alfworld.oracle import alfworld_oracle
from leap.envs.base import EnvError
from leap.records import StepLabel, Task
from leap.rollout import run_episodes


@dataclass
class Episode:
    task_id: str
    category: str
    won: bool
    labels: list[StepLabel] = field(default_factory=list)
    secrets_seen: list[list[str]] = field(default_factory=list)  # info secrets before each step
    privileged_seen: list[dict] = field(default_factory=list)


def task_for(game_file: str | Path, split: str = "check") -> Task:
    """A Task for a game file (instruction and category from the game itself)."""
    from leap.envs.alfworld.engine import read_game
    from leap.envs.alfworld.tasks import _goal_from_grammar

    game, traj = read_game(str(game_file))
    p = Path(game_file)
    return Task(
        task_id=f"{p.parent.parent.name}/{p.parent.name}",
        env="alfworld",
        split=split,
        category=traj["task_type"],
        instruction=_goal_from_grammar(game["grammar"]),
        spec={"game_file": str(game_file)},
    )


class _Borrowed:
    """The caller's environment, kept open when the episode runner closes what it used."""

    def __init__(self, env: AlfworldEnv) -> None:
        self.env = env
        self.name = env.name

    def reset(self, task: Task, *, seed: int | None = None) -> tuple[str, dict[str, Any]]:
        return self.env.reset(task, seed=seed)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        return self.env.step(action)

    def close(self) -> None:
        pass


def play_oracle(env: AlfworldEnv, task: Task, level: int, horizon: int = 30) -> Episode:
    """One episode of the oracle at ``level`` on the shared episode runner; an engine failure
    raises EnvError (the runner records it in the trajectory)."""
    policy = TeacherPolicy(FunctionTeacher(alfworld_oracle, level), privileged=True)
    (traj,) = run_episodes(
        [task], policy, lambda: _Borrowed(env), horizon=horizon, batch_size=1, progress=False
    )
    if traj.error is not None:
        raise EnvError(f"{task.task_id}: {traj.error}")
    privileged = [dict(s.privileged or {}) for s in traj.steps]
    return Episode(
        task.task_id,
        task.category,
        won=traj.success,
        labels=[StepLabel(reason=s.reason, action=s.action) for s in traj.steps],
        secrets_seen=[list(p.get("secrets", [])) for p in privileged],
        privileged_seen=privileged,
    )


def find_games(root: str | Path) -> list[Path]:
    """Every game.tw-pddl under an official-layout directory, sorted."""
    return sorted(Path(root).rglob("game.tw-pddl"))
