"""Student prompt: the whole episode as a chat, each step an append, no privileged text, format;
answer parsing and repair; tokens for training (packed demonstrations and corrections)."""

from __future__ import annotations

import jinja2
import pytest

from leap import prompts
from leap.agent import StepContext
from leap.config import StudentParams
from leap.prompts.parsing import format_completion, parse_completion, snap_action
from leap.records import PrivilegedState, Step, StepLabel, Task
from leap.students.prompting import (
    TaskView,
    build_messages,
)

SENTINEL = "ZZ_PRIVILEGED_SENTINEL_42"


def _task(env: str = "alfworld") -> Task:
    return Task(
        task_id="t1",
        env=env,
        split="train",
        category="pick",
        instruction="Your task is to: put a clean apple in the fridge.",
        spec={"game_file": f"/games/{SENTINEL}.tw-pddl"},
    )


def _steps(n: int, obs_len: int = 50) -> list[Step]:
    return [
        Step(
            observation=f"obs{i} " + "o" * obs_len,
            reason=f"reason number {i}",
            action=f"go to shelf {i}",
            privileged={"expert_action": SENTINEL},
        )
        for i in range(n)
    ]


def _ctx(n_steps: int = 5, **kw: object) -> StepContext:
    return StepContext(
        task=_task(),
        history=_steps(n_steps),
        observation="You arrive at shelf 9. On the shelf 9, you see a mug 1.",
        admissible_actions=["go to fridge 1", "take mug 1 from shelf 9", "look"],
        privileged={"expert_action": SENTINEL, "facts": [SENTINEL]},
        privileged_state=PrivilegedState(
            task_id="t1", env="alfworld", facts={"apple": SENTINEL}, plan=[SENTINEL], secrets=[SENTINEL]
        ),
        **kw,  # type: ignore[arg-type]
    )


def _text(msgs: list) -> str:
    return "\n".join(m.content for m in msgs)


def test_messages_are_the_whole_episode_as_a_chat() -> None:
    msgs = build_messages(_ctx(3), StudentParams())
    assert [m.role for m in msgs] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert "Answer each observation with two lines" in msgs[0].content
    assert "Action: <one action>" in msgs[0].content
    # the task is stated once, with the first observation; every step is there
    assert "Your task is to: put a clean apple in the fridge." in msgs[1].content
    assert all("Your task is to" not in m.content for m in msgs[2:])
    assert [m.content for m in msgs[2::2]] == [
        format_completion(StepLabel(reason=f"reason number {i}", action=f"go to shelf {i}")) for i in range(3)
    ]
    assert msgs[-1].content.startswith("You arrive at shelf 9")


def test_each_step_only_appends_to_the_previous_prompt() -> None:
    """What lets the engine keep an episode's KV cache: step t+1's chat starts with step t's chat."""
    params = StudentParams(show_admissible=False)
    for n in range(6):
        ctx, nxt = _ctx(n), _ctx(n + 1)
        nxt.history[n] = Step(observation=ctx.observation, reason="r", action="a")
        before = build_messages(ctx, params)
        after = build_messages(nxt, params)
        assert after[: len(before)] == before
        assert len(after) == len(before) + 2


def test_the_task_is_added_when_the_observation_does_not_state_it() -> None:
    ctx = _ctx(0)
    ctx.observation = "You are in the middle of a room."
    first = build_messages(ctx, StudentParams())[1].content
    assert first.startswith("Task: Your task is to: put a clean apple in the fridge.")
    ctx.observation = "You are in the middle of a room. Your task is to: put a clean apple in the fridge."
    assert "Task:" not in build_messages(ctx, StudentParams())[1].content


@pytest.mark.parametrize("show_admissible", [False, True])
@pytest.mark.parametrize("n_steps", [0, 3, 50])
def test_privileged_text_never_rendered(show_admissible: bool, n_steps: int) -> None:
    params = StudentParams(show_admissible=show_admissible)
    assert SENTINEL not in _text(build_messages(_ctx(n_steps), params))


def test_observations_truncated() -> None:
    ctx = _ctx(2)
    ctx.observation = "A" * 5000
    ctx.history = _steps(2, obs_len=5000)
    text = _text(build_messages(ctx, StudentParams(max_observation_chars=100)))
    assert "A" * 100 not in text and "A" * 90 in text
    assert "o" * 100 not in text
    assert len(text) < 2000


def test_admissible_only_when_asked() -> None:
    assert "take mug 1 from shelf 9" not in _text(
        build_messages(_ctx(), StudentParams(show_admissible=False))
    )
    assert "take mug 1 from shelf 9" in _text(build_messages(_ctx(), StudentParams(show_admissible=True)))


def test_unknown_env_uses_default_system_template() -> None:
    assert prompts.for_env("no_such_env", "student_system.j2", "default/x.j2") == "default/x.j2"
    ctx = _ctx()
    ctx.task = _task(env="no_such_env")
    assert "no_such_env" in build_messages(ctx, StudentParams())[0].content


def test_templates_see_no_task_spec() -> None:
    tpl = prompts.jinja_env().from_string("{{ task.spec }}")
    with pytest.raises(jinja2.UndefinedError):
        tpl.render(task=TaskView.of(_task()))


def test_format_completion_round_trips() -> None:
    label = StepLabel(reason="The apple may be in the fridge.", action="open fridge 1")
    text = format_completion(label)
    assert text == "Reason: The apple may be in the fridge.\nAction: open fridge 1"
    assert parse_completion(text) == (label.reason, label.action, True)


@pytest.mark.parametrize(
    ("text", "reason", "action", "ok"),
    [
        ("Reason: look around.\nAction: look", "look around.", "look", True),
        ("  reason:   spaced  \n   ACTION:   go to shelf 1   \n", "spaced", "go to shelf 1", True),
        ("**Reason:** bold\n**Action:** open drawer 1", "bold", "open drawer 1", True),
        ("**Reason**: b\n**Action**: `open drawer 1`", "b", "open drawer 1", True),
        ("Action: take apple 1 from countertop 1", "", "take apple 1 from countertop 1", True),
        ("The Action: menu is odd.\nAction: look", "The Action: menu is odd.", "look", True),
        ("Reason: I will take action: go to x", "I will take", "go to x", True),
        ("Reason: a\nAction: go to x\nObservation: blah\nAction: look", "a", "go to x", True),
        ("Reason: a\nAction: go to x<|im_end|>junk", "a", "go to x", True),
        ("Reason: a\nAction: go to x Observation: you see", "a", "go to x", True),
        ("Reason: a\nAction:\n```bash\nls -la /testbed\n```", "a", "ls -la /testbed", True),
        ("Reason: a\nAction: ```ls -la```", "a", "ls -la", True),
        ("Reason: a\nAction:\ngo to fridge 1", "a", "go to fridge 1", True),
        ("Reason: line one\nline two\nAction: look", "line one line two", "look", True),
        ('- Reason: x\n- Action: "put apple 1 in/on fridge 1"', "x", "put apple 1 in/on fridge 1", True),
        ("Reason: x\nAction: rm *.txt", "x", "rm *.txt", True),
        ("Thought: x\nAction: ls .", "x", "ls .", True),
        ("### Action: search[red shoes]", "", "search[red shoes]", True),
        ("Action: Action: look", "", "look", True),
        ("Reason: only a reason", "only a reason", "", False),
        ("Reason: a\nAction:", "a", "", False),
        ("Reason: a\nAction:\nReason: b", "a", "", False),
        ("", "", "", False),
        ("\x00\x01 garbage ### \ufffd", "", "", False),
    ],
)
def test_parse_completion(text: str, reason: str, action: str, ok: bool) -> None:
    assert parse_completion(text) == (reason, action, ok)


ADMISSIBLE = ["go to fridge 1", "go to shelf 1", "take apple 1 from countertop 1", "look"]


@pytest.mark.parametrize(
    ("action", "expected", "repaired"),
    [
        ("go to fridge 1", "go to fridge 1", False),
        ("go to fridge", "go to fridge 1", True),
        ("Go To Fridge 1", "go to fridge 1", True),
        ("take apple from countertop 1", "take apple 1 from countertop 1", True),
        ("jump over the moon", "jump over the moon", False),
        ("", "", False),
    ],
)
def test_snap_action_at_the_default_threshold(action: str, expected: str, repaired: bool) -> None:
    assert snap_action(action, ADMISSIBLE) == (expected if repaired else None)


def test_snap_without_admissible_list_is_noop() -> None:
    assert snap_action("go to fridge", None) is None
    assert snap_action("go to fridge", []) is None


def test_snap_threshold_is_the_param() -> None:
    # "go to fridge" vs "go to fridge 1" scores about 92: snapped at 80 and 90, not at 95.
    assert snap_action("go to fridge", ADMISSIBLE, 90) == "go to fridge 1"
    assert snap_action("go to fridge", ADMISSIBLE, 95) is None
    assert snap_action("take apple from countertop 1", ADMISSIBLE, 99) is None


def test_whole_scene_stays_in_view() -> None:
    """No window: the first observation (every receptacle in the room) and every step stay."""
    text = _text(build_messages(_ctx(40), StudentParams()))
    assert "obs0 " in text and "go to shelf 0" in text and "go to shelf 39" in text
