"""evaluate: a policy on the held-out splits -> trajectories + metrics per split."""

from __future__ import annotations

from pathlib import Path

from leap import paths
from leap.agent import Policy
from leap.config import Params
from leap.io import write_json, write_jsonl
from leap.metrics import outcomes, summarize
from leap.records import EvalResult, Trajectory
from leap.stages.common import finish_journal, inputs_key, load_tasks, seed_everything
from leap.stages.episodes import close_policy, run_with_journal, student_policy


def evaluate_policy(
    params: Params, policy: Policy, iteration: int | None, out: Path, key: str
) -> tuple[list[Trajectory], dict[str, EvalResult]]:
    tasks = [t for split in params.env.eval_splits for t in load_tasks(split)]
    trajs = run_with_journal(
        out, tasks, policy, params, iteration=iteration, desc=f"evaluate {policy.policy_id}", key=key
    )
    results = {
        split: summarize(
            [t for t in trajs if t.split == split], policy=policy.policy_id, iteration=iteration, split=split
        )
        for split in params.env.eval_splits
    }
    return trajs, results


def run(params: Params, iteration: int) -> dict[str, EvalResult]:
    """Writes data/iter_i/eval.jsonl, metrics/iter_i.json and metrics/outcomes/iter_i.json; returns
    the results per split."""
    seed_everything(params.seed + iteration, torch=True)
    policy = student_policy(params, iteration)
    out = paths.eval_trajs(iteration)
    deps = [paths.tasks(s) for s in params.env.eval_splits] + [paths.model(iteration)]
    try:
        trajs, results = evaluate_policy(params, policy, iteration, out, inputs_key(params, *deps))
    finally:
        close_policy(policy)
    write_jsonl(out, trajs)
    write_json(paths.eval_metrics(iteration), {s: r.model_dump(mode="json") for s, r in results.items()})
    write_json(paths.outcomes(f"iter_{iteration}"), outcomes(trajs))
    finish_journal(out)
    return results
