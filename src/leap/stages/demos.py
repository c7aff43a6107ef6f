"""demos: behaviour-cloning demonstrations (iteration 0).

``demos.source: oracle``: the privileged oracle plays each training task; its reasons come from the
oracle at ``demos.privilege_level`` (realizable below λ4).

``demos.source: dataset``: the dataset's expert actions (``PrivilegedState.plan``: ALFWorld's
walkthrough, the expert plan stored with generated games, InterCode's gold command) are replayed
in the environment, and the configured teacher (``teacher.kind`` at ``demos.privilege_level``)
writes the reason of each step, as the paper does for action-only human demonstrations. LLM
teachers' replies are cached (``teacher.cache_dir``), so a re-run makes no calls.

Only successful demonstrations are kept, and (dataset) only those whose every step got a reason.
"""

from __future__ import annotations

import logging

from leap import paths
from leap.agent import Policy, ReplayPolicy, TeacherPolicy
from leap.config import Params
from leap.io import write_jsonl
from leap.records import PrivilegedState, Task, Trajectory
from leap.stages.common import (
    finish_journal,
    inputs_key,
    load_privileged,
    load_tasks,
    sample_in_order,
    seed_everything,
)
from leap.stages.episodes import run_with_journal

log = logging.getLogger(__name__)


def _play(
    params: Params, tasks: list[Task], privileged: dict[str, PrivilegedState], policy: Policy
) -> list[Trajectory]:
    out = paths.demos()
    key = inputs_key(params, paths.tasks("train"), paths.privileged("train"))
    return run_with_journal(
        out, tasks, policy, params, iteration=0, privileged=privileged, desc="demos", key=key
    )


def _from_oracle(
    params: Params, tasks: list[Task], privileged: dict[str, PrivilegedState]
) -> tuple[list[Trajectory], dict[str, float]]:
    from leap.teachers.oracle import OracleTeacher

    policy = TeacherPolicy(OracleTeacher(params.demos.privilege_level), privileged=True)
    trajs = _play(params, tasks, privileged, policy)
    kept = [t for t in trajs if t.success]
    if not kept:
        raise RuntimeError(f"the oracle solved none of the {len(trajs)} training tasks: no demonstrations")
    return kept, {"demos/oracle_success_rate": len(kept) / len(trajs)}


def _from_dataset(
    params: Params, tasks: list[Task], privileged: dict[str, PrivilegedState]
) -> tuple[list[Trajectory], dict[str, float]]:
    from leap.teachers.annotate import annotate_reasons
    from leap.teachers.factory import build_teacher

    plans = {t.task_id: privileged[t.task_id].plan for t in tasks if t.task_id in privileged}
    if not any(plans.values()):
        raise RuntimeError(
            f"demos.source is 'dataset' but no training task of '{params.env.name}' has expert actions "
            "(PrivilegedState.plan); use demos.source: oracle"
        )
    replayed = _play(params, tasks, privileged, ReplayPolicy(plans))
    won = [t for t in replayed if t.success]
    teacher = build_teacher(params, privilege_level=params.demos.privilege_level)
    annotated = annotate_reasons(teacher, won, privileged)
    kept = [t for t in annotated if t.error is None]
    if not kept:
        first = next((t.error for t in annotated if t.error), "no replayed task was solved")
        raise RuntimeError(f"no demonstration from the dataset's expert actions ({first})")
    return kept, {
        "demos/replay_success_rate": len(won) / len(replayed),
        "demos/n_unannotated": float(len(won) - len(kept)),
    }


def run(params: Params) -> dict[str, float]:
    """Writes data/iter_0/demos.jsonl; returns the metrics."""
    dataset = params.demos.source == "dataset"
    seed_everything(params.seed, torch=dataset and params.teacher.kind == "local")
    tasks = sample_in_order(load_tasks("train"), params.demos.n_tasks, f"{params.seed}:demos")
    privileged = load_privileged("train")
    kept, stats = (_from_dataset if dataset else _from_oracle)(params, tasks, privileged)
    out = paths.demos()
    write_jsonl(out, kept)
    finish_journal(out)
    stats = {
        "demos/n_tasks": float(len(tasks)),
        "demos/n_kept": float(len(kept)),
        "demos/n_steps": float(sum(t.num_actions for t in kept)),
        **stats,
    }
    log.info("kept %d/%d demonstrations (%d steps)", len(kept), len(tasks), stats["demos/n_steps"])
    return stats
