"""The ALFWorld task source: games in the official layout, generated here or official (ALFWORLD_DATA).

Split mapping
- generated games (``data_dir: null``): written by :mod:`generate` to ``games_dir`` with
  train -> ``train``, valid -> ``valid_train``, test -> ``valid_seen``, test_ood -> ``valid_unseen``;
- official data (``data_dir``): train -> ``train`` minus ``n_valid`` games carved out
  deterministically for valid, test -> ``valid_seen``, test_ood -> ``valid_unseen``; the
  ``n_*`` counts cap each split (first games in sorted path order). Like alfworld's own loader,
  it skips "movable"/"Sliced" tasks and games not marked solvable.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from leap.envs.alfworld.engine import Engine, read_game, world_from_facts
from leap.envs.alfworld.env import essential_objects, secret_phrases
from leap.envs.alfworld.expert import TaskParams
from leap.envs.alfworld.generate import SPLIT_DIRS, generate, generation_key, read_manifest
from leap.envs.alfworld.params import AlfworldParams
from leap.envs.base import EnvError
from leap.records import PrivilegedState, Task

SPLITS = ("train", "valid", "test", "test_ood")
_OFFICIAL_DIRS = {"train": "train", "test": "valid_seen", "test_ood": "valid_unseen"}


def _goal_from_grammar(grammar: str) -> str:
    marker = "Your task is to: "
    start = grammar.find(marker)
    if start < 0:
        return ""
    end = grammar.find('"', start)
    return grammar[start + len(marker) : end].rstrip(".")


def _scan(split_dir: Path, task_types: set[str]) -> list[Path]:
    """Game files under an official split dir, sorted, filtered as alfworld's AlfredTWEnv filters them."""
    out = []
    for traj in sorted(split_dir.glob("*/*/traj_data.json")):
        d = traj.parent
        if "movable" in str(d) or "Sliced" in str(d) or not (d / "game.tw-pddl").exists():
            continue
        if d.parent.name.split("-", 1)[0] not in task_types:
            continue
        out.append(d / "game.tw-pddl")
    return out


class AlfworldTasks:
    """TaskSource over an official-layout games root."""

    def __init__(self, params: AlfworldParams, seed: int = 0) -> None:
        self.params = params
        self.seed = seed
        self.generated = params.data_dir is None
        self.root = Path(os.path.expandvars(params.data_dir or params.games_dir))

    # ---------------------------------------------------------------- prepare
    @property
    def base(self) -> Path:
        """The json_2.1.1 directory (data_dir may name it or the folder holding it)."""
        if not (self.root / "json_2.1.1").is_dir() and (self.root / "train").is_dir():
            return self.root
        return self.root / "json_2.1.1"

    def is_prepared(self) -> bool:
        if not self.generated:
            return self.base.is_dir()
        manifest = read_manifest(self.root)
        return manifest is not None and manifest.get("key") == generation_key(self.params, self.seed)

    def prepare(self) -> None:
        if self.generated:
            if not self.is_prepared():
                generate(self.root, self.params, self.seed)
        elif not self.is_prepared():
            raise EnvError(
                f"no ALFWorld games at {self.root} (env.alfworld.data_dir: the json_2.1.1 folder "
                "or the folder holding it, e.g. $ALFWORLD_DATA); "
                "set data_dir to null to generate games instead"
            )

    # ---------------------------------------------------------------- tasks
    def game_files(self, split: str) -> list[Path]:
        if split not in SPLITS:
            raise EnvError(f"unknown split '{split}'; ALFWorld has {list(SPLITS)}")
        self.prepare()
        base = self.base
        types = set(self.params.task_types)
        if self.generated:
            return _scan(base / SPLIT_DIRS[split], types)
        limit = {
            "train": self.params.n_train,
            "valid": self.params.n_valid,
            "test": self.params.n_test,
            "test_ood": self.params.n_test_ood,
        }[split]
        if split in ("train", "valid"):
            files = [f for f in _scan(base / "train", types) if _solvable(f)]
            # deterministic carve: the n_valid games with the smallest seeded hash become valid
            ranked = sorted(files, key=lambda f: hashlib.sha256(f"{self.seed}:{f.parent}".encode()).digest())
            valid = set(ranked[: self.params.n_valid])
            files = [f for f in files if (f in valid) == (split == "valid")]
        else:
            files = [f for f in _scan(base / _OFFICIAL_DIRS[split], types) if _solvable(f)]
        return files[:limit]

    def tasks(self, split: str) -> list[Task]:
        out = []
        for f in self.game_files(split):
            traj_id = f"{f.parent.parent.name}/{f.parent.name}"
            game, traj = read_game(str(f))
            out.append(
                Task(
                    task_id=traj_id,
                    env="alfworld",
                    split=split,
                    category=traj["task_type"],
                    instruction=_goal_from_grammar(game["grammar"]),
                    spec={"game_file": str(f)},
                )
            )
        return out

    # ---------------------------------------------------------------- privileged state
    def privileged_state(self, task: Task) -> PrivilegedState:
        game_file = task.spec.get("game_file")
        if not game_file:
            raise EnvError(f"task {task.task_id}: spec has no 'game_file'")
        facts, plan, secrets = _privileged(str(game_file))
        return PrivilegedState(task_id=task.task_id, env="alfworld", facts=facts, plan=plan, secrets=secrets)


def _solvable(game_file: Path) -> bool:
    try:
        with open(game_file) as f:
            return bool(json.load(f).get("solvable", False))
    except (OSError, json.JSONDecodeError):
        return False


@cache
def _privileged(game_file: str) -> tuple[dict[str, Any], list[str], list[str]]:
    """Facts at reset (from the engine), the expert's plan from reset and the secret phrases."""
    from leap.envs.alfworld.generate import play_expert

    game, traj = read_game(game_file)
    task = TaskParams.from_traj(traj)
    engine = Engine()
    try:
        w = world_from_facts(engine.reset(game_file)["facts"])
        plan = list(game.get("walkthrough") or [])
        if not plan:  # official games without a walkthrough: run the privileged expert
            plan, _won = play_expert(engine, game_file, task, max_steps=100)
    finally:
        engine.close()
    essentials = essential_objects(w, task)
    locations = {o: w.in_recep[o] for o in essentials if o in w.in_recep}
    facts = {
        "task_type": task.task_type,
        "object_target": task.obj,
        "parent_target": task.recep,
        "toggle_target": task.toggle,
        "object_locations": locations,
        "receptacles": sorted(w.recep_cls),
        "closed_receptacles": sorted(r for r in w.openable if r not in w.opened),
        "objects": {o: w.in_recep.get(o, "") for o in sorted(w.obj_cls)},
    }
    secrets = [p for o, r in locations.items() for p in secret_phrases(o, r)]
    return facts, plan, secrets
