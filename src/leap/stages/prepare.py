"""prepare: tasks for every split and the privileged states of the training tasks."""

from __future__ import annotations

import logging

from leap import paths
from leap.config import Params
from leap.envs.base import make_task_source
from leap.io import write_json, write_jsonl
from leap.stages.common import seed_everything

log = logging.getLogger(__name__)


def run(params: Params) -> dict[str, int]:
    """Writes data/prepared/ (tasks per split, privileged states, manifest, env assets)."""
    seed_everything(params.seed)
    source = make_task_source(params.env.name, params.env, params.seed)
    source.prepare()
    splits = list(dict.fromkeys(["train", *params.env.eval_splits]))
    counts: dict[str, int] = {}
    for split in splits:
        tasks = source.tasks(split)
        if not tasks:
            raise ValueError(f"environment '{params.env.name}' has no tasks in split '{split}'")
        counts[split] = write_jsonl(paths.tasks(split), tasks)
        log.info("%s: %d tasks", split, counts[split])
    train = source.tasks("train")
    # Privileged states exist only for training tasks: evaluation never sees them.
    write_jsonl(paths.privileged("train"), (source.privileged_state(t) for t in train))
    write_json(
        paths.PREPARED / "manifest.json", {"env": params.env.name, "seed": params.seed, "counts": counts}
    )
    return counts
