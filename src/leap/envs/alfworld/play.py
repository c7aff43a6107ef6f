"""Play whole episodes with the ALFWorld oracle (the `check` command, tests, quick baselines)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from leap.agent import StepContext
from leap.envs.alfworld.env import AlfworldEnv
from leap.envs.alfworld.oracle import alfworld_oracle
from leap.records import Step, StepLabel, Task


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
    return Task(task_id=f"{p.parent.parent.name}/{p.parent.name}", env="alfworld", split=split,
                category=traj["task_type"], instruction=_goal_from_grammar(game["grammar"]),
                spec={"game_file": str(game_file)})


def play_oracle(env: AlfworldEnv, task: Task, level: int, horizon: int = 30) -> Episode:
    obs, info = env.reset(task)
    history: list[Step] = []
    ep = Episode(task.task_id, task.category, won=False)
    for _ in range(horizon):
        ctx = StepContext(task=task, history=list(history), observation=obs,
                          admissible_actions=info["admissible_actions"], privileged=info["privileged"])
        label = alfworld_oracle(ctx, None, level)
        ep.labels.append(label)
        ep.secrets_seen.append(list(info["privileged"]["secrets"]))
        ep.privileged_seen.append(dict(info["privileged"]))
        new_obs, reward, terminated, _trunc, info = env.step(label.action)
        history.append(Step(observation=obs, reason=label.reason, action=label.action, reward=reward,
                            admissible_actions=ctx.admissible_actions, valid=info["valid_action"]))
        obs = new_obs
        if terminated:
            ep.won = True
            break
    return ep


def find_games(root: str | Path) -> list[Path]:
    """Every game.tw-pddl under an official-layout directory, sorted."""
    return sorted(Path(root).rglob("game.tw-pddl"))
