"""Cost of the InterCode sandbox: one command in a fresh bubblewrap sandbox (own namespaces,
own cgroup) versus the same command run directly by bash on the host, and a whole scored
episode (gold command + submit: the agent's sandbox, the gold sandbox, the file-system diff).

    python benchmarks/intercode_sandbox.py              # needs root, bwrap, the sandbox root
    python benchmarks/intercode_sandbox.py --commands 100 --episodes 20

Prints medians and the sandbox/host ratio. The host baseline runs harmless commands only
(`true`, `ls /`); it is measured in the same run, on the same machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time


def _median_ms(samples: list[float]) -> float:
    return 1000 * statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commands", type=int, default=60, help="commands timed per variant")
    ap.add_argument("--episodes", type=int, default=10, help="scored gold episodes (family 1..5 in turn)")
    args = ap.parse_args()

    from leap.envs.intercode.env import InterCodeEnv, limits_from
    from leap.envs.intercode.params import IntercodeParams
    from leap.envs.intercode.rootfs import RootFS, default_root
    from leap.envs.intercode.sandbox import SandboxHost
    from leap.envs.intercode.tasks import load_records, make_task

    params = IntercodeParams()
    host = SandboxHost(RootFS(default_root(params.root_dir)), limits_from(params))
    print(f"limits: {host.mechanism}")
    rows = []
    try:
        with host.open(1) as sb:
            for cmd in ("true", "ls /"):
                sb.run(cmd)  # warm caches
                sandboxed, direct = [], []
                for _ in range(args.commands):
                    t0 = time.perf_counter()
                    sb.run(cmd)
                    sandboxed.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    subprocess.run(["/bin/bash", "-c", cmd], capture_output=True, check=True)
                    direct.append(time.perf_counter() - t0)
                rows.append((cmd, _median_ms(sandboxed), _median_ms(direct)))
    finally:
        host.close()
    for cmd, s, d in rows:
        print(f"command {cmd!r:8} sandbox {s:7.1f} ms   host bash {d:6.1f} ms   ratio {s / d:5.1f}x")

    recs = load_records()
    by_family = {f: [r for r in recs if r["family"] == f] for f in range(1, 6)}
    env = InterCodeEnv(IntercodeParams(score_every_step=False), horizon=2)
    times, scores = [], []
    try:
        for i in range(args.episodes):
            rec = by_family[i % 5 + 1][i // 5]
            t0 = time.perf_counter()
            env.reset(make_task(rec, "all"))
            env.step(rec["gold"])
            _, reward, *_ = env.step("submit")
            times.append(time.perf_counter() - t0)
            scores.append(reward)
    finally:
        env.close()
    print(
        f"scored gold episode: median {_median_ms(times):.0f} ms over {len(times)} "
        f"(reset + gold command + submit with scoring); mean score {statistics.mean(scores):.2f}"
    )


if __name__ == "__main__":
    main()
