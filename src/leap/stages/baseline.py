"""baseline: the teacher acting alone, without privileged state (and optionally the LLM
teacher as a ReAct agent), on the same evaluation splits as the student."""

from __future__ import annotations

import re

from leap import paths
from leap.agent import Policy, TeacherPolicy
from leap.config import Params
from leap.io import write_json, write_jsonl
from leap.metrics import outcomes
from leap.records import EvalResult, Trajectory
from leap.stages.common import finish_journal, inputs_key, seed_everything
from leap.stages.evaluate import evaluate_policy
from leap.teachers.oracle import OracleTeacher


def policies(params: Params) -> list[Policy]:
    out: list[Policy] = []
    if params.baseline.teacher_alone:
        out.append(TeacherPolicy(OracleTeacher(0), privileged=False))
    if params.baseline.react:
        from leap.teachers.factory import build_react_policy

        out.append(build_react_policy(params))
    return out


def run(params: Params) -> dict[str, dict[str, EvalResult]]:
    """Writes data/baseline/, metrics/baseline.json and metrics/outcomes/baseline.json; returns the
    results per policy and split."""
    seed_everything(params.seed, torch=True)
    deps = [paths.tasks(s) for s in params.env.eval_splits]
    out = paths.baseline_trajs()
    all_trajs: list[Trajectory] = []
    results: dict[str, dict[str, EvalResult]] = {}
    for policy in policies(params):
        # A policy id may hold a model path ("react:local:/models/x"): the file name must not.
        part = out.with_name(re.sub(r"[^A-Za-z0-9_.-]+", "_", policy.policy_id) + ".jsonl")
        trajs, res = evaluate_policy(params, policy, None, part, inputs_key(params, *deps))
        finish_journal(part)
        all_trajs += trajs
        results[policy.policy_id] = res
    write_jsonl(out, all_trajs)
    write_json(
        paths.baseline_metrics(),
        {p: {s: r.model_dump(mode="json") for s, r in res.items()} for p, res in results.items()},
    )
    by_policy: dict[str, list[Trajectory]] = {}
    for t in all_trajs:
        by_policy.setdefault(t.policy, []).append(t)
    write_json(paths.outcomes("baseline"), {p: outcomes(ts) for p, ts in by_policy.items()})
    return results
