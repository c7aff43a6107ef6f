"""Student rollout cost: batching, and the KV cache over a whole-episode prompt.

    python benchmarks/rollout_batching.py            # SmolLM2-135M (the default student) on ALFWorld games
    python benchmarks/rollout_batching.py --env toy --episodes 8 --horizon 3

Two measurements, both on the same generated games with the same (untrained) student and greedy
decoding, in one run:

1. **Batching**: the same episodes one at a time and in a batch of ``--batch-size``: episodes/s,
   seconds per action, and the ratio (both runs must take the same actions).
2. **Per-step latency with and without the KV cache**: a batch of episodes of ``--horizon`` steps,
   the student's time per step at step 1 and at the last step, with the engine keeping each
   episode's cache (each step prefills only its new observation) and with it recomputing the whole
   conversation at every step. The ratio last/first should stay near 1 with the cache.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class Timed:
    """Wraps a policy and records the wall time of every ``act`` call (the student's time per step)."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.policy_id, self.privileged = policy.policy_id, policy.privileged
        self.times: list[float] = []

    def act(self, contexts: list) -> list:
        t0 = time.perf_counter()
        out = self.policy.act(contexts)
        self.times.append(time.perf_counter() - t0)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="alfworld", choices=["alfworld", "toy"])
    ap.add_argument("--model", default="smollm2-135m-instruct", help="student model (alias, HF id or path)")
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--horizon", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=24, help="reason length cap")
    args = ap.parse_args()

    from leap.config import Params
    from leap.envs.base import make_env, make_task_source
    from leap.rollout import run_episodes
    from leap.students.models import configure_torch_threads, load_student
    from leap.students.policy import StudentPolicy

    with tempfile.TemporaryDirectory() as tmp:
        over: dict = {
            "env": {"name": args.env, "horizon": args.horizon},
            "student": {"model": args.model, "max_new_tokens": args.max_new_tokens},
        }
        if args.env == "alfworld":
            over["env"]["alfworld"] = {
                "games_dir": f"{tmp}/games",
                "n_train": args.episodes,
                "n_valid": 0,
                "n_test": 0,
                "n_test_ood": 0,
                "memory": "unchecked",
            }
        params = Params.model_validate(over)
        src = make_task_source(args.env, params.env, params.seed)
        src.prepare()
        tasks = src.tasks("train")[: args.episodes]
        model, tok = load_student(params.student)
        threads = configure_torch_threads()
        print(
            f"student {args.model} ({next(model.parameters()).dtype}, {threads} torch threads), "
            f"{len(tasks)} {args.env} episodes, horizon {args.horizon}"
        )

        def policy(batch: int, cache: bool = True) -> Timed:
            sp = params.student.model_copy(update={"batch_size": batch})
            p = StudentPolicy(sp, None, "bench", model=model, tokenizer=tok)
            p.engine.prefix_cache = cache
            return Timed(p)

        def env() -> object:
            return make_env(args.env, params.env)

        # 1. batching
        results = {}
        for name, bs in (("one-at-a-time", 1), ("batched", args.batch_size)):
            pol = policy(bs)
            t0 = time.perf_counter()
            trajs = run_episodes(tasks, pol, env, horizon=args.horizon, batch_size=bs, progress=False)
            dt = time.perf_counter() - t0
            n_actions = sum(t.num_actions for t in trajs)
            gen = sum(pol.times)
            results[name] = (dt, [[s.action for s in t.steps] for t in trajs])
            print(
                f"{name:>14}: {len(trajs)} episodes, {n_actions} actions in {dt:6.1f} s -> "
                f"{len(trajs) / dt:.3f} episodes/s; student {gen / n_actions:.3f} s per action"
            )
        same = results["batched"][1] == results["one-at-a-time"][1]
        ratio = results["one-at-a-time"][0] / results["batched"][0]
        print(
            f"batched / one-at-a-time episodes per second: {ratio:.2f}x (batch {args.batch_size}; "
            f"same actions: {same})"
        )

        # 2. per-step latency over a whole-history episode, with and without the cache
        for label, cache in (("with the KV cache", True), ("recomputing the prompt", False)):
            pol = policy(args.batch_size, cache=cache)
            trajs = run_episodes(
                tasks[: args.batch_size],
                pol,
                env,
                horizon=args.horizon,
                batch_size=args.batch_size,
                progress=False,
            )
            steps = list(pol.times)
            n = min(len(t.steps) for t in trajs)
            first, last = steps[0], steps[n - 1]
            per_action = sum(steps) / len(steps) / args.batch_size
            print(
                f"per-step student latency {label:>22}: step 1 {first:.2f} s, step {n} {last:.2f} s "
                f"(ratio {last / first:.2f}); mean {per_action:.3f} s per action"
            )


if __name__ == "__main__":
    main()
