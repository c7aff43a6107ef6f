"""Helpers of the stages that play episodes: the environment factory, the student policy and
the journaled episode runner (the one episode loop, :func:`leap.rollout.run_episodes`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from leap import paths
from leap.agent import Policy
from leap.config import Params
from leap.envs.base import Environment, env_maker, make_env
from leap.io import JsonlAppender
from leap.records import PrivilegedState, Task, Trajectory
from leap.rollout import run_episodes


def env_factory(params: Params) -> Callable[[], Environment]:
    """The one place stages create environments: in the stage's process, or (``env.workers``) each in
    its own worker process with the reset/step time limits and the memory limit of ``env``."""
    from leap.envs.workers import WorkerEnv, WorkerLimits

    limits = WorkerLimits(  # read always, so that the stage's declared params do not depend on workers
        reset_timeout_s=params.env.reset_timeout_s,
        step_timeout_s=params.env.step_timeout_s,
        memory_mb=params.env.worker_memory_mb,
    )
    if not params.env.workers:
        return lambda: make_env(params.env.name, params.env)
    maker = env_maker(params.env.name, params.env)
    return lambda: WorkerEnv(maker, limits)


def concurrency(params: Params) -> int | None:
    """Episodes in flight at once, each in its own thread (None: lock-step batches): one per
    environment worker, else (a student behind a server) the server's ``concurrency``."""
    if params.env.workers:
        return params.env.workers
    if params.student.backend == "openai":
        return params.student.server.concurrency
    return None


def student_policy(params: Params, iteration: int) -> Policy:
    """The student of ``iteration``: in this process (``student.backend: hf``), or behind an
    OpenAI-compatible server under the adapter's name ``<student.server.adapter_prefix>iter_<i>``
    (``openai``; with no ``student.server.base_url``, `leap serve --student` is started for the stage
    and stopped by the policy's ``close``)."""
    adapter = paths.model(iteration)
    if not adapter.exists():
        raise FileNotFoundError(f"{adapter}: no trained student for iteration {iteration} (run `leap train`)")
    server = params.student.server
    _ = server.guided  # read always (it changes the answers): dvc.yaml declares it whatever the backend
    if params.student.backend == "openai":
        from leap.students.remote import RemoteStudentPolicy, start_local_server

        name = f"{server.adapter_prefix}iter_{iteration}"
        process = None
        base_url = server.base_url
        if base_url is None:
            process = start_local_server(params.student, {name: adapter}, served_name=params.student.model)
            base_url = process.base_url
        try:
            return RemoteStudentPolicy(
                params.student,
                name,
                base_url=base_url,
                adapter_dir=adapter,
                policy_id=f"student:iter_{iteration}",
                snap_threshold=params.env.snap_threshold,
                process=process,
            )
        except BaseException:
            if process is not None:
                process.stop()
            raise
    from leap.students.policy import StudentPolicy

    return StudentPolicy(
        params.student,
        adapter,
        policy_id=f"student:iter_{iteration}",
        snap_threshold=params.env.snap_threshold,
    )


def close_policy(policy: Policy) -> None:
    """Release what a policy holds beyond the stage (a server-backed student's server and client)."""
    close = getattr(policy, "close", None)
    if callable(close):
        close()


def run_with_journal(
    out: Path,
    tasks: list[Task],
    policy: Policy,
    params: Params,
    *,
    iteration: int | None,
    privileged: dict[str, PrivilegedState] | None = None,
    desc: str,
    key: str,
) -> list[Trajectory]:
    """Run episodes, journaling finished ones beside ``out`` so a killed stage resumes."""
    for stale in paths.stale_journals(out):
        if stale != paths.journal(out, key):
            stale.unlink()
    journal = JsonlAppender(paths.journal(out, key), Trajectory)
    trajs = run_episodes(
        tasks,
        policy,
        env_factory(params),
        horizon=params.env.horizon,
        batch_size=params.student.batch_size,
        privileged=privileged,
        iteration=iteration,
        journal=journal,
        desc=desc,
        concurrency=concurrency(params),
    )
    return trajs
