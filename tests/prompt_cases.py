"""Every prompt the project renders, over a grid of situations, for the byte-for-byte pin.

``tests/test_prompts_pinned.py`` compares the sha256 of each rendering with
``tests/fixtures/prompts_pinned.json``. A change to a prompt that is meant (a new template, a new
student format) is recorded by regenerating the file::

    python -m tests.prompt_cases --write

and the diff of that file goes into the commit that changes the prompt.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from leap.agent import StepContext
from leap.config import StudentParams
from leap.records import Message, PrivilegedState, Step, StepLabel, Task

PINNED = Path(__file__).parent / "fixtures" / "prompts_pinned.json"
ENVS = ("alfworld", "webshop", "intercode", "toy", "some_new_env")


def _task(env: str) -> Task:
    return Task(
        task_id=f"{env}-7",
        env=env,
        split="train",
        category="cat_a",
        instruction=f"Your task is to: put a clean apple in the fridge ({env}).",
        spec={"hidden": "never shown"},
    )


def _history(n: int, obs_len: int = 120) -> list[Step]:
    return [
        Step(
            observation=f"You arrive at shelf {i}. "
            + "On it you see a vase, a mug and a key. " * (obs_len // 40),
            reason="" if i == 2 else f"I have not looked at shelf {i} yet.",
            action=f"go to shelf {i}",
            valid=i != 1,
            privileged={"expert_action": "go to fridge 1"},
        )
        for i in range(n)
    ]


def _admissible(n: int | None) -> list[str] | None:
    if n is None:
        return None
    return [f"go to shelf {k}" for k in range(n)] + ["look"]


def _ctx(env: str, n_hist: int, n_adm: int | None, privileged: str) -> StepContext:
    secrets = ["apple 1 is in fridge 1", "apple is in fridge 1"]
    ps = None
    step: dict | None = None
    if privileged in ("state", "both"):
        ps = PrivilegedState(
            task_id=f"{env}-7",
            env=env,
            facts={"object_locations": {"apple 1": "fridge 1"}, "gold": ["a", "b"]},
            plan=["go to fridge 1", "open fridge 1", "take apple 1 from fridge 1"],
            secrets=secrets,
        )
    if privileged in ("step", "both"):
        step = {"expert_action": "go to fridge 1", "secrets": secrets[:1], "remaining": 3}
    return StepContext(
        task=_task(env),
        history=_history(n_hist),
        observation="You open the fridge 1. The fridge 1 is open. In it, you see an apple 1 and a "
        + "lettuce 2. " * 30,
        admissible_actions=_admissible(n_adm),
        privileged=step,
        privileged_state=ps,
    )


STUDENT_PARAMS = {
    "default": StudentParams(),
    "short_obs": StudentParams(max_observation_chars=40),
    "admissible": StudentParams(show_admissible=True, max_observation_chars=64),
}


def _student_cases() -> Iterator[tuple[str, Callable[[], list[Message]]]]:
    from leap.students.prompting import build_messages

    for env in ENVS:
        for pname, sp in STUDENT_PARAMS.items():
            for n_hist in (0, 1, 6):
                ctx = _ctx(env, n_hist, 5, "both")
                yield f"student/{env}/{pname}/h{n_hist}", lambda ctx=ctx, sp=sp: build_messages(ctx, sp)


def _teacher_cases() -> Iterator[tuple[str, Callable[[], list[Message]]]]:
    from leap.config import TeacherPromptParams as PromptOptions
    from leap.teachers.prompting import annotation_messages, correction_messages

    styles = {
        "json": PromptOptions(output_format="json"),
        "text": PromptOptions(output_format="text"),
        "compact": PromptOptions(
            output_format="text", style="compact", history_window=2, max_observation_chars=300
        ),
    }
    shapes = [(0, None, "state"), (3, 4, "both"), (12, 90, "step"), (12, 4, "none")]
    k = 0
    for env in ENVS:
        for level in range(5):
            for sname, opts in styles.items():
                for student in (None, StepLabel(reason="I look around.", action="look")):
                    n_hist, n_adm, priv = shapes[k % len(shapes)]
                    k += 1
                    ctx = _ctx(env, n_hist, n_adm, priv)
                    name = f"correct/{env}/l{level}/{sname}/{'student' if student else 'scratch'}"
                    yield (
                        name,
                        lambda ctx=ctx, s=student, lv=level, o=opts: correction_messages(ctx, s, lv, o),
                    )
        for sname in ("json", "text"):
            for n_hist in (0, 3, 12):
                ctx = _ctx(env, n_hist, 4, "both")
                name = f"annotate/{env}/{sname}/h{n_hist}"
                yield name, lambda ctx=ctx, o=styles[sname]: annotation_messages(ctx, "go to fridge 1", o)


def _completion_cases() -> Iterator[tuple[str, Callable[[], list[Message]]]]:
    from leap.prompts.parsing import format_completion

    label = StepLabel(reason="  I need the apple. ", action=" go to fridge 1\n")
    yield "completion", lambda: [Message(role="assistant", content=format_completion(label))]


def cases() -> Iterator[tuple[str, Callable[[], list[Message]]]]:
    yield from _student_cases()
    yield from _teacher_cases()
    yield from _completion_cases()


def digest(messages: list[Message]) -> str:
    blob = json.dumps([[m.role, m.content] for m in messages], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def render_all() -> dict[str, str]:
    return {name: digest(make()) for name, make in cases()}


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.prompt_cases --write")
    PINNED.parent.mkdir(parents=True, exist_ok=True)
    PINNED.write_text(json.dumps(render_all(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {PINNED}")
