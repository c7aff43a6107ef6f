"""A tiny partially observable environment in which a privileged teacher has something realizable to
teach. Runs instantly; used by tests (including the test that LEAP learns) and as the template for
adding an environment (one package + one `register` call).

A key is hidden in one of ``n_boxes`` boxes; with the key, "open door" wins. In a share ``cue_rate``
of the rooms a smell gives the key's box away ("A smell of mint hangs in the air": mint means box 2,
the same in every room, to be learned); elsewhere the air "smells of nothing in particular" and the
first box is a guess. Opening a wrong box springs a trap: the key is gone, but a lever appears, and
"pull lever" opens the door (also admissible from then on, and useless: "push lever", "knock on
door", "shout for help", "wait").

The key's box is the privileged state. The privileged expert opens it at once, so its
demonstrations never spring the trap: behaviour cloning learns the smells but has never seen the
lever, and after a wrong guess it is in a state its demonstrations never covered. The teacher's
corrections there (the trap is visible: pull the lever) are realizable from what the student sees:
that is what DAgger-style correction adds over cloning. (Its first guess in a room without a smell
is not realizable, but it is uniform, so it biases nothing.)
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from leap.agent import StepContext
from leap.envs.base import register
from leap.envs.toy.params import ToyParams
from leap.records import PrivilegedState, StepLabel, Task

SCENTS = ("pine", "mint", "rose", "lemon", "sage", "cedar", "smoke", "honey")  # box k smells of SCENTS[k-1]
INSTRUCTION = "Your task is to: find the key and open the door."
NO_SMELL = "The air smells of nothing in particular."
TRAP = "Click: a trapdoor swallows the key. A lever sticks out of the wall."
LEVER = "pull lever"
DISTRACTIONS = ("push lever", "knock on door", "shout for help", "wait")  # admissible after the trap, useless


def _box_of(task: Task) -> int:
    return int(task.spec["key_box"])


class ToyEnv:
    name = "toy"

    def __init__(self, params: ToyParams | None = None) -> None:
        self.n_boxes = (params or ToyParams()).n_boxes
        self.task: Task | None = None
        self.opened: set[int] = set()
        self.has_key = False
        self.trapped = False  # the key fell through the trapdoor

    def _admissible(self) -> list[str]:
        acts = [f"open box {b}" for b in range(1, self.n_boxes + 1) if b not in self.opened]
        if self.trapped and not self.has_key:
            acts += [LEVER, *DISTRACTIONS]
        if self.has_key:
            acts.append("open door")
        return acts

    def _info(self, valid: bool = True, won: bool = False) -> dict[str, Any]:
        assert self.task is not None
        box = _box_of(self.task)
        secrets = [] if box in self.opened or self.trapped else [f"key is in box {box}"]
        expert = "open door" if self.has_key else LEVER if self.trapped else f"open box {box}"
        return {
            "admissible_actions": self._admissible(),
            "valid_action": valid,
            "won": won,
            "score": 1.0 if won else 0.0,
            "privileged": {"expert_action": expert, "secrets": secrets},
        }

    def reset(self, task: Task, *, seed: int | None = None) -> tuple[str, dict[str, Any]]:
        self.task, self.opened, self.has_key, self.trapped = task, set(), False, False
        n = self.n_boxes
        scent_box = task.spec.get("scent_box")
        air = f"A smell of {SCENTS[int(scent_box) - 1]} hangs in the air." if scent_box else NO_SMELL
        obs = (
            f"You are in a room with a locked door and {n} boxes (box 1 to box {n}). {air} {task.instruction}"
        )
        return obs, self._info()

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        assert self.task is not None, "call reset() first"
        a = action.strip().lower()
        if a == "open door" and self.has_key:
            return "You unlock the door with the key. You are free!", 1.0, True, False, self._info(won=True)
        if a == LEVER and self.trapped:
            obs = "You pull the lever. The door swings open. You are free!"
            return obs, 1.0, True, False, self._info(won=True)
        if a in DISTRACTIONS and self.trapped:
            return "Nothing happens.", 0.0, False, False, self._info()
        if a.startswith("open box "):
            try:
                b = int(a.removeprefix("open box "))
            except ValueError:
                b = -1
            if 1 <= b <= self.n_boxes and b not in self.opened:
                self.opened.add(b)
                if b == _box_of(self.task) and not self.trapped:
                    self.has_key = True
                    return f"You open box {b}. Inside is a key; you take it.", 0.0, False, False, self._info()
                if self.trapped or self.has_key:
                    return f"You open box {b}. It is empty.", 0.0, False, False, self._info()
                self.trapped = True
                return f"You open box {b}. It is empty. {TRAP}", 0.0, False, False, self._info()
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
        p = self.params
        rng = random.Random(f"{self.seed}-{split}")
        count = {"train": p.n_train, "valid": p.n_valid, "test": p.n_test, "test_ood": p.n_test_ood}.get(
            split, 0
        )
        out = []
        for k in range(count):
            key = rng.randint(1, p.n_boxes)
            smell = rng.random() < p.cue_rate
            out.append(
                Task(
                    task_id=f"toy-{split}-{k}",
                    env="toy",
                    split=split,
                    category="smell" if smell else "no_smell",
                    instruction=INSTRUCTION,
                    spec={"key_box": key, "scent_box": key if smell else None},
                )
            )
        return out

    def privileged_state(self, task: Task) -> PrivilegedState:
        box = _box_of(task)
        return PrivilegedState(
            task_id=task.task_id,
            env="toy",
            facts={"key_box": box},
            plan=[f"open box {box}", "open door"],
            secrets=[f"key is in box {box}"],
        )


def _visible_lead(ctx: StepContext) -> tuple[str, str] | None:
    """The action the visible cues point to, and the reason a student could give for it."""
    texts = [s.observation for s in ctx.history] + [ctx.observation]
    if any(TRAP in t for t in texts):
        return LEVER, "The key is gone, so I pull the lever."
    for k, scent in enumerate(SCENTS, start=1):
        if f"smell of {scent} " in texts[0]:
            return f"open box {k}", "I follow the smell."
    return None


def oracle(ctx: StepContext, student: StepLabel | None, level: int) -> StepLabel:
    del student
    admissible = ctx.admissible_actions or []
    if "open door" in admissible:
        return StepLabel(reason="I have the key, so I open the door.", action="open door")
    lead = _visible_lead(ctx)
    if level == 0 or not ctx.privileged:  # nothing privileged is read on this path
        if lead and lead[0] in admissible:
            return StepLabel(reason=lead[1], action=lead[0])
        nxt = admissible[0] if admissible else "open box 1"
        return StepLabel(reason="I have no lead, so I guess a box.", action=nxt)
    action = ctx.privileged["expert_action"]
    if level >= 4 and action.startswith("open box "):
        return StepLabel(
            reason=f"The key is in box {action.removeprefix('open box ')}, so I open it.", action=action
        )
    if lead and lead[0] == action:  # the visible cue agrees with the privileged fact: say the cue
        return StepLabel(reason=lead[1], action=action)
    return StepLabel(reason="I have no lead, so I guess a box.", action=action)


register(
    "toy",
    make_env=lambda params, horizon: ToyEnv(params),
    make_tasks=lambda params, seed: ToyTasks(seed, params),
    params=ToyParams,
    oracle=oracle,
    prompts_dir=Path(__file__).parent / "prompts",
)
