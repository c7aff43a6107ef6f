"""realize: how realizable the teacher's corrections of iteration i are for the student that made
the rollouts (student i-1), before any training on them.

Two measures (paper §4.5: privilege helps until corrections stop being realizable):

- the mean log-likelihood per token of the corrected step (reason + action) under student i-1,
  teacher-forced in the student's own prompt (:mod:`leap.students.scoring`), beside the same for the
  student's own step (its reference: what the student itself would write);
- how often the student's own action, the one it took in the rollout (its greedy action at the
  default ``student.temperature: 0``), already equals the teacher's.

Writes metrics/stages/realize_i.json (a DVC metrics file; the CLI logs the same numbers to MLflow).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from tqdm.auto import tqdm

from leap import paths
from leap.agent import StepContext
from leap.config import Params
from leap.io import read_jsonl, write_json
from leap.records import Correction, StepLabel
from leap.stages.common import seed_everything

log = logging.getLogger(__name__)


def _per_token(scores: list[Any], part: str) -> float | None:
    """Token-weighted mean log-probability of one part ("tokens", "reason", "action") of the steps."""
    lps = [lp for s in scores for lp in getattr(s, part)]
    return float(sum(lps) / len(lps)) if lps else None


def summarize(corrs: list[Correction], teacher: list[Any], student: list[Any]) -> dict[str, Any]:
    """The realizability metrics of scored corrections (``teacher[k]``/``student[k]``: the scores of
    ``corrs[k]``'s teacher and student steps), and the same per task type under ``by_category``.
    A measure with nothing to average (no corrections) is None."""
    n = len(corrs)
    same = [c.teacher is not None and c.teacher.action.strip() == c.student.action.strip() for c in corrs]
    changed = [k for k in range(n) if not same[k]]
    metrics: dict[str, Any] = {
        "realize/n": float(n),
        "realize/teacher_logprob_per_token": _per_token(teacher, "tokens"),
        "realize/teacher_reason_logprob_per_token": _per_token(teacher, "reason"),
        "realize/teacher_action_logprob_per_token": _per_token(teacher, "action"),
        "realize/student_logprob_per_token": _per_token(student, "tokens"),
        # Per correction, then averaged: a long reason does not outweigh a short one.
        "realize/teacher_logprob_per_step": (
            float(sum(s.logprob / max(1, s.n_tokens) for s in teacher) / n) if n else None
        ),
        "realize/action_match_rate": (sum(same) / n) if n else None,
        "realize/changed_action_logprob_per_token": _per_token([teacher[k] for k in changed], "action"),
    }
    lp = metrics["realize/teacher_logprob_per_token"]
    metrics["realize/teacher_perplexity"] = math.exp(-lp) if lp is not None else None
    by_cat: dict[str, dict[str, float | None]] = {}
    for cat in sorted({c.category for c in corrs}):
        idx = [k for k, c in enumerate(corrs) if c.category == cat]
        by_cat[cat] = {
            "n": float(len(idx)),
            "teacher_logprob_per_token": _per_token([teacher[k] for k in idx], "tokens"),
            "action_match_rate": sum(same[k] for k in idx) / len(idx),
        }
    return {**metrics, "by_category": by_cat}


def waves(corrs: list[Correction], rows: int) -> list[list[int]]:
    """Batches of indices into ``corrs``: one step of each of up to ``rows // 2`` trajectories (a
    step is two rows: the student's and the teacher's), the same trajectories batch after batch in
    step order. Each engine row then extends the episode it held in the batch before (prefix cache)
    instead of recomputing its history: the steps of one trajectory in one batch would share
    nothing, as no row holds a prefix of another row of its own batch."""
    trajs: dict[tuple[str, int], list[int]] = {}
    for k in sorted(range(len(corrs)), key=lambda k: corrs[k].step_index):
        trajs.setdefault((corrs[k].task_id, corrs[k].iteration), []).append(k)
    groups = list(trajs.values())
    per_wave = max(1, rows // 2)
    out: list[list[int]] = []
    for w in range(0, len(groups), per_wave):
        wave = groups[w : w + per_wave]
        out += [[g[t] for g in wave if t < len(g)] for t in range(max(len(g) for g in wave))]
    return out


def score_corrections(
    scorer: Any, corrs: list[Correction], batches: list[list[int]], desc: str | None = None
) -> tuple[list[Any], list[Any]]:
    """(student's, teacher's) step scores of every correction, scored batch by batch (``batches``:
    indices into ``corrs``, e.g. :func:`waves`); ``desc``: show a progress bar."""
    student_by: dict[int, Any] = {}
    teacher_by: dict[int, Any] = {}
    with tqdm(total=len(corrs), desc=desc, unit="step", disable=desc is None) as bar:
        for batch in batches:
            items: list[tuple[StepContext, StepLabel]] = []
            for k in batch:
                c = corrs[k]
                assert c.teacher is not None
                ctx = StepContext(c.task(), c.history, c.observation, c.admissible_actions)
                items += [(ctx, c.student), (ctx, c.teacher)]
            scores = scorer.score(items)
            for j, k in enumerate(batch):
                student_by[k], teacher_by[k] = scores[2 * j], scores[2 * j + 1]
            bar.update(len(batch))
    return [student_by[k] for k in range(len(corrs))], [teacher_by[k] for k in range(len(corrs))]


def run(params: Params, iteration: int) -> dict[str, float]:
    """Writes metrics/stages/realize_i.json; returns the (flat) metrics."""
    from leap.students.scoring import StepScorer

    seed_everything(params.seed + iteration, torch=True)
    prev = params.loop.iterations[iteration]
    corrs = [c for c in read_jsonl(paths.corrections(iteration), Correction) if c.teacher is not None]
    adapter = paths.model(prev)
    if not adapter.exists():
        raise FileNotFoundError(f"{adapter}: no trained student for iteration {prev} (run `leap train`)")
    teacher_scores: list[Any] = []
    student_scores: list[Any] = []
    if corrs:
        scorer = StepScorer(params.student, adapter)
        batches = waves(corrs, params.student.batch_size)
        student_scores, teacher_scores = score_corrections(scorer, corrs, batches, f"realize@{iteration}")
    m = summarize(corrs, teacher_scores, student_scores)
    write_json(paths.stage_metrics("realize", iteration), m)
    if corrs:
        log.info(
            "realizability@%d: %.3f nats/token for the teacher's steps (the student's own: %.3f); "
            "action match %.2f",
            iteration,
            m["realize/teacher_logprob_per_token"],
            m["realize/student_logprob_per_token"],
            m["realize/action_match_rate"],
        )
    return {k: v for k, v in m.items() if isinstance(v, float)}
