"""Write the missing reasons of demonstrations that only have actions (a dataset's expert actions).

Used by the demos stage with ``demos.source: dataset``; LLM teachers are cached as for corrections."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from leap.agent import StepContext, Teacher, TeacherError, contexts_from_trajectory
from leap.records import PrivilegedState, StepLabel, Trajectory

log = logging.getLogger(__name__)


def annotate_reasons(
    teacher: Teacher | Any,
    trajectories: list[Trajectory],
    privileged: dict[str, PrivilegedState] | None = None,
    *,
    overwrite: bool = False,
    batch_size: int = 32,
) -> list[Trajectory]:
    """Copies of ``trajectories`` whose steps without a reason get one from ``teacher``.

    LLM teachers (``annotate``) write the reason for the given action. Other teachers (oracles) are
    asked for the step with the demonstrated action given as the expert's next action
    (``ctx.privileged["expert_action"]``, which oracles follow from λ1 or λ2 up), and their reason
    is kept only when their action is the demonstrated one. A step that could not be annotated
    keeps an empty reason and is counted in the log and in ``Trajectory.error`` ("annotation:
    ..."), never dropped silently.
    """
    out = [t.model_copy(deep=True) for t in trajectories]
    todo: list[tuple[int, int, StepContext, str]] = []
    for ti, traj in enumerate(out):
        ps = (privileged or {}).get(traj.task_id)
        for si, ctx in enumerate(contexts_from_trajectory(traj, ps)):
            step = traj.steps[si]
            if overwrite or not step.reason.strip():
                todo.append((ti, si, ctx, step.action))
    failures: dict[int, list[str]] = {}
    for b in range(0, len(todo), batch_size):
        chunk = todo[b : b + batch_size]
        for (ti, si, _, _), reason in zip(chunk, _reasons(teacher, chunk), strict=True):
            if isinstance(reason, TeacherError) or not reason.strip():
                failures.setdefault(ti, []).append(f"step {si}: {reason or 'empty reason'}")
            else:
                out[ti].steps[si].reason = reason.strip()
    for ti, errs in failures.items():
        note = f"annotation: {len(errs)} step(s) without a reason; first: {errs[0]}"
        out[ti].error = f"{out[ti].error}; {note}" if out[ti].error else note
    if failures:
        log.warning(
            "reason annotation failed on %d step(s) of %d trajectories",
            sum(len(v) for v in failures.values()),
            len(failures),
        )
    return out


def _reasons(teacher: Any, chunk: list[tuple[int, int, StepContext, str]]) -> list[str | TeacherError]:
    if hasattr(teacher, "annotate"):
        return teacher.annotate([(ctx, action) for _, _, ctx, action in chunk])
    asks = [(_with_expert_action(ctx, action), None) for _, _, ctx, action in chunk]
    results = teacher.correct(asks)
    out: list[str | TeacherError] = []
    for (_, _, _, action), res in zip(chunk, results, strict=True):
        if isinstance(res, StepLabel) and res.action.strip() == action.strip():
            out.append(res.reason)
        elif isinstance(res, StepLabel):
            out.append(TeacherError(f"teacher chose {res.action!r}, not the demonstrated {action!r}"))
        else:
            out.append(res)
    return out


def _with_expert_action(ctx: StepContext, action: str) -> StepContext:
    return dataclasses.replace(ctx, privileged={**(ctx.privileged or {}), "expert_action": action})
