"""ALFWorld in worker processes: several workers give the same trajectories as one worker and as
the in-process engine (each worker builds its own engine; episodes do not interfere)."""

from __future__ import annotations

import pytest

pytest.importorskip("alfworld")

from leap.agent import TeacherPolicy
from leap.config import EnvParams
from leap.envs.alfworld.params import AlfworldParams
from leap.envs.alfworld.tasks import AlfworldTasks
from leap.envs.base import env_maker, make_env
from leap.envs.workers import WorkerEnv, WorkerLimits
from leap.rollout import run_episodes
from leap.teachers.oracle import OracleTeacher

SMALL = dict(n_train=6, n_valid=1, n_test=1, n_test_ood=2)


def test_several_workers_give_the_same_trajectories_as_one(tmp_path_factory) -> None:
    root = tmp_path_factory.getbasetemp() / "alfworld_games"  # shared with the generator's tests
    section = AlfworldParams(games_dir=str(root), **SMALL)
    AlfworldTasks(section, seed=0).prepare()
    tasks = AlfworldTasks(section, seed=0).tasks("train") + AlfworldTasks(section, seed=0).tasks("test_ood")
    params = EnvParams(name="alfworld", horizon=12, alfworld=section)
    maker = env_maker("alfworld", params)
    limits = WorkerLimits(reset_timeout_s=120.0, step_timeout_s=60.0, memory_mb=2048.0)
    policy = TeacherPolicy(OracleTeacher(0), privileged=False)  # explores: episodes take different paths

    def run(workers: int) -> list[dict]:
        trajs = run_episodes(
            tasks,
            policy,
            lambda: WorkerEnv(maker, limits),
            horizon=12,
            concurrency=workers,
            progress=False,
        )
        return [t.model_dump() for t in trajs]

    one, three = run(1), run(3)
    in_process = [
        t.model_dump()
        for t in run_episodes(tasks, policy, lambda: make_env("alfworld", params), horizon=12, progress=False)
    ]
    assert all(t["error"] is None for t in one)
    assert len({len(t["steps"]) for t in one}) > 1 or any(t["success"] for t in one)
    assert three == one
    assert in_process == one
