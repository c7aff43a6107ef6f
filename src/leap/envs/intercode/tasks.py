"""InterCode-Bash tasks (icalfa's nl2bash_fs_{1..5}.json, 300 in all) and their splits.

Task: ``task_id`` "fs<k>-<i:03d>" (family k, index i in that family's file), ``category`` "fs_<k>",
``instruction`` the natural-language query, ``spec`` {"family": k, "index": i}. The split rule is
in params.py (first ``n_train`` tasks in icalfa's global order for training, the rest held out).
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from importlib import resources
from typing import Any

from leap.envs.base import EnvError
from leap.envs.intercode.params import IntercodeParams
from leap.envs.intercode.rootfs import FAMILIES, RootFS, build_root, default_root, require_host
from leap.records import PrivilegedState, Task

log = logging.getLogger(__name__)
ENV_NAME = "intercode"
SPLITS = ("train", "valid", "test")


@lru_cache(maxsize=1)
def load_records() -> tuple[dict[str, Any], ...]:
    """All 300 records in icalfa's global order, each with family, index and global index added."""
    out: list[dict[str, Any]] = []
    for k in FAMILIES:
        path = resources.files("icalfa.assets") / "datasets" / f"nl2bash_fs_{k}.json"
        for i, rec in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            out.append({**rec, "family": k, "index": i, "global_index": len(out)})
    return tuple(out)


def record(family: int, index: int) -> dict[str, Any]:
    for rec in load_records():
        if rec["family"] == family and rec["index"] == index:
            return rec
    raise EnvError(f"no InterCode task fs_{family}[{index}]")


def task_id(rec: dict[str, Any]) -> str:
    return f"fs{rec['family']}-{rec['index']:03d}"


def make_task(rec: dict[str, Any], split: str) -> Task:
    return Task(
        task_id=task_id(rec),
        env=ENV_NAME,
        split=split,
        category=f"fs_{rec['family']}",
        instruction=rec["query"],
        spec={"family": rec["family"], "index": rec["index"]},
    )


def _carve(pool: list[Any], k: int) -> tuple[list[Any], list[Any]]:
    """Take k evenly spaced items out of pool: (taken, kept), both in pool order."""
    k = min(k, len(pool))
    picks = {min(len(pool) - 1, int((j + 0.5) * len(pool) / k)) for j in range(k)} if k else set()
    return [x for i, x in enumerate(pool) if i in picks], [x for i, x in enumerate(pool) if i not in picks]


def split_records(params: IntercodeParams) -> dict[str, list[dict[str, Any]]]:
    recs = list(load_records())
    if params.n_train > len(recs):
        raise EnvError(f"env.intercode.n_train={params.n_train} > {len(recs)} tasks")
    train, rest = recs[: params.n_train], recs[params.n_train :]
    if params.valid_from == "train":
        valid, train = _carve(train, params.n_valid)
    else:
        valid, rest = _carve(rest, params.n_valid)
    test = rest if params.n_test is None else _carve(rest, params.n_test)[0]
    return {"train": train, "valid": valid, "test": test}


class IntercodeTaskSource:
    def __init__(self, params: IntercodeParams, seed: int = 0, *, auto_build: bool = True) -> None:
        self.params = params
        self.seed = seed  # splits are seed-independent (see params.py); kept for the protocol
        self.auto_build = auto_build
        self._splits = split_records(params)

    def prepare(self) -> None:
        """Check the sandbox root file system; build it (as root, ~1 min, Debian mirror) if it is missing."""
        root = RootFS(default_root(self.params.root_dir))
        try:
            root.check()
        except EnvError as missing:
            if not self.auto_build:
                raise
            try:
                require_host(build=True)
            except EnvError as cannot:
                raise EnvError(f"{missing}\n(and it cannot be built here: {cannot})") from None
            log.info("building the InterCode root file system at %s", root.path)
            build_root(
                root.path, mirror=self.params.debian_mirror, suite=self.params.debian_suite, log=log.info
            )

    def tasks(self, split: str) -> list[Task]:
        if split == "test_ood":  # InterCode has no out-of-distribution split
            return []
        if split not in self._splits:
            raise EnvError(f"unknown InterCode split '{split}' (have: {', '.join(SPLITS)})")
        return [make_task(r, split) for r in self._splits[split]]

    def privileged_state(self, task: Task) -> PrivilegedState:
        rec = record(int(task.spec["family"]), int(task.spec["index"]))
        return PrivilegedState(
            task_id=task.task_id,
            env=ENV_NAME,
            facts={"gold": rec["gold"], "gold2": rec["gold2"], "difficulty": rec.get("difficulty")},
            plan=[rec["gold"], "submit"],
            secrets=[rec["gold"]],
        )
