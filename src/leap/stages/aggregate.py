"""aggregate: DAgger's data aggregation, as TRL-format training examples.

train set 0 = the demonstrations; train set i = train set i-1 + the corrections of
iteration i. Prompts are rebuilt with the student's own prompt builder, so training
prompts are exactly what the student sees at inference. A demonstration is one example (the whole
episode, loss on every assistant turn); a correction is one example whose prompt is the student's
own history up to the corrected step.
"""

from __future__ import annotations

import logging

from leap import paths
from leap.agent import StepContext
from leap.config import Params
from leap.io import read_jsonl, write_jsonl
from leap.records import Correction, Message, StepLabel, TrainExample, Trajectory

log = logging.getLogger(__name__)


def _assistant(label: StepLabel) -> list[Message]:
    from leap.prompts.parsing import format_completion

    return [Message(role="assistant", content=format_completion(label))]


def examples_from_demos(trajs: list[Trajectory], params: Params) -> list[TrainExample]:
    """One example per demonstration: the whole episode as one chat, trained on every assistant turn
    (the history is the demonstrator's own, so nothing is recomputed per step)."""
    from leap.students.prompting import build_messages

    out = []
    for traj in trajs:
        if not traj.steps:
            continue
        task = traj.task()
        last = traj.steps[-1]
        ctx = StepContext(task, traj.steps[:-1], last.observation, last.admissible_actions)
        msgs = build_messages(ctx, params.student) + _assistant(
            StepLabel(reason=last.reason, action=last.action)
        )
        out.append(
            TrainExample(
                prompt=msgs[:2],
                completion=msgs[2:],
                source="demo",
                task_id=traj.task_id,
                iteration=0,
                step_index=0,
            )
        )
    return out


def examples_from_corrections(corrs: list[Correction], params: Params) -> tuple[list[TrainExample], dict]:
    from leap.students.prompting import build_messages

    out, skipped_err, skipped_leak = [], 0, 0
    for c in corrs:
        if c.teacher is None:
            skipped_err += 1
            continue
        if c.leaked and params.teacher.leak_filter == "drop":
            skipped_leak += 1
            continue
        ctx = StepContext(c.task(), c.history, c.observation, c.admissible_actions)
        same = c.teacher.action.strip() == c.student.action.strip() and c.teacher.reason == c.student.reason
        out.append(
            TrainExample(
                prompt=build_messages(ctx, params.student),
                completion=_assistant(c.teacher),
                rejected=None if same else _assistant(c.student),
                source="correction",
                task_id=c.task_id,
                iteration=c.iteration,
                step_index=c.step_index,
            )
        )
    return out, {"skipped_teacher_error": skipped_err, "skipped_leak": skipped_leak}


def run(params: Params, iteration: int) -> dict[str, float]:
    if iteration == 0:
        examples = examples_from_demos(read_jsonl(paths.demos(), Trajectory), params)
        stats: dict = {}
        new = len(examples)
    else:
        prev = params.loop.iterations[iteration]
        examples = read_jsonl(paths.train_set(prev), TrainExample)
        fresh, stats = examples_from_corrections(read_jsonl(paths.corrections(iteration), Correction), params)
        examples += fresh
        new = len(fresh)
    write_jsonl(paths.train_set(iteration), examples)
    log.info("train set %d: %d examples (%d new)", iteration, len(examples), new)
    return {
        "aggregate/n_examples": float(len(examples)),
        "aggregate/n_new": float(new),
        **{f"aggregate/{k}": float(v) for k, v in stats.items()},
    }
