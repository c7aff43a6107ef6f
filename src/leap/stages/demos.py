"""demos: behaviour-cloning demonstrations (iteration 0), written by the privileged oracle.

Only successful demonstrations are kept. Their reasons come from the oracle at
``demos.privilege_level`` (realizable below λ4).
"""

from __future__ import annotations

import logging

from leap import paths
from leap.agent import TeacherPolicy
from leap.config import Params
from leap.io import write_jsonl
from leap.stages.common import (
    finish_journal,
    inputs_key,
    load_privileged,
    load_tasks,
    run_with_journal,
    seed_everything,
)
from leap.teachers.oracle import OracleTeacher

log = logging.getLogger(__name__)


def run(params: Params) -> dict[str, float]:
    """Writes data/iter_0/demos.jsonl; returns the metrics."""
    seed_everything(params.seed)
    tasks = load_tasks("train")
    if params.demos.n_tasks is not None:
        tasks = tasks[: params.demos.n_tasks]
    privileged = load_privileged("train")
    policy = TeacherPolicy(OracleTeacher(params.demos.privilege_level), privileged=True)
    out = paths.demos()
    key = inputs_key(params, paths.tasks("train"), paths.privileged("train"))
    trajs = run_with_journal(
        out, tasks, policy, params, iteration=0, privileged=privileged, desc="demos", key=key
    )
    kept = [t for t in trajs if t.success]
    if not kept:
        raise RuntimeError(f"the oracle solved none of the {len(trajs)} training tasks: no demonstrations")
    write_jsonl(out, kept)
    finish_journal(out)
    stats = {
        "demos/n_tasks": float(len(trajs)),
        "demos/n_kept": float(len(kept)),
        "demos/n_steps": float(sum(t.num_actions for t in kept)),
        "demos/oracle_success_rate": len(kept) / len(trajs),
    }
    log.info("kept %d/%d demonstrations (%d steps)", len(kept), len(trajs), stats["demos/n_steps"])
    return stats
