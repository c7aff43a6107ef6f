"""ALFRED floor plans as the generator sees them: which receptacles and objects each scene has.

Read from the alfworld package's own data (``alfworld/gen/layouts/FloorPlan*-objects.json`` lists the
classes in a scene; ``-openable.json`` gives receptacle instances with poses) and its constants (legal
object/receptacle pairs, which objects can be cleaned/heated/cooled, ALFRED's train/test scene split).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cache

# Receptacle classes that the TextWorld domain cannot use as fixed receptacles (they are objects there).
_MOVABLE = {"Bowl", "Box", "Cup", "Mug", "Plate", "Pan", "Pot"}
# Lamps a "look at X under the desklamp" task can use; they sit in one of these receptacles.
LAMP_CLASS = "DeskLamp"
LAMP_HOLDERS = ("Desk", "SideTable", "Dresser", "Shelf")
# Objects that never appear as movable task objects or distractors (structural, or no legal receptacle).
_NOT_OBJECTS = {
    "DeskLamp",
    "FloorLamp",
    "LightSwitch",
    "StoveKnob",
    "Faucet",
    "Window",
    "Blinds",
    "Curtains",
    "Chair",
    "Mirror",
    "Painting",
    "Poster",
    "ShowerCurtain",
    "ShowerDoor",
    "ShowerGlass",
    "ShowerHead",
    "Television",
    "HousePlant",
    "Lamp",
    "Sink",
    "Bathtub",
    "Footstool",
    "Boots",
}

ROOM_TYPES = {
    "Kitchen": range(1, 31),
    "LivingRoom": range(201, 231),
    "Bedroom": range(301, 331),
    "Bathroom": range(401, 431),
}


@dataclass(frozen=True)
class ReceptacleInstance:
    cls: str  # ALFRED class, e.g. "CounterTop"
    alfred_id: str  # e.g. "CounterTop|+00.69|+00.95|-02.48" (sink basins: "Sink|...|SinkBasin")
    pose: tuple[int, int, int, int] | None  # grid x, grid z, rotation/90, camera horizon; None: to invent


@dataclass(frozen=True)
class Scene:
    num: int
    room: str
    receptacles: tuple[ReceptacleInstance, ...]
    objects: tuple[str, ...]  # movable object classes present in the scene
    has_lamp: bool = field(default=False)

    def receptacle_classes(self) -> set[str]:
        return {r.cls for r in self.receptacles}


# Receptacles that are the usable part of a fixture: ALFRED's id is "Sink|x|y|z|SinkBasin".
BASINS = ("SinkBasin", "BathtubBasin")


def _constants():  # lazy: importing alfworld is slow-ish and optional for `import leap.envs`
    import alfworld.gen.constants as constants

    return constants


def layouts_dir() -> str:
    import alfworld.gen

    return os.path.join(os.path.dirname(alfworld.gen.__file__), "layouts")


def room_of(num: int) -> str:
    for room, nums in ROOM_TYPES.items():
        if num in nums:
            return room
    raise ValueError(f"scene {num} is not an ALFRED floor plan number")


def static_receptacle_classes() -> set[str]:
    return set(_constants().RECEPTACLES) - _MOVABLE


@cache
def object_to_receptacles() -> dict[str, frozenset[str]]:
    """Object class -> receptacle classes that may hold it (alfworld.gen.constants.VAL_RECEPTACLE_OBJECTS)."""
    out: dict[str, set[str]] = {}
    for recep, objs in _constants().VAL_RECEPTACLE_OBJECTS.items():
        if recep in _MOVABLE:
            continue
        for obj in objs:
            out.setdefault(obj, set()).add(recep)
    return {k: frozenset(v) for k, v in out.items()}


def action_objects(kind: str) -> frozenset[str]:
    """'Cleanable' | 'Heatable' | 'Coolable' | 'Toggleable' object classes."""
    return frozenset(o for o in _constants().VAL_ACTION_OBJECTS[kind] if "Sliced" not in o)


def _pose(values: list[float]) -> tuple[int, int, int, int]:
    x, z, rot, hor = values
    return round(x / 0.25), round(z / 0.25), int(rot) // 90 % 4, int(hor)


@cache
def load_scene(num: int) -> Scene:
    base = os.path.join(layouts_dir(), f"FloorPlan{num}")
    try:
        with open(base + "-objects.json") as f:
            classes: list[str] = json.load(f)
        with open(base + "-openable.json") as f:
            poses: dict[str, list[float]] = json.load(f)
    except OSError as e:
        raise FileNotFoundError(f"floor plan {num} not found in {layouts_dir()}: {e}") from e
    static = static_receptacle_classes()
    receps: list[ReceptacleInstance] = []
    for alfred_id, pose in sorted(poses.items()):
        cls = alfred_id.split("|", 1)[0]
        if cls + "Basin" in BASINS:  # the usable part is the basin, named as ALFRED does
            receps.append(ReceptacleInstance(cls + "Basin", f"{alfred_id}|{cls}Basin", _pose(pose)))
        elif cls in static:
            receps.append(ReceptacleInstance(cls, alfred_id, _pose(pose)))
    present = {r.cls for r in receps}
    for cls in sorted(set(classes) & static - present):  # classes without a pose: one instance, placed later
        receps.append(ReceptacleInstance(cls, "", None))
    legal = object_to_receptacles()
    objects = tuple(sorted(c for c in set(classes) - static - _NOT_OBJECTS if c in legal))
    return Scene(
        num=num, room=room_of(num), receptacles=tuple(receps), objects=objects, has_lamp=LAMP_CLASS in classes
    )


def scene_pool(split: str) -> list[int]:
    """ALFRED's scene split: seen (train) scenes for train/valid/test, held-out scenes for test_ood."""
    c = _constants()
    return sorted(c.TEST_SCENE_NUMBERS if split == "test_ood" else c.TRAIN_SCENE_NUMBERS)


def goal_rooms(task_type: str) -> set[str]:
    return set(_constants().GOALS_VALID[task_type])
