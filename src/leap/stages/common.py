"""Helpers shared by stages: task/privileged-state loading, env factories, policies."""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np

from leap import paths
from leap.agent import Policy
from leap.config import Params
from leap.envs.base import Environment, make_env
from leap.io import JsonlAppender, read_jsonl
from leap.records import PrivilegedState, Task, Trajectory
from leap.rollout import run_episodes

log = logging.getLogger(__name__)


def seed_everything(seed: int, *, torch: bool = False) -> None:
    """Seed Python's, NumPy's and (for stages that may run a model) torch's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if torch:  # importing torch costs seconds: only stages that may run a model pay it
        import torch as _torch

        _torch.manual_seed(seed)


def load_tasks(split: str) -> list[Task]:
    return read_jsonl(paths.tasks(split), Task)


def load_privileged(split: str = "train") -> dict[str, PrivilegedState]:
    return {p.task_id: p for p in read_jsonl(paths.privileged(split), PrivilegedState)}


def env_factory(params: Params) -> Callable[[], Environment]:
    return lambda: make_env(params.env.name, params.env)


def student_policy(params: Params, iteration: int) -> Policy:
    from leap.students.policy import StudentPolicy

    adapter = paths.model(iteration)
    if not adapter.exists():
        raise FileNotFoundError(f"{adapter}: no trained student for iteration {iteration} (run `leap train`)")
    return StudentPolicy(
        params.student,
        adapter,
        policy_id=f"student:iter_{iteration}",
        snap_threshold=params.env.snap_threshold,
    )


def inputs_key(params: Params, *deps: Path) -> str:
    """Fingerprint of the params and the dependency files (size + mtime; recursive for dirs)."""
    h = hashlib.sha256(params.fingerprint().encode())
    for d in deps:
        files = sorted(p for p in d.rglob("*") if p.is_file()) if d.is_dir() else [d]
        for f in files:
            if f.exists():
                st = f.stat()
                h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


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
    )
    return trajs


def finish_journal(out: Path) -> None:
    for j in paths.stale_journals(out):
        j.unlink()
