"""Teacher prompts per environment and privilege level, and the leak check."""

from __future__ import annotations

import pytest
from jinja2 import UndefinedError
from teacher_fakes import alfworld_ctx, intercode_ctx, webshop_ctx

from leap import prompts
from leap.agent import StepContext, contexts_from_trajectory
from leap.config import TeacherPromptParams as PromptOptions
from leap.records import Correction, StepLabel, Task
from leap.teachers.leak import find_leaks, leak_rates, measure_leak_rates
from leap.teachers.prompting import (
    annotation_messages,
    correction_messages,
)

CTXS = {"alfworld": alfworld_ctx, "intercode": intercode_ctx, "webshop": webshop_ctx}


@pytest.mark.parametrize("env", sorted(CTXS))
@pytest.mark.parametrize("level", range(5))
def test_correction_prompt_per_env_and_level(env: str, level: int) -> None:
    ctx = CTXS[env]()
    system, user = correction_messages(ctx, StepLabel(reason="my reason", action="my action"), level)
    assert system.role == "system" and user.role == "user"
    assert f"Privilege level {level}" in system.content
    assert {"alfworld": "ALFWorld", "intercode": "InterCode", "webshop": "WebShop"}[env] in system.content
    assert ctx.task.instruction in user.content
    assert "my reason" in user.content and "my action" in user.content
    secret = ctx.privileged_state.secrets[0]  # type: ignore[union-attr]
    # λ0 withholds the privileged state; every other level shows it to the teacher.
    assert (secret in user.content) == (level > 0)
    assert ("Do not reveal privileged facts" in system.content) == (level < 4)
    assert "{{" not in system.content + user.content and "{%" not in user.content


def test_levels_differ_and_json_or_text_format() -> None:
    ctx = alfworld_ctx()
    systems = {correction_messages(ctx, None, lvl)[0].content for lvl in range(5)}
    assert len(systems) == 5
    json_sys = correction_messages(ctx, None, 2, PromptOptions(output_format="json"))[0].content
    text_sys = correction_messages(ctx, None, 2, PromptOptions(output_format="text"))[0].content
    assert '{"reason":' in json_sys and "Reason: <" in text_sys
    user = correction_messages(ctx, None, 2)[1].content
    assert "Write the reason and action for this step." in user


def test_history_window_and_truncation() -> None:
    ctx = alfworld_ctx()
    ctx.history = ctx.history * 15
    ctx.observation = "x" * 5000
    user = correction_messages(ctx, None, 2, PromptOptions(history_window=3, max_observation_chars=100))[
        1
    ].content
    assert "(12 earlier step(s) omitted)" in user
    assert "Step 15:" in user and "Step 12:" not in user
    assert "x" * 201 not in user and "[truncated]" in user


def test_unknown_env_uses_the_shared_templates() -> None:
    ctx = StepContext(
        task=Task(task_id="t", env="toy", split="train", category="c", instruction="do"),
        history=[],
        observation="o",
    )
    system, user = correction_messages(ctx, None, 2)
    assert "text-based task environment" in system.content
    assert "(no privileged information is available for this step)" in user.content


@pytest.mark.parametrize("level", [0, 2, 4])
def test_compact_prompt_for_small_models(level: int) -> None:
    ctx = alfworld_ctx(["apple 1 is in fridge 1", "apple is in fridge 1", "apple 1 is on fridge 1"])
    system, user = correction_messages(
        ctx, StepLabel(reason="r", action="look"), level, PromptOptions(style="compact")
    )
    assert "text-based alfworld environment" in system.content
    # No literal placeholder line: small models copied "<one short sentence>" verbatim.
    assert user.content.rstrip().endswith('then "Action:" and the one action to take now.')
    assert "<one" not in user.content
    assert ("best next action: go to fridge 1" in user.content) == (level > 0)
    # One phrasing per hidden fact, and the student's own step is not shown (small models copy it).
    assert user.content.count("apple") == (1 if level > 0 else 0) + ctx.task.instruction.count("apple")
    assert "Action: look" not in user.content


def test_distinct_facts() -> None:
    from leap.teachers.leak import distinct_facts

    secrets = [
        "lamp 1 is in desk 1",
        "lamp 1 is on desk 1",
        "lamp is on desk 1",
        "pen 2 is on desk 1",
        "B07X",
    ]
    assert distinct_facts(secrets) == ["lamp 1 is in desk 1", "pen 2 is on desk 1", "B07X"]


def test_snap_action() -> None:
    from leap.prompts.parsing import snap_action

    adm = ["examine desk 1", "take laptop 2 from desk 1", "look"]
    assert snap_action("Take laptop 2 from desk 1.", adm) == "take laptop 2 from desk 1"
    assert snap_action("examine desk 1, go to bed 1, look", adm) == "examine desk 1"
    assert snap_action("look", adm) is None  # already admissible
    assert snap_action("go to the moon", adm) is None
    assert snap_action("ls -la", None) is None


def test_annotation_prompt() -> None:
    system, user = annotation_messages(alfworld_ctx(), "go to fridge 1")
    assert "ALFWorld" in system.content and "Action taken: go to fridge 1" in user.content
    assert "apple 1 is in fridge 1" not in user.content  # the annotator gets no privileged state


def test_templates_are_strict() -> None:
    with pytest.raises(UndefinedError):
        prompts.get_template("teacher/correct.j2").render(part="user")


# ---------------------------------------------------------------- leaks


@pytest.mark.parametrize(
    ("reason", "leaks"),
    [
        ("The apple is in fridge 1.", True),
        ("apple 1 is in fridge 1", True),
        ("I know the apple is in the fridge, so I go there.", True),
        ("There are apples in the fridge.", True),
        ("I'll take the apple from the fridge.", True),
        ("I need an apple, so I will check the fridge.", False),
        ("Apples are often kept in the fridge.", False),
        ("Let me look for an apple in the fridge.", False),
        ("I see a knife on the countertop; the fridge is next.", False),
        ("The microwave will heat it.", False),
    ],
)
def test_alfworld_leaks(reason: str, leaks: bool) -> None:
    assert bool(find_leaks(reason, alfworld_ctx())) is leaks


def test_alfworld_compound_names_and_aliases() -> None:
    ctx = alfworld_ctx(["alarmclock 2 is on desk 1", "soapbar 1 is in sinkbasin 2"])
    assert find_leaks("The alarm clock is on the desk.", ctx) == ["alarmclock 2 is on desk 1"]
    assert find_leaks("Go to the sink to get the soap bar.", ctx) == ["soapbar 1 is in sinkbasin 2"]
    assert find_leaks("The desk and the sink are nearby.", ctx) == []


def test_alfworld_other_instances_are_not_leaks() -> None:
    # The env lists each hidden fact in several phrasings; "mug 1" is visible, "mug 2" is hidden.
    secrets = ["mug 2 is in microwave 1", "mug is in microwave 1", "mug 2 is on microwave 1"]
    ctx = alfworld_ctx(secrets)
    assert find_leaks("Now I heat mug 1 using microwave 1.", ctx) == []
    assert find_leaks("I take mug 2 from microwave 1.", ctx) == secrets
    assert find_leaks("The mug is in microwave 1.", ctx) == secrets
    assert find_leaks("Another mug sits in microwave 2.", ctx) == []


def test_step_secrets_take_precedence_over_task_secrets() -> None:
    ctx = alfworld_ctx(["apple 1 is in fridge 1"])
    ctx.privileged = {"secrets": []}  # already observed: no longer a secret at this step
    assert find_leaks("The apple is in fridge 1.", ctx) == []
    ctx.privileged = {}
    assert find_leaks("The apple is in fridge 1.", ctx) == ["apple 1 is in fridge 1"]


def test_intercode_gold_command_leaks() -> None:
    ctx = intercode_ctx()
    assert find_leaks('I run find /testbed -type f -name "*.txt" | xargs wc -l to count.', ctx)
    assert find_leaks("Use find /testbed -type f -name *.txt|xargs wc -l", ctx)
    assert not find_leaks("I will use find together with wc to count the lines.", ctx)
    assert not find_leaks("", ctx)


def test_webshop_title_and_asin_leak() -> None:
    ctx = webshop_ctx()
    assert find_leaks("I should click b07hrfsnl4.", ctx) == ["B07HRFSNL4"]
    title = ctx.privileged_state.secrets[1]  # type: ignore[union-attr]
    assert find_leaks("I click the Hanes ComfortSoft tagless cotton crewneck tee.", ctx) == [title]
    assert find_leaks(f"The {title} is the one to buy.", ctx) == [title]
    # Restating the instruction's own words is not a leak.
    assert not find_leaks("I search for a blue men's short sleeve t-shirt in large under 30 dollars.", ctx)


def test_a_secret_the_student_has_seen_does_not_leak() -> None:
    ctx = webshop_ctx()
    title = ctx.privileged_state.secrets[1]  # type: ignore[union-attr]
    ctx.observation = f"[Back to Search] Page 1 (Total results: 50) [Next >] [B07HRFSNL4] {title} $12.99"
    assert find_leaks(f"The {title} (B07HRFSNL4) matches, so I click it.", ctx) == []


def test_leak_rates_from_tuples_and_corrections() -> None:
    ctx = alfworld_ctx()
    samples = [
        (0, "I will check the fridge.", ctx),
        (0, "I will look around.", ctx),
        (4, "The apple is in fridge 1.", ctx),
        (4, "I will check the fridge.", ctx),
    ]
    base = dict(
        task_id="t",
        env="alfworld",
        category="c",
        instruction="i",
        iteration=1,
        step_index=0,
        history=[],
        observation="o",
        student=StepLabel(reason="r", action="a"),
        teacher_id="x",
    )
    samples += [
        Correction(**base, teacher=StepLabel(reason="r", action="a"), privilege_level=2, leaked=True),
        Correction(**base, teacher=StepLabel(reason="r", action="a"), privilege_level=2, leaked=False),
        Correction(**base, teacher=None, privilege_level=2, error="boom"),  # failed: not counted
    ]
    assert leak_rates(samples) == {0: 0.0, 2: 0.5, 4: 0.5}


def test_measure_leak_rates_with_a_teacher() -> None:
    class Echo:
        teacher_id = "echo"

        def __init__(self, level: int) -> None:
            self.privilege_level = level

        def correct(self, items: list) -> list:
            reason = "The apple is in fridge 1." if self.privilege_level == 4 else "I will check the fridge."
            return [StepLabel(reason=reason, action="go to fridge 1") for _ in items]

    report = measure_leak_rates(Echo, [alfworld_ctx(), alfworld_ctx()], levels=[0, 4])
    assert report[0]["rate"] == 0.0 and report[4]["rate"] == 1.0 and report[4]["n"] == 2
    assert report[4]["examples"][0]["leaks"] == ["apple 1 is in fridge 1"]


def test_contexts_from_trajectory() -> None:
    from leap.records import Step, Trajectory

    steps = [
        Step(observation=f"o{i}", reason="", action=f"a{i}", privileged={"secrets": [f"s{i}"]})
        for i in range(3)
    ]
    traj = Trajectory(
        task_id="t", env="alfworld", split="train", category="c", instruction="do it", policy="p", steps=steps
    )
    ctxs = contexts_from_trajectory(traj)
    assert [len(c.history) for c in ctxs] == [0, 1, 2]
    assert ctxs[2].observation == "o2" and ctxs[2].privileged == {"secrets": ["s2"]}
    assert ctxs[0].task.instruction == "do it"


def test_react_policy_snaps_with_the_shared_threshold() -> None:
    from leap.config import StudentParams
    from leap.teachers.accounting import TeacherStats
    from leap.teachers.chat import ChatResult, ReActPolicy

    class Scripted:
        name = "scripted"

        def identity(self) -> dict:
            return {"backend": "scripted"}

        def complete(self, batch: list, stats: TeacherStats):
            for i, _ in enumerate(batch):
                yield i, ChatResult(text="Reason: the fridge.\nAction: Go to fridge")

    ctx = alfworld_ctx()
    (loose,) = ReActPolicy(Scripted(), StudentParams(), cache_dir=None).act([ctx])
    assert loose.action == "go to fridge 1" and loose.meta["original_action"] == "Go to fridge"
    (strict,) = ReActPolicy(Scripted(), StudentParams(), cache_dir=None, snap_threshold=99).act([ctx])
    assert strict.action == "Go to fridge" and not strict.meta
