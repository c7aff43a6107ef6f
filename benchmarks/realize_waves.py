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

from leap.agent import StepContext
from leap.config import load_params
from leap.io import read_jsonl
from leap.records import Correction, StepLabel
from leap.stages.realize import waves
from leap.students.scoring import StepScorer


def _items(cs: list[Correction]) -> list[tuple[StepContext, StepLabel]]:
    out: list[tuple[StepContext, StepLabel]] = []
    for c in cs:
        assert c.teacher is not None
        ctx = StepContext(c.task(), c.history, c.observation, c.admissible_actions)
        out += [(ctx, c.student), (ctx, c.teacher)]
    return out


def main() -> None:
    os.chdir(sys.argv[1])
    n_traj = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    p = load_params("params.yaml")
    corrs = [c for c in read_jsonl(Path("data/iter_1/corrections.jsonl"), Correction) if c.teacher]
    ids = sorted({c.task_id for c in corrs})[:n_traj]
    corrs = [c for c in corrs if c.task_id in ids]
    t = time.perf_counter()
    old = StepScorer(p.student, Path("models/iter_0")).score(_items(corrs))
    t_old = time.perf_counter() - t
    scorer = StepScorer(p.student, Path("models/iter_0"))
    t = time.perf_counter()
    new: dict[int, object] = {}
    for batch in waves(corrs, p.student.batch_size):
        scores = scorer.score(_items([corrs[k] for k in batch]))
        for j, k in enumerate(batch):
            new[2 * k], new[2 * k + 1] = scores[2 * j], scores[2 * j + 1]
    t_new = time.perf_counter() - t
    diff = max(abs(a - b) for i, o in enumerate(old) for a, b in zip(o.tokens, new[i].tokens, strict=True))  # type: ignore[attr-defined]
    print(
        f"{len(corrs)} corrections ({len(ids)} trajectories): item order {t_old:.1f} s, waves {t_new:.1f} s "
        f"-> {t_old / t_new:.2f}x; max |d logprob| {diff:.2e}"
    )


if __name__ == "__main__":
    main()
