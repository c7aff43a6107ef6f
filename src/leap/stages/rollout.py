"""rollout: the current student (iteration i-1) acts on the training tasks."""

from __future__ import annotations

from leap import paths
from leap.config import Params
from leap.io import write_jsonl
from leap.metrics import summarize
from leap.records import Task
from leap.stages.common import finish_journal, inputs_key, load_tasks, sample_in_order, seed_everything
from leap.stages.episodes import close_policy, run_with_journal, student_policy


def rollout_sample(tasks: list[Task], k: int | None, seed: int, iteration: int) -> list[Task]:
    """k training tasks drawn at random, a new draw each iteration (DAgger visits new games)."""
    return sample_in_order(tasks, k, f"{seed}:rollout:{iteration}")


def run(params: Params, iteration: int) -> dict[str, float]:
    """Writes data/iter_i/rollouts.jsonl; returns the metrics."""
    seed_everything(params.seed + iteration, torch=True)
    prev = params.loop.iterations[iteration]
    tasks = rollout_sample(load_tasks("train"), params.loop.rollout_tasks, params.seed, iteration)
    policy = student_policy(params, prev)
    out = paths.rollouts(iteration)
    key = inputs_key(params, paths.tasks("train"), paths.model(prev))
    try:
        trajs = run_with_journal(
            out, tasks, policy, params, iteration=prev, desc=f"rollout@{iteration}", key=key
        )
    finally:
        close_policy(policy)
    write_jsonl(out, trajs)
    finish_journal(out)
    r = summarize(trajs, policy=policy.policy_id, iteration=prev, split="train")
    return {
        "rollout/success_rate": r.success_rate,
        "rollout/avg_actions": r.avg_actions,
        "rollout/invalid_action_rate": r.invalid_action_rate,
        "rollout/parse_error_rate": r.parse_error_rate,
        "rollout/n_failed": float(sum(not t.success for t in trajs)),
    }
