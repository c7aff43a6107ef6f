"""correct: the privileged teacher relabels the student's steps on failed trajectories.

Each relabelled step becomes a Correction record (student's step, teacher's step, level,
teacher id, leak check). A teacher failure is recorded in the record (``error``), never
dropped. Finished items are journaled, so a re-run after a crash resumes; LLM teachers
also cache responses, so an unchanged re-run makes no calls.
"""

from __future__ import annotations

import logging

from tqdm.auto import tqdm

from leap import paths
from leap.agent import StepContext, Teacher, TeacherError, contexts_from_trajectory
from leap.config import Params
from leap.io import JsonlAppender, read_jsonl, write_json, write_jsonl
from leap.records import Correction, PrivilegedState, StepLabel, Trajectory
from leap.stages.common import inputs_key, load_privileged, seed_everything

log = logging.getLogger(__name__)

BATCH = 16


def _find_leaks(reason: str, ctx: StepContext) -> list[str]:
    from leap.teachers.leak import find_leaks

    return find_leaks(reason, ctx)


def plan_items(
    trajs: list[Trajectory], params: Params, privileged: dict[str, PrivilegedState]
) -> list[tuple[int, StepContext, StepLabel]]:
    """(step index, teacher context, student step) for every step to relabel."""
    items = []
    for traj in trajs:
        if params.loop.correct_failed_only and traj.success:
            continue
        ctxs = contexts_from_trajectory(traj, privileged.get(traj.task_id))
        if params.loop.max_corrections_per_trajectory is not None:
            ctxs = ctxs[: params.loop.max_corrections_per_trajectory]
        for t, (ctx, step) in enumerate(zip(ctxs, traj.steps, strict=False)):
            items.append((t, ctx, StepLabel(reason=step.reason, action=step.action)))
    return items


def correct_all(
    teacher: Teacher,
    items: list[tuple[int, StepContext, StepLabel]],
    iteration: int,
    journal: JsonlAppender | None = None,
) -> list[Correction]:
    done: dict[tuple[str, int], Correction] = {}
    if journal is not None:
        # Failed items are retried on a re-run (the teacher or its endpoint may have been fixed).
        done = {(c.task_id, c.step_index): c for c in journal.load() if c.error is None}
    todo = [it for it in items if (it[1].task.task_id, it[0]) not in done]
    bar = tqdm(total=len(items), initial=len(items) - len(todo), desc=f"correct@{iteration}", unit="step")
    try:
        for b in range(0, len(todo), BATCH):
            batch = todo[b : b + BATCH]
            results = teacher.correct([(ctx, student) for _, ctx, student in batch])
            for (t, ctx, student), res in zip(batch, results, strict=True):
                c = Correction(
                    task_id=ctx.task.task_id,
                    env=ctx.task.env,
                    category=ctx.task.category,
                    instruction=ctx.task.instruction,
                    iteration=iteration,
                    step_index=t,
                    history=ctx.history,
                    observation=ctx.observation,
                    admissible_actions=ctx.admissible_actions,
                    student=student,
                    privilege_level=teacher.privilege_level,
                    teacher_id=teacher.teacher_id,
                )
                if isinstance(res, TeacherError):
                    c.error = str(res)
                else:
                    c.teacher = res
                    c.leak_terms = _find_leaks(res.reason, ctx)
                    c.leaked = bool(c.leak_terms)
                done[(c.task_id, t)] = c
                if journal is not None:
                    journal.append(c)
                bar.update(1)
    finally:
        bar.close()
    return [done[(ctx.task.task_id, t)] for t, ctx, _ in items]


def run(params: Params, iteration: int) -> dict[str, float]:
    """Writes data/iter_i/corrections.jsonl and metrics/stages/correct_i.json; returns the metrics."""
    from leap.teachers.constrained import build_correction_teacher

    seed_everything(params.seed + iteration, torch=True)
    trajs = read_jsonl(paths.rollouts(iteration), Trajectory)
    privileged = load_privileged("train")
    items = plan_items(trajs, params, privileged)
    teacher = build_correction_teacher(params, iteration)
    out = paths.corrections(iteration)
    key = inputs_key(params, paths.rollouts(iteration), paths.privileged("train"))
    for stale in paths.stale_journals(out):
        if stale != paths.journal(out, key):
            stale.unlink()
    journal = JsonlAppender(paths.journal(out, key), Correction)
    corrs = correct_all(teacher, items, iteration, journal)
    n_err = sum(c.error is not None for c in corrs)
    if corrs and n_err == len(corrs):
        raise RuntimeError(
            f"the teacher failed on all {n_err} items; first error: {corrs[0].error}. "
            "Fix the teacher (endpoint, key, model) and re-run: finished items are kept."
        )
    write_jsonl(out, corrs)
    journal.remove()
    ok = [c for c in corrs if c.teacher is not None]
    changed = sum(c.teacher.action.strip() != c.student.action.strip() for c in ok)  # type: ignore[union-attr]
    stats_teacher = teacher.stats() if hasattr(teacher, "stats") else {}
    metrics = {
        "correct/n_items": float(len(corrs)),
        "correct/n_errors": float(n_err),
        "correct/leak_rate": (sum(c.leaked for c in ok) / len(ok)) if ok else 0.0,
        "correct/action_changed_rate": (changed / len(ok)) if ok else 0.0,
        **{f"teacher/{k}": float(v) for k, v in stats_teacher.items() if isinstance(v, int | float)},
    }
    write_json(paths.stage_metrics("correct", iteration), {**metrics, "teacher_stats": stats_teacher})
    log.info("corrections: %d (%d errors), leak rate %.3f", len(corrs), n_err, metrics["correct/leak_rate"])
    return metrics
