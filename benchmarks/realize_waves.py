"""realize's scoring order: the steps in item order against waves (one step of several trajectories per
batch), on a finished run's corrections of iteration 1 under its BC adapter.

    python benchmarks/realize_waves.py RUN_DIR [N_TRAJECTORIES]   # RUN_DIR: where `leap run-all` ran

Prints both times, their ratio, and the largest difference in a token's log-probability.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from leap.config import load_params
from leap.io import read_jsonl
from leap.records import Correction
from leap.stages.realize import score_corrections, waves
from leap.students.scoring import StepScorer


def main() -> None:
    os.chdir(sys.argv[1])
    n_traj = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    p = load_params("params.yaml")
    corrs = [c for c in read_jsonl(Path("data/iter_1/corrections.jsonl"), Correction) if c.teacher]
    ids = sorted({c.task_id for c in corrs})[:n_traj]
    corrs = [c for c in corrs if c.task_id in ids]
    timed = {}
    # item order: one list, which the engine cuts into batches of student.batch_size rows
    for name, batches in (
        ("item order", [list(range(len(corrs)))]),
        ("waves", waves(corrs, p.student.batch_size)),
    ):
        scorer = StepScorer(p.student, Path("models/iter_0"))  # a fresh engine: nothing cached
        t = time.perf_counter()
        timed[name] = (score_corrections(scorer, corrs, batches), time.perf_counter() - t)
    (old, t_old), (new, t_new) = timed["item order"], timed["waves"]
    diff = max(
        abs(a - b)
        for o, n in zip([*old[0], *old[1]], [*new[0], *new[1]], strict=True)
        for a, b in zip(o.tokens, n.tokens, strict=True)
    )
    print(
        f"{len(corrs)} corrections ({len(ids)} trajectories): item order {t_old:.1f} s, waves {t_new:.1f} s "
        f"-> {t_old / t_new:.2f}x; max |d logprob| {diff:.2e}"
    )


if __name__ == "__main__":
    main()
