"""Environments in worker processes (leap.envs.workers): a hung reset or step, a crash or a memory
overrun costs one episode, recorded with the reason; the others are the same as in-process."""

from __future__ import annotations

import os
import re
import time
from typing import Any

import psutil
import pytest

from leap.agent import TeacherPolicy
from leap.envs.base import EnvError
from leap.envs.toy import ToyEnv, ToyTasks
from leap.envs.workers import WorkerEnv, WorkerError, WorkerLimits
from leap.records import Task
from leap.rollout import run_episodes
from leap.teachers.oracle import OracleTeacher

TASKS = ToyTasks(seed=0).tasks("train")
# The step timeout leaves room for the "memory" trouble's 400 MB to be written before it: on a
# loaded 2-core machine that took over 1 s, and the step timed out before passing the memory limit.
LIMITS = WorkerLimits(reset_timeout_s=1.0, step_timeout_s=3.0, memory_mb=250.0)
_HELD: list[bytes] = []  # memory an environment keeps (a leak), in the worker


class Troubled(ToyEnv):
    """The toy environment, misbehaving as ``task.spec["trouble"]`` says."""

    def reset(self, task: Task, *, seed: int | None = None) -> tuple[str, dict[str, Any]]:
        trouble = task.spec.get("trouble")
        if trouble == "hang_reset":
            time.sleep(3600)
        if trouble == "leak_on_reset":
            _HELD.append(b"x" * (300 * 2**20))
        return super().reset(task, seed=seed)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        trouble = self.task.spec.get("trouble") if self.task else None
        if trouble == "hang_step":
            time.sleep(3600)
        if trouble == "crash":
            os._exit(3)
        if trouble == "memory":
            _HELD.append(b"x" * (400 * 2**20))
        if trouble == "raise":
            raise ValueError("the engine refused")
        return super().step(action)


def troubled(trouble: str | None, i: int) -> Task:
    t = TASKS[i]
    return t.model_copy(update={"task_id": f"{t.task_id}-{trouble}", "spec": {**t.spec, "trouble": trouble}})


def oracle() -> TeacherPolicy:
    return TeacherPolicy(OracleTeacher(0), privileged=False)


def strip(traj: Any) -> dict[str, Any]:
    return traj.model_dump(exclude={"task_id"})


def test_a_worker_runs_the_environment_in_another_process() -> None:
    env = WorkerEnv(Troubled, LIMITS)
    try:
        assert env.pid is not None and env.pid != os.getpid()
        local = Troubled()
        assert env.reset(TASKS[0]) == local.reset(TASKS[0])
        assert env.step("open box 1") == local.step("open box 1")
    finally:
        env.close()
    assert env.pid is None


@pytest.mark.parametrize(
    ("trouble", "reason"),
    [
        ("hang_step", "step timed out after 3 s"),
        ("hang_reset", "reset timed out after 1 s"),
        ("crash", "the worker died during step (exit code 3)"),
        ("memory", "passed its memory limit during step"),
    ],
)
def test_a_troubled_worker_is_killed_and_the_error_says_why(trouble: str, reason: str) -> None:
    env = WorkerEnv(Troubled, LIMITS)
    pid = env.pid
    assert pid is not None
    start = time.monotonic()
    with pytest.raises(WorkerError, match=re.escape(reason)):
        env.reset(troubled(trouble, 0))
        env.step("open box 1")
    assert time.monotonic() - start < 10
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    # The next episode gets a fresh worker.
    assert env.reset(TASKS[1])[0] == ToyEnv().reset(TASKS[1])[0]
    assert env.pid != pid
    env.close()


def test_an_error_the_environment_raises_keeps_its_type_and_the_worker() -> None:
    env = WorkerEnv(Troubled, LIMITS)
    pid = env.pid
    env.reset(troubled("raise", 0))
    with pytest.raises(ValueError, match="the engine refused"):
        env.step("open box 1")
    assert env.pid == pid  # not killed: the environment answered
    env.close()


def test_an_environment_that_cannot_be_built_fails_like_in_process() -> None:
    with pytest.raises(EnvError, match="cannot be sent to a worker"):
        WorkerEnv(lambda: ToyEnv(), LIMITS)


def test_a_worker_leaking_across_resets_is_replaced_between_episodes() -> None:
    # Each reset leaks 150 MB: the third would pass the 400 MB limit, but a worker holding more than
    # 100 MB after an episode is replaced before the next one, so no episode fails.
    limits = WorkerLimits(reset_timeout_s=5.0, step_timeout_s=5.0, memory_mb=400.0, recycle_mb=100.0)
    env = WorkerEnv(Troubled, limits)
    pids = set()
    for i in range(3):
        env.reset(troubled("leak_on_reset", i))
        pids.add(env.pid)
        assert env.step("open door")[4]["valid_action"] is False
    assert env.restarts == 2 and len(pids) == 3
    env.close()


def test_the_rollout_finishes_with_troubled_episodes_recorded_and_the_others_intact() -> None:
    troubles = ["hang_step", "hang_reset", "crash", "memory", "raise"]
    tasks = [troubled(tr, i) for i, tr in enumerate(troubles)] + [troubled(None, i) for i in range(5, 9)]
    start = time.monotonic()
    trajs = run_episodes(
        tasks,
        oracle(),
        lambda: WorkerEnv(Troubled, LIMITS),
        horizon=10,
        batch_size=4,
        concurrency=3,
        progress=False,
    )
    assert time.monotonic() - start < 60
    assert [t.task_id for t in trajs] == [t.task_id for t in tasks]
    errors = {t.task_id.rsplit("-", 1)[1]: t.error for t in trajs[:5]}
    assert "step timed out" in errors["hang_step"]
    assert "reset failed" in errors["hang_reset"] and "reset timed out" in errors["hang_reset"]
    assert "worker died during step" in errors["crash"]
    assert "memory limit" in errors["memory"]
    assert "ValueError: the engine refused" in errors["raise"]
    assert all(not t.success for t in trajs[:5])
    local = run_episodes(tasks[5:], oracle(), Troubled, horizon=10, batch_size=4, progress=False)
    assert [t.model_dump() for t in trajs[5:]] == [t.model_dump() for t in local]
    assert all(t.error is None for t in local)


def test_stages_put_environments_in_workers_when_env_workers_is_set() -> None:
    from leap.config import EnvParams, Params
    from leap.stages.episodes import concurrency, env_factory

    base = Params()
    assert concurrency(base) is None and not isinstance(env_factory(base)(), WorkerEnv)
    params = base.model_copy(
        update={"env": EnvParams(name="toy", workers=2, step_timeout_s=1.0, worker_memory_mb=300.0)}
    )
    env = env_factory(params)()
    try:
        assert (
            isinstance(env, WorkerEnv) and env.limits.step_timeout_s == 1.0 and env.limits.memory_mb == 300.0
        )
        assert env.reset(TASKS[0]) == ToyEnv().reset(TASKS[0])
    finally:
        env.close()
    assert concurrency(params) == 2
