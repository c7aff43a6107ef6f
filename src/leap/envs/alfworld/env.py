"""AlfworldEnv: one ALFWorld game (``task.spec["game_file"]``) on the real TextWorld engine.

Observations are the engine's own text (the "-= Welcome to TextWorld =-" banner dropped);
``info["privileged"]`` carries, for the teacher only, the privileged expert's next action and
``secrets``: phrases stating where task-relevant objects are that the agent has not seen yet
(e.g. "apple 1 is in fridge 1"), for the leak check.
"""

from __future__ import annotations

import re
from typing import Any

from leap.envs.alfworld.belief import RANKED, Belief, Goal, memory_line, parse_goal
from leap.envs.alfworld.engine import Engine, World, read_game, world_from_facts
from leap.envs.alfworld.expert import TaskParams, next_action
from leap.envs.base import EnvError
from leap.records import Task

NOTHING = "Nothing happens."
# Observations listing contents: "On the desk 1, you see ..." / "The fridge 1 is open. In it, ..."
_CONTENTS = re.compile(r"(?:On the (.+?), you see|The (.+?) is open\. In it, you see)")
_HIDDEN_COMMANDS = {"help"}  # prints a long manual: useless to the agent, costly in a prompt


def clean_intro(text: str) -> str:
    return re.sub(r"^-= Welcome to TextWorld, ALFRED! =-\s*", "", text).strip()


def normalize_action(action: str) -> str:
    return " ".join(action.strip().strip(".").lower().split())


def essential_objects(w: World, task: TaskParams) -> list[str]:
    """The objects whose hidden location is privileged: the targets (and the lamp)."""
    classes = {task.obj} | ({task.toggle} if task.toggle else set())
    return sorted(o for o, c in w.obj_cls.items() if c in classes)


def secret_phrases(obj: str, recep: str) -> list[str]:
    """Ways a reason could state the fact; the leak check looks for any of them (case-insensitive)."""
    cls = obj.rsplit(" ", 1)[0]
    return [f"{o} is {p} {recep}" for o in (obj, cls) for p in ("in", "on")]


def hidden_secrets(w: World, task: TaskParams, seen: set[tuple[str, str]]) -> list[str]:
    out: list[str] = []
    for o in essential_objects(w, task):
        r = w.in_recep.get(o)
        if r is not None and (o, r) not in seen:
            out += secret_phrases(o, r)
    return out


class AlfworldEnv:
    """Gymnasium-style text environment over one game at a time; create several to batch."""

    name = "alfworld"

    def __init__(self, *, memory: str = "none") -> None:
        self._engine = Engine()
        self._memory = memory
        self._belief = Belief()
        self._goal: Goal | None = None
        self._task_params: dict[str, TaskParams] = {}
        self._game_file: str | None = None
        self._task: TaskParams | None = None
        self._world: World | None = None
        self._seen: set[tuple[str, str]] = set()
        self._won = False

    def reset(self, task: Task, *, seed: int | None = None) -> tuple[str, dict[str, Any]]:
        del seed  # games are deterministic
        game_file = task.spec.get("game_file")
        if not game_file:
            raise EnvError(f"task {task.task_id}: spec has no 'game_file' (got {task.spec})")
        if game_file not in self._task_params:
            _game, traj = read_game(game_file)
            self._task_params[game_file] = TaskParams.from_traj(traj)
        self._game_file = game_file
        self._task = self._task_params[game_file]
        state = self._engine.reset(game_file)
        self._seen, self._won = set(), bool(state["won"])
        obs = clean_intro(state["feedback"])
        self._belief = Belief()
        self._belief.observe(obs)
        self._goal = parse_goal(task.instruction, task.category)
        info = self._info(state, valid=True)
        # The ranked line helps from the first step; the plain lists would only repeat the room.
        if self._memory in RANKED and (line := memory_line(self._belief, self._memory, self._goal)):
            obs = f"{obs}\n{line}"
        return obs, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._task is None:
            raise EnvError("AlfworldEnv.step called before reset")
        command = normalize_action(action)
        state = self._engine.step(command)
        feedback = state["feedback"].strip()
        valid = feedback != NOTHING
        self._won = bool(state["won"])
        info = self._info(state, valid=valid, feedback=feedback, command=command)
        reward = 1.0 if self._won else 0.0
        self._belief.apply(command, feedback)
        if line := memory_line(self._belief, self._memory, self._goal):
            feedback = f"{feedback}\n{line}"
        return feedback, reward, self._won, False, info

    def _info(self, state: Any, *, valid: bool, feedback: str = "", command: str = "") -> dict[str, Any]:
        assert self._task is not None
        w = world_from_facts(state["facts"])
        self._world = w
        for m in _CONTENTS.finditer(feedback):  # contents shown: those facts are no longer hidden
            recep = m.group(1) or m.group(2)
            self._seen |= {(o, r) for o, r in w.in_recep.items() if r == recep}
        if valid and command.startswith("move "):  # the agent put it there itself
            obj, _, recep = command[len("move ") :].partition(" to ")
            self._seen.add((obj, recep))
        admissible = [a for a in state["admissible_commands"] if a not in _HIDDEN_COMMANDS]
        expert = None if self._won else next_action(w, self._task)
        won = bool(state["won"])
        return {
            "admissible_actions": admissible,
            "valid_action": valid,
            "won": won,
            "score": 1.0 if won else 0.0,
            "privileged": {
                "expert_action": expert,
                "secrets": hidden_secrets(w, self._task, self._seen),
            },
        }

    @property
    def world(self) -> World | None:
        """The engine's full state after the last reset/step (teacher-only; for tests and tools)."""
        return self._world

    def close(self) -> None:
        self._engine.close()
