"""Generate ALFWorld games in the official layout, from the alfworld package's own domain and data.

``<root>/json_2.1.1/<split dir>/<task_type>-<Object>-None-<Receptacle>-<scene>/<trial>/``
holding ``game.tw-pddl`` (alfworld's ``alfred.pddl`` domain, its ``alfred.twl2`` grammar with the
goal text from ``add_task_to_grammar``, a PDDL problem, ``solvable`` and the expert ``walkthrough``)
and ``traj_data.json`` (``task_type``, ``pddl_params``, ``turk_annotations``), which is what
alfworld's own loaders read. Split dirs use the official names: ``train``, ``valid_train`` (our
"valid"), ``valid_seen`` (our "test": seen scenes) and ``valid_unseen`` (our "test_ood": ALFRED's
held-out scenes).

A room is a real ALFRED floor plan cut down to ``max_receptacles`` receptacles (kept: those the
task needs), with the target object(s) and a few distractors placed where
``alfworld.gen.constants`` says they may be. A game is kept only if it loads on the real engine,
is not won at reset, the privileged expert wins it within ``max_plan_length`` actions, and (by
default) alfworld's handcoded expert wins it too. Everything is seeded: same params and seed,
same games, byte for byte.

These are ALFWorld-format games on the real engine, not the official splits: their scores are not
comparable with published ALFWorld results.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leap.envs.alfworld import scenes
from leap.envs.alfworld.engine import Engine, world_from_facts
from leap.envs.alfworld.expert import PROCESS, TaskParams, next_action
from leap.envs.alfworld.params import AlfworldParams
from leap.envs.alfworld.pddl import Obj, Problem, Receptacle
from leap.envs.base import EnvError
from leap.io import atomic_path, write_json

GENERATOR_VERSION = 1
# our split -> the official directory it lives in
SPLIT_DIRS = {"train": "train", "valid": "valid_train", "test": "valid_seen", "test_ood": "valid_unseen"}
MANIFEST = "manifest.json"
_APPLIANCE = {t: app for t, (_s, app, _v) in PROCESS.items()}  # task type -> appliance class (lower case)
_CLASS_OF_LOWER = {"sinkbasin": "SinkBasin", "microwave": "Microwave", "fridge": "Fridge"}
_ATTEMPTS_PER_GAME = 60


@dataclass
class GameRecord:
    split: str
    game_file: str  # relative to the games root
    task_type: str
    scene: int
    plan: list[str]
    instruction: str


@contextlib.contextmanager
def seeded_global_random(seed: int | str) -> Iterator[None]:
    """alfworld's add_task_to_grammar and handcoded expert draw from the global ``random``."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def generation_key(params: AlfworldParams, seed: int) -> dict[str, Any]:
    """Everything that determines the generated games (the manifest stores it; prepare compares it)."""
    keys = (
        "task_types",
        "n_train",
        "n_valid",
        "n_test",
        "n_test_ood",
        "max_receptacles",
        "n_distractors",
        "max_plan_length",
        "check_handcoded_expert",
        "max_handcoded_steps",
    )
    return {"version": GENERATOR_VERSION, "seed": seed, **{k: getattr(params, k) for k in keys}}


# ---------------------------------------------------------------- sampling a room and a task


def _alfred_id(cls: str, rng: random.Random) -> str:
    x, y, z = (rng.uniform(-3, 3) for _ in range(3))
    where = f"{x:+06.2f}|{abs(y):+06.2f}|{z:+06.2f}"
    if cls in scenes.BASINS:
        # The engine appends "basin" to any id holding "Basin": a bare "SinkBasin|..." id
        # became "sinkbasinbasin 1", so a basin gets its fixture's id as ALFRED writes it.
        return f"{cls.removesuffix('Basin')}|{where}|{cls}"
    return f"{cls}|{where}"


def _objects_for(task_type: str, scene: scenes.Scene) -> list[str]:
    objs = list(scene.objects)
    kind = {
        "pick_clean_then_place_in_recep": "Cleanable",
        "pick_heat_then_place_in_recep": "Heatable",
        "pick_cool_then_place_in_recep": "Coolable",
    }.get(task_type)
    if kind:
        objs = [o for o in objs if o in scenes.action_objects(kind)]
    return objs


def _sample_problem(
    task_type: str, scene: scenes.Scene, params: AlfworldParams, rng: random.Random
) -> tuple[Problem, dict[str, Any]] | None:
    """One random room + goal in ``scene``, or None when the scene cannot host ``task_type``."""
    if scene.room not in scenes.goal_rooms(task_type):
        return None
    legal = scenes.object_to_receptacles()
    present = scene.receptacle_classes()
    appliance = _CLASS_OF_LOWER.get(_APPLIANCE.get(task_type, ""), "")
    if appliance and appliance not in present:
        return None
    look = task_type == "look_at_obj_in_light"
    holders = [c for c in scenes.LAMP_HOLDERS if c in present]
    if look and not (scene.has_lamp and holders):
        return None
    objs = _objects_for(task_type, scene)
    rng.shuffle(objs)
    for obj in objs:
        can_hold = legal[obj] & present
        parents = sorted(can_hold - {appliance}) if not look else [""]
        rng.shuffle(parents)
        for parent in parents:
            sources = sorted(can_hold - {parent})
            if sources:
                return _build(task_type, scene, obj, parent, appliance, holders, sources, params, rng)
    return None


def _build(
    task_type: str,
    scene: scenes.Scene,
    obj: str,
    parent: str,
    appliance: str,
    holders: list[str],
    sources: list[str],
    params: AlfworldParams,
    rng: random.Random,
) -> tuple[Problem, dict[str, Any]]:
    legal = scenes.object_to_receptacles()
    by_cls: dict[str, list[scenes.ReceptacleInstance]] = {}
    for r in scene.receptacles:
        by_cls.setdefault(r.cls, []).append(r)
    look = task_type == "look_at_obj_in_light"
    lamp_holder = rng.choice(holders) if look else ""
    needed = [c for c in (parent, appliance, lamp_holder, rng.choice(sources)) if c]
    chosen: list[scenes.ReceptacleInstance] = []
    for cls in needed:
        if not any(r.cls == cls for r in chosen):
            chosen.append(rng.choice(by_cls[cls]))
    others = [r for r in scene.receptacles if r not in chosen]
    rng.shuffle(others)
    chosen += others[: max(0, params.max_receptacles - len(chosen))]

    # Unique spots: a shared spot would make "go to" name several receptacles at once.
    used: set[tuple[int, int, int, int]] = set()
    receps: list[Receptacle] = []
    for r in sorted(chosen, key=lambda r: (r.cls, r.alfred_id)):
        pose = r.pose or (
            rng.randint(-12, 12),
            rng.randint(-12, 12),
            rng.randint(0, 3),
            rng.choice((0, 30, 45, 60)),
        )
        while pose in used:
            pose = (pose[0] + 1, *pose[1:])
        used.add(pose)
        alfred_id = r.alfred_id or _alfred_id(r.cls, rng)
        receps.append(Receptacle(r.cls, alfred_id, pose))
    agent = (rng.randint(-12, 12), rng.randint(-12, 12), rng.randint(0, 3), 30)
    while agent in used:
        agent = (agent[0] + 1, *agent[1:])

    def fits(ocls: str, exclude: str = "") -> list[Receptacle]:
        return [r for r in receps if r.cls in legal.get(ocls, ()) and r.cls != exclude]

    action = {k: scenes.action_objects(k) for k in ("Cleanable", "Heatable", "Coolable")}

    def flags(ocls: str) -> tuple[str, ...]:
        out = ["pickupable"]
        out += [k.lower() for k in ("Cleanable", "Heatable", "Coolable") if ocls in action[k]]
        return tuple(out)

    objects: list[Obj] = []
    ids: set[str] = set()

    def add(ocls: str, recep: Receptacle, fl: tuple[str, ...]) -> None:
        oid = _alfred_id(ocls, rng)
        while oid in ids:
            oid = _alfred_id(ocls, rng)
        ids.add(oid)
        objects.append(Obj(ocls, oid, recep.alfred_id, fl))

    n_targets = rng.choice((2, 3) if task_type == "pick_two_obj_and_place" else (1, 1, 2))
    for _ in range(n_targets):  # never in a receptacle of the goal's class: the goal must not hold at reset
        add(obj, rng.choice(fits(obj, exclude=parent)), flags(obj))
    pool = [o for o in scene.objects if o != obj and fits(o)]
    rng.shuffle(pool)
    for ocls in pool[: params.n_distractors]:
        add(ocls, rng.choice(fits(ocls)), flags(ocls))
    toggle = ""
    if look:
        toggle = scenes.LAMP_CLASS
        holder = next(r for r in receps if r.cls == lamp_holder)
        add(toggle, holder, ("toggleable",))

    import alfworld.gen.goal_library as glib

    goal = glib.gdict[task_type]["pddl"].format(obj=obj, recep=parent, toggle=toggle, mrecep="")
    classes = {o.cls for o in objects}
    can_contain = {r.cls: {o for o in classes if r.cls in legal.get(o, ())} for r in receps}
    problem = Problem(
        receptacles=receps, objects=objects, agent_pose=agent, goal=goal, can_contain=can_contain
    )
    pddl_params = {
        "object_target": obj,
        "parent_target": parent,
        "toggle_target": toggle,
        "mrecep_target": "",
        "object_sliced": False,
    }
    return problem, pddl_params


# ---------------------------------------------------------------- checking a game on the engine


def play_expert(engine: Engine, game_file: str, task: TaskParams, max_steps: int) -> tuple[list[str], bool]:
    """Run the privileged expert from reset; return (actions, won)."""
    state = engine.reset(game_file)
    plan: list[str] = []
    while not state["won"] and len(plan) < max_steps:
        action = next_action(world_from_facts(state["facts"]), task)
        if action is None or action not in state["admissible_commands"]:
            return plan, False
        plan.append(action)
        state = engine.step(action)
    return plan, bool(state["won"])


def handcoded_expert_wins(engine: Engine, game_file: str, max_steps: int, seed: int | str) -> bool:
    """Does alfworld's handcoded expert win? (Run as AlfredExpert does, with 'move' read as 'put'.)"""
    from alfworld.agents.expert import HandCodedAgentFailed, HandCodedAgentTimeout, HandCodedTWAgent

    agent = HandCodedTWAgent(max_steps=max_steps)
    with seeded_global_random(seed):  # it breaks ties with random.choice
        state = engine.reset(game_file)
        agent.reset(game_file)
        agent.observe(state["feedback"])
        action = "look"
        for _ in range(max_steps):
            state = engine.step(action)
            if state["won"]:
                return True
            # alfworld 0.4.2's expert tracks "put" but the grammar says "move X to Y".
            last = "put " + action[5:] if action.startswith("move ") else action
            try:
                nxt = agent.act(state, 0, state["won"], last)
            except (HandCodedAgentFailed, HandCodedAgentTimeout):
                return False
            except Exception:  # it has bugs of its own (e.g. IndexError when a receptacle class is absent)
                return False
            action = nxt if nxt in state["admissible_commands"] else "look"
    return False


# ---------------------------------------------------------------- writing games


def _task_dir(task_type: str, pp: dict[str, Any], scene: int) -> str:
    recep = pp["toggle_target"] if task_type == "look_at_obj_in_light" else pp["parent_target"]
    return f"{task_type}-{pp['object_target']}-None-{recep}-{scene}"


def _goal_text(grammar: str) -> str:
    m = re.search(r"Your task is to: (.*?)\.\"", grammar)
    if not m:
        raise EnvError("could not find the goal text in the generated grammar")
    return m.group(1)


def _write_game(trial_dir: Path, game: dict[str, Any], traj: dict[str, Any]) -> None:
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / "game.tw-pddl").write_text(json.dumps(game), encoding="utf-8")
    (trial_dir / "traj_data.json").write_text(json.dumps(traj, indent=2, sort_keys=True), encoding="utf-8")


def _split_order(params: AlfworldParams) -> list[tuple[str, int]]:
    return [
        ("train", params.n_train),
        ("valid", params.n_valid),
        ("test", params.n_test),
        ("test_ood", params.n_test_ood),
    ]


class _Writer:
    """Samples, writes and checks one game at a time into a (temporary) games root."""

    def __init__(self, root: Path, params: AlfworldParams, seed: int) -> None:
        from alfworld.info import ALFRED_PDDL_PATH, ALFRED_TWL2_PATH

        self.root, self.params, self.seed = root, params, seed
        self.domain = Path(ALFRED_PDDL_PATH).read_text()
        self.grammar = Path(ALFRED_TWL2_PATH).read_text()
        self.engine = Engine()
        self.rejected: Counter[str] = Counter()
        self.seen: set[str] = set()

    def attempt(self, split: str, idx: int, attempt: int, task_type: str) -> GameRecord | None:
        from alfworld.agents.utils.misc import add_task_to_grammar

        seed = self.seed
        rng = random.Random(f"{seed}:{split}:{idx}:{attempt}")
        scene = scenes.load_scene(rng.choice(scenes.scene_pool(split)))
        sampled = _sample_problem(task_type, scene, self.params, rng)
        if sampled is None:
            self.rejected["scene cannot host task"] += 1
            return None
        problem, pp = sampled
        pddl = problem.to_pddl(f"plan_{split}_{idx}")
        digest = hashlib.sha256(pddl.encode()).hexdigest()
        if digest in self.seen:
            return None
        traj: dict[str, Any] = {
            "task_type": task_type,
            "pddl_params": pp,
            "task_id": f"leap_{seed}_{split}_{idx:04d}",
            "scene": {"floor_plan": f"FloorPlan{scene.num}", "scene_num": scene.num},
        }
        with seeded_global_random(f"{seed}:{split}:{idx}:{attempt}:goal"):
            grammar = add_task_to_grammar(self.grammar, traj)
        goal = _goal_text(grammar)
        ann = {"task_desc": goal, "high_descs": [], "assignment_id": "leap-generated", "votes": []}
        traj["turk_annotations"] = {"anns": [ann]}
        trial = (
            self.root
            / "json_2.1.1"
            / SPLIT_DIRS[split]
            / _task_dir(task_type, pp, scene.num)
            / f"trial_T{seed:08d}_{split}_{idx:04d}"
        )
        game = {
            "pddl_domain": self.domain,
            "grammar": grammar,
            "pddl_problem": pddl,
            "solvable": True,
            "walkthrough": [],
        }
        _write_game(trial, game, traj)
        plan = _check(self.engine, str(trial / "game.tw-pddl"), traj, self.params, f"{seed}:{digest}")
        if isinstance(plan, str):  # rejected: remove it (and its task dir if now empty)
            self.rejected[plan] += 1
            shutil.rmtree(trial)
            with contextlib.suppress(OSError):
                trial.parent.rmdir()
            return None
        game["walkthrough"] = plan
        _write_game(trial, game, traj)
        self.seen.add(digest)
        rel = str(trial.relative_to(self.root) / "game.tw-pddl")
        return GameRecord(split, rel, task_type, scene.num, plan, goal)


def generate(
    root: str | Path, params: AlfworldParams, seed: int, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Write all splits under ``root`` (replaced whole, atomically) and return the manifest."""
    records: list[GameRecord] = []
    with atomic_path(root) as tmp_root:
        writer = _Writer(tmp_root, params, seed)
        try:
            for split, n in _split_order(params):
                types = list(params.task_types)
                random.Random(f"{seed}:{split}:types").shuffle(types)
                for idx in range(n):
                    task_type = types[idx % len(types)]  # balanced across task types
                    rec = None
                    for attempt in range(_ATTEMPTS_PER_GAME):
                        rec = writer.attempt(split, idx, attempt, task_type)
                        if rec is not None:
                            break
                    if rec is None:
                        raise EnvError(
                            f"could not generate a valid {task_type} game for split {split} in "
                            f"{_ATTEMPTS_PER_GAME} attempts (rejections: {dict(writer.rejected)})"
                        )
                    records.append(rec)
                    if progress:
                        progress(f"{split} {idx + 1}/{n} {task_type} scene {rec.scene} plan {len(rec.plan)}")
        finally:
            writer.engine.close()
        manifest = _manifest(params, seed, records, dict(writer.rejected))
        write_json(tmp_root / MANIFEST, manifest)
    return manifest


def _check(
    engine: Engine, game_file: str, traj: dict[str, Any], params: AlfworldParams, seed: str
) -> list[str] | str:
    """The expert's plan if the game is good, else why it is rejected."""
    task = TaskParams.from_traj(traj)
    try:
        engine.load(game_file)  # always: a rejected attempt may have written the same path
        state = engine.reset(game_file)
        if state["won"]:
            return "won at reset"
        plan, won = play_expert(engine, game_file, task, params.max_plan_length)
        if not won:
            return "expert did not win within max_plan_length"
        if params.check_handcoded_expert and not handcoded_expert_wins(
            engine, game_file, params.max_handcoded_steps, seed
        ):
            return "handcoded expert did not win"
    except EnvError as e:
        return f"engine error: {str(e)[:80]}"
    return plan


def _manifest(
    params: AlfworldParams, seed: int, records: list[GameRecord], rejected: dict[str, int]
) -> dict[str, Any]:
    return {
        "generator": "leap.envs.alfworld.generate",
        "key": generation_key(params, seed),
        "note": "ALFWorld-format games on the real engine; not the official splits, not comparable to "
        "published ALFWorld scores",
        "rejected": dict(sorted(rejected.items())),
        "games": [vars(r) for r in records],
    }


def read_manifest(root: str | Path) -> dict[str, Any] | None:
    path = Path(root) / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
