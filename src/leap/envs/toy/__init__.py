"""A tiny partially observable environment: find the key hidden in one of several boxes,
then open the door. Runs instantly; used by tests and as the template for adding an
environment (one package + one `register` call).

The key's box is the privileged state: a student must search; a privileged teacher
knows where to look.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from leap.agent import StepContext
from leap.envs.base import register
from leap.envs.toy.params import ToyParams
from leap.records import PrivilegedState, StepLabel, Task


def _box_of(task: Task) -> int:
    return int(task.spec["key_box"])


class ToyEnv:
    name = "toy"

    def __init__(self, params: ToyParams | None = None) -> None:
        self.n_boxes = (params or ToyParams()).n_boxes
        self.task: Task | None = None
        self.opened: set[int] = set()
        self.has_key = False

    def _admissible(self) -> list[str]:
        acts = [f"open box {b}" for b in range(1, self.n_boxes + 1) if b not in self.opened]
        if self.has_key:
            acts.append("open door")
        return acts

    def _info(self, valid: bool = True, won: bool = False) -> dict[str, Any]:
        assert self.task is not None
        box = _box_of(self.task)
        secrets = [] if box in self.opened else [f"key is in box {box}"]
        expert = "open door" if self.has_key else f"open box {box}"
        return {
            "admissible_actions": self._admissible(),
            "valid_action": valid,
            "won": won,
            "score": 1.0 if won else 0.0,
            "privileged": {"expert_action": expert, "secrets": secrets},
        }

    def reset(self, task: Task, *, seed: int | None = None) -> tuple[str, dict[str, Any]]:
        self.task, self.opened, self.has_key = task, set(), False
        n = self.n_boxes
        obs = f"You are in a room with a locked door and {n} boxes (box 1 to box {n}). {task.instruction}"
        return obs, self._info()

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        assert self.task is not None, "call reset() first"
        a = action.strip().lower()
        if a == "open door" and self.has_key:
            return "You unlock the door with the key. You are free!", 1.0, True, False, self._info(won=True)
        if a.startswith("open box "):
            try:
                b = int(a.removeprefix("open box "))
            except ValueError:
                b = -1
            if 1 <= b <= self.n_boxes and b not in self.opened:
                self.opened.add(b)
                if b == _box_of(self.task):
                    self.has_key = True
                    return f"You open box {b}. Inside is a key; you take it.", 0.0, False, False, self._info()
                return f"You open box {b}. It is empty.", 0.0, False, False, self._info()
        return "Nothing happens.", 0.0, False, False, self._info(valid=False)

    def close(self) -> None:
        pass


class ToyTasks:
    def __init__(self, seed: int, params: ToyParams | None = None) -> None:
        self.seed = seed
        self.params = params or ToyParams()

    def prepare(self) -> None:
        pass

    def tasks(self, split: str) -> list[Task]:
        rng = random.Random(f"{self.seed}-{split}")
        n_boxes = self.params.n_boxes
        count = {
            "train": self.params.n_train,
            "valid": self.params.n_valid,
            "test": self.params.n_test,
            "test_ood": self.params.n_test_ood,
        }.get(split, 0)
        return [
            Task(
                task_id=f"toy-{split}-{k}",
                env="toy",
                split=split,
                category="near" if (box := rng.randint(1, n_boxes)) <= n_boxes // 2 else "far",
                instruction="Your task is to: find the key and open the door.",
                spec={"key_box": box},
            )
            for k in range(count)
        ]

    def privileged_state(self, task: Task) -> PrivilegedState:
        box = _box_of(task)
        return PrivilegedState(
            task_id=task.task_id,
            env="toy",
            facts={"key_box": box},
            plan=[f"open box {box}", "open door"],
            secrets=[f"key is in box {box}"],
        )


def oracle(ctx: StepContext, student: StepLabel | None, level: int) -> StepLabel:
    admissible = ctx.admissible_actions or []
    if "open door" in admissible:
        return StepLabel(reason="I have the key, so I can open the door.", action="open door")
    if level == 0 or not ctx.privileged:
        nxt = admissible[0] if admissible else "open box 1"
        return StepLabel(reason="I have not found the key yet, so I check the next unopened box.", action=nxt)
    action = ctx.privileged["expert_action"]
    if level >= 4:
        box = action.removeprefix("open box ")
        return StepLabel(reason=f"The key is in box {box}, so I open it.", action=action)
    return StepLabel(reason="I need the key; this box looks worth checking.", action=action)


register(
    "toy",
    make_env=lambda params, horizon: ToyEnv(params),
    make_tasks=lambda params, seed: ToyTasks(seed, params),
    params=ToyParams,
    oracle=oracle,
    prompts_dir=Path(__file__).parent / "prompts",
)
