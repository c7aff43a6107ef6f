"""Leak rate per privilege level on a sample of recorded trajectories.

    python -m leap.teachers.leak_report data/iter_0/demos.jsonl \\
        --privileged data/prepared/privileged/train.jsonl --max-steps 200 --out reports/leak_rates.json

Every step of the first trajectories becomes a decision point; the teacher (the environment
oracle, or the configured teacher with ``--teacher configured``) relabels it at each level and
:func:`leap.teachers.leak.find_leaks` checks its reason. The student step given to the teacher is
the recorded one (as in the correct stage).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from leap.agent import StepContext, Teacher, contexts_from_trajectory
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


def _teacher_factory(kind: str, params_path: Path, experiment: Path | None) -> Any:
    if kind == "oracle":
        from leap import envs  # noqa: F401  (registers the oracles)
        from leap.teachers.oracle import OracleTeacher

        return OracleTeacher
    from leap.config import load_params
    from leap.teachers.factory import build_teacher

    params = load_params(params_path, experiment)

    def make(level: int) -> Teacher:
        p = params.model_copy(deep=True)
        p.teacher.privilege_level = level
        return build_teacher(p)

    return make


def leak_report(
    trajectories: Annotated[Path, typer.Argument(help="JSONL of Trajectory records (demos, rollouts)")],
    privileged: Annotated[Path | None, typer.Option(help="JSONL of PrivilegedState records")] = None,
    max_steps: Annotated[int, typer.Option(help="decision points sampled (first trajectories first)")] = 200,
    levels: Annotated[str, typer.Option(help="comma-separated privilege levels")] = "0,1,2,3,4",
    teacher: Annotated[
        str, typer.Option(help="'oracle' or 'configured' (teacher section of params)")
    ] = "oracle",
    params: Annotated[Path, typer.Option(help="params.yaml (for --teacher configured)")] = Path(
        "params.yaml"
    ),
    experiment: Annotated[Path | None, typer.Option(help="experiment overrides")] = None,
    out: Annotated[Path | None, typer.Option(help="write the report here as JSON")] = None,
) -> dict[int, dict[str, Any]]:
    """Leak rate of the teacher's reasons at each privilege level on a sample of steps."""
    trajs = read_jsonl(trajectories, Trajectory)
    priv = {p.task_id: p for p in read_jsonl(privileged, PrivilegedState)} if privileged else {}
    ctxs, students = sample_contexts(trajs, priv, max_steps)
    report = measure_leak_rates(
        _teacher_factory(teacher, params, experiment), ctxs, [int(x) for x in levels.split(",")], students
    )
    for level, r in report.items():
        typer.echo(f"λ{level}: leak rate {r['rate']} ({r['leaked']}/{r['n']}, {r['errors']} errors)")
    if out is not None:
        write_json(out, {str(k): v for k, v in report.items()})
    else:
        typer.echo(json.dumps({str(k): v["examples"] for k, v in report.items()}, indent=1))
    return report


if __name__ == "__main__":
    typer.run(leak_report)
