"""Leak rate per privilege level on a sample of recorded trajectories (`leap leak-report`).

    leap leak-report data/iter_0/demos.jsonl \\
        --privileged data/prepared/privileged/train.jsonl --max-steps 200 --out reports/leak_rates.json

Every step of the first trajectories becomes a decision point; the teacher (the environment
oracle, or the configured teacher with ``--teacher configured``) relabels it at each level and
:func:`leap.teachers.leak.find_leaks` checks its reason. The student step given to the teacher is
the recorded one (as in the correct stage).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from leap.agent import StepContext, Teacher, contexts_from_trajectory
from leap.config import Params
from leap.io import read_jsonl, write_json
from leap.records import PrivilegedState, StepLabel, Trajectory
from leap.teachers.leak import measure_leak_rates


def sample_contexts(
    trajectories: list[Trajectory], privileged: dict[str, PrivilegedState], max_steps: int
) -> tuple[list[StepContext], list[StepLabel]]:
    ctxs: list[StepContext] = []
    students: list[StepLabel] = []
    for traj in trajectories:
        for ctx, step in zip(
            contexts_from_trajectory(traj, privileged.get(traj.task_id)), traj.steps, strict=True
        ):
            if len(ctxs) >= max_steps:
                return ctxs, students
            ctxs.append(ctx)
            students.append(StepLabel(reason=step.reason, action=step.action))
    return ctxs, students


def _teacher_factory(kind: str, params: Params | None) -> Callable[[int], Teacher]:
    if kind == "oracle":
        from leap.teachers.oracle import OracleTeacher

        return OracleTeacher
    if kind != "configured" or params is None:
        raise ValueError(
            f"teacher must be 'oracle' or 'configured' (the teacher section of params), not {kind!r}"
        )
    from leap.teachers.factory import build_teacher

    return lambda level: build_teacher(params, privilege_level=level)


def leak_report(
    trajectories: Path,
    privileged: Path | None = None,
    *,
    max_steps: int = 200,
    levels: list[int] | None = None,
    teacher: str = "oracle",
    params: Params | None = None,
    out: Path | None = None,
    echo: Callable[[str], None] = print,
) -> dict[int, dict[str, Any]]:
    """Leak rate of the teacher's reasons at each privilege level on a sample of steps."""
    trajs = read_jsonl(trajectories, Trajectory)
    priv = {p.task_id: p for p in read_jsonl(privileged, PrivilegedState)} if privileged else {}
    ctxs, students = sample_contexts(trajs, priv, max_steps)
    report = measure_leak_rates(
        _teacher_factory(teacher, params), ctxs, levels if levels is not None else range(5), students
    )
    for level, r in report.items():
        echo(f"λ{level}: leak rate {r['rate']} ({r['leaked']}/{r['n']}, {r['errors']} errors)")
    if out is not None:
        write_json(out, {str(k): v for k, v in report.items()})
    else:
        echo(json.dumps({str(k): v["examples"] for k, v in report.items()}, indent=1))
    return report
