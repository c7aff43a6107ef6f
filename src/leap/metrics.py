"""Evaluation metrics from trajectories (success rate, actions, per task category)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from statistics import fmean

from leap.agent import cycle_actions
from leap.records import CategoryMetrics, EvalResult, Trajectory
from leap.stats import PairedComparison, compare, wilson


def _mean(xs: list[float]) -> float:
    return float(fmean(xs)) if xs else 0.0


def repeats(traj: Trajectory) -> int:
    """Steps that repeat the previous action although it changed nothing (the "latching" failure:
    the same observation in, the same action out): the previous action was invalid, or its
    observation equals the one before it."""
    n = 0
    steps = traj.steps
    for k in range(1, len(steps)):
        prev, cur = steps[k - 1], steps[k]
        unchanged = not prev.valid or cur.observation == prev.observation
        if unchanged and cur.action.strip() == prev.action.strip():
            n += 1
    return n


def cycles(traj: Trajectory) -> int:
    """Steps that choose an action already chosen in the same situation (:func:`cycle_actions`)."""
    steps = traj.steps
    return sum(steps[k].action in cycle_actions(steps[:k], steps[k].observation) for k in range(len(steps)))


def summarize(trajs: list[Trajectory], *, policy: str, iteration: int | None, split: str) -> EvalResult:
    by_cat: dict[str, list[Trajectory]] = defaultdict(list)
    for t in trajs:
        by_cat[t.category].append(t)
    n_steps = sum(t.num_actions for t in trajs) or 1
    comp_keys = sorted({k for t in trajs for k in t.score_components})
    solved = [t for t in trajs if t.success]
    return EvalResult(
        policy=policy,
        iteration=iteration,
        split=split,
        n=len(trajs),
        success_rate=_mean([float(t.success) for t in trajs]),
        success_ci=wilson(len(solved), len(trajs)),
        avg_actions=_mean([float(t.num_actions) for t in trajs]),
        avg_actions_solved=_mean([float(t.num_actions) for t in solved]) if solved else None,
        repeat_rate=sum(repeats(t) for t in trajs) / n_steps,
        cycle_rate=sum(cycles(t) for t in trajs) / n_steps,
        avg_reward=_mean([t.reward for t in trajs]),
        invalid_action_rate=sum(t.num_invalid for t in trajs) / n_steps,
        parse_error_rate=sum(t.num_parse_errors for t in trajs) / n_steps,
        score_components={k: _mean([t.score_components.get(k, 0.0) for t in trajs]) for k in comp_keys},
        by_category={
            c: CategoryMetrics(
                n=len(ts),
                success_rate=_mean([float(t.success) for t in ts]),
                avg_actions=_mean([float(t.num_actions) for t in ts]),
                avg_reward=_mean([t.reward for t in ts]),
            )
            for c, ts in sorted(by_cat.items())
        },
    )


def outcomes(trajs: list[Trajectory]) -> dict[str, dict[str, bool]]:
    """{split: {task id: solved}} (what the report pairs across policies)."""
    out: dict[str, dict[str, bool]] = {}
    for t in trajs:
        out.setdefault(t.split, {})[t.task_id] = t.success
    return out


def paired(
    a: list[Trajectory], b: list[Trajectory], pool: tuple[str, ...] = ("test", "test_ood")
) -> dict[str, PairedComparison]:
    """``a`` minus ``b`` per split on the tasks both were evaluated on, and over the ``pool`` splits
    together (key ``"+".join(pool)``, where both have all of them)."""
    oa, ob = outcomes(a), outcomes(b)
    out = {s: compare(oa[s], ob[s]) for s in sorted(oa.keys() & ob.keys())}
    if len(pool) > 1 and all(s in out for s in pool):
        out["+".join(pool)] = compare(pooled(oa, pool), pooled(ob, pool))
    return out


def pooled(o: dict[str, dict[str, bool]], splits: Sequence[str]) -> dict[str, bool]:
    """One {"split/task id": solved} over ``splits`` (a task id may recur across splits)."""
    return {f"{s}/{t}": v for s in splits for t, v in o.get(s, {}).items()}


def flat_metrics(results: dict[str, EvalResult]) -> dict[str, float]:
    """{split: EvalResult} -> MLflow-style keys, e.g. 'test_ood/success_rate',
    'test_ood/cat/pick_and_place_simple/success_rate', 'test/score/att'."""
    out: dict[str, float] = {}
    for split, r in results.items():
        out[f"{split}/success_rate"] = r.success_rate
        out[f"{split}/success_ci_low"], out[f"{split}/success_ci_high"] = r.success_ci
        out[f"{split}/repeat_rate"] = r.repeat_rate
        out[f"{split}/cycle_rate"] = r.cycle_rate
        if r.avg_actions_solved is not None:
            out[f"{split}/avg_actions_solved"] = r.avg_actions_solved
        out[f"{split}/avg_actions"] = r.avg_actions
        out[f"{split}/avg_reward"] = r.avg_reward
        out[f"{split}/invalid_action_rate"] = r.invalid_action_rate
        for k, v in r.score_components.items():
            out[f"{split}/score/{k}"] = v
        for c, m in r.by_category.items():
            out[f"{split}/cat/{c}/success_rate"] = m.success_rate
            out[f"{split}/cat/{c}/avg_actions"] = m.avg_actions
    return out
