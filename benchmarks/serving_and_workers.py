"""Server-backed student and environments in worker processes, against the in-process runner.

    python benchmarks/serving_and_workers.py                 # SmolLM2-135M on generated ALFWorld games
    python benchmarks/serving_and_workers.py --env toy --episodes 8 --horizon 3

In one run, on the same games with the same (untrained) student, greedy:

1. **Env workers**: the non-privileged oracle (λ0; an environment-bound policy: almost all of the
   time is the engine's) in-process, lock-step, and with ``--workers`` environments in worker
   processes: episodes/s and the ratio (the trajectories must be the same).
2. **Server-backed student**: the student in-process (lock-step batches of ``--batch-size``) and
   behind `leap serve --student` on 127.0.0.1 over HTTP (``--concurrency`` episodes in flight, the
   server batching them), with in-process and with worker environments: episodes/s and the ratio
   (the actions must be the same).

On a 2-core CPU the workers compete with the student for the cores; the figures that matter are
on a machine with cores to spare (and, for the server, vLLM on a GPU: see the README).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="alfworld", choices=["alfworld", "toy"])
    ap.add_argument("--model", default="smollm2-135m-instruct", help="student model (alias, HF id or path)")
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--horizon", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=24, help="reason length cap")
    args = ap.parse_args()

    from leap.agent import TeacherPolicy
    from leap.config import Params
    from leap.envs.base import env_maker, make_env, make_task_source
    from leap.envs.workers import WorkerEnv, WorkerLimits
    from leap.rollout import run_episodes
    from leap.students.models import configure_torch_threads
    from leap.students.policy import StudentPolicy
    from leap.students.remote import RemoteStudentPolicy
    from leap.students.serve import StudentServer, create_student_app
    from leap.teachers.oracle import OracleTeacher
    from leap.teachers.serve import BackgroundServer

    with tempfile.TemporaryDirectory() as tmp:
        over: dict[str, Any] = {
            "env": {"name": args.env, "horizon": args.horizon},
            "student": {
                "model": args.model,
                "max_new_tokens": args.max_new_tokens,
                "batch_size": args.batch_size,
            },
        }
        if args.env == "alfworld":
            over["env"]["alfworld"] = {
                "games_dir": f"{tmp}/games",
                "n_train": args.episodes,
                "n_valid": 0,
                "n_test": 0,
                "n_test_ood": 0,
            }
        params = Params.model_validate(over)
        src = make_task_source(args.env, params.env, params.seed)
        src.prepare()
        tasks = src.tasks("train")[: args.episodes]
        maker = env_maker(args.env, params.env)
        limits = WorkerLimits(reset_timeout_s=300.0, step_timeout_s=60.0, memory_mb=4096.0)

        def local_env() -> Any:
            return make_env(args.env, params.env)

        def worker_env() -> Any:
            return WorkerEnv(maker, limits)

        def timed(policy: Any, env: Any, concurrency: int | None) -> tuple[float, list]:
            t0 = time.perf_counter()
            trajs = run_episodes(
                tasks,
                policy,
                env,
                horizon=args.horizon,
                batch_size=args.batch_size,
                concurrency=concurrency,
                progress=False,
            )
            return time.perf_counter() - t0, trajs

        def row(name: str, dt: float, trajs: list) -> None:
            n = sum(t.num_actions for t in trajs)
            print(
                f"{name:>38}: {len(trajs)} episodes, {n} actions in {dt:6.1f} s -> {len(trajs) / dt:.3f} ep/s"
            )

        # 1. env workers, environment-bound policy
        oracle = TeacherPolicy(OracleTeacher(0), privileged=False)
        print(f"{len(tasks)} {args.env} episodes, horizon {args.horizon}; {os.cpu_count()} CPUs")
        dt_in, tr_in = timed(oracle, local_env, None)
        row("oracle λ0, in-process envs", dt_in, tr_in)
        dt_w, tr_w = timed(oracle, worker_env, args.workers)
        row(f"oracle λ0, {args.workers} env workers", dt_w, tr_w)
        same = [t.model_dump() for t in tr_in] == [t.model_dump() for t in tr_w]
        print(
            f"env workers / in-process episodes per second: {dt_in / dt_w:.2f}x (same trajectories: {same})"
        )

        # 2. the student in-process and behind a server
        threads = configure_torch_threads()
        local = StudentPolicy(params.student, None, "bench")
        print(f"student {args.model} ({threads} torch threads), batch {args.batch_size}")
        dt_s, tr_s = timed(local, local_env, None)
        row("student in-process, lock-step", dt_s, tr_s)
        server = StudentServer(params.student, served_name="bench", window_s=0.02)
        with BackgroundServer(create_student_app(server)) as http:
            remote = RemoteStudentPolicy(
                params.student, "bench", base_url=http.base_url, tokenizer=local.tokenizer
            )
            try:
                dt_r, tr_r = timed(remote, local_env, args.concurrency)
                row(f"student served, {args.concurrency} in flight", dt_r, tr_r)
                dt_rw, tr_rw = timed(remote, worker_env, args.workers)
                row(f"student served, {args.workers} env workers", dt_rw, tr_rw)
            finally:
                remote.close()
                server.close()
        acts = [[s.action for s in t.steps] for t in tr_s]
        same = (
            acts
            == [[s.action for s in t.steps] for t in tr_r]
            == [[s.action for s in t.steps] for t in tr_rw]
        )
        print(
            f"served / in-process student episodes per second: {dt_s / dt_r:.2f}x "
            f"(with env workers: {dt_s / dt_rw:.2f}x; same actions: {same})"
        )


if __name__ == "__main__":
    main()
