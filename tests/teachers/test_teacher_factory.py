"""build_teacher / build_react_policy from params, the ReAct baseline and reason annotation."""

from __future__ import annotations

from pathlib import Path

import pytest
from teacher_fakes import FakeOpenAI, Reply, alfworld_ctx

from leap.agent import TeacherError
from leap.config import Params, load_params
from leap.records import Step, StepLabel, Trajectory
from leap.teachers.annotate import annotate_reasons
from leap.teachers.chat import ReActPolicy
from leap.teachers.factory import build_react_policy, build_teacher
from leap.teachers.llm import OpenAITeacher
from leap.teachers.local import LocalTeacher

REPO = Path(__file__).resolve().parents[2]


def _params(fake: FakeOpenAI | None, tmp_path: Path, kind: str = "openai", level: int = 2) -> Params:
    return Params.model_validate(
        {
            "teacher": {
                "kind": kind,
                "privilege_level": level,
                "cache_dir": str(tmp_path / "cache"),
                "openai": {
                    "model": "fake-model",
                    "base_url": fake.base_url if fake else None,
                    "api_key_env": "LEAP_UNSET_KEY_VAR",
                    "max_retries": 0,
                },
            }
        }
    )


def test_build_oracle_teacher_has_stats(tmp_path: Path) -> None:
    teacher = build_teacher(_params(None, tmp_path, kind="oracle", level=3))
    assert teacher.teacher_id == "oracle" and teacher.privilege_level == 3
    res = teacher.correct([(alfworld_ctx(), None)])
    assert len(res) == 1
    st = teacher.stats()  # type: ignore[attr-defined]
    assert st["calls"] == 1 and st["errors"] == sum(isinstance(r, TeacherError) for r in res)


def test_build_openai_and_local_teachers(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    t = build_teacher(_params(fake_openai, tmp_path, level=1))
    assert isinstance(t, OpenAITeacher) and t.privilege_level == 1
    local = build_teacher(_params(None, tmp_path, kind="local"))
    assert isinstance(local, LocalTeacher) and local.teacher_id == "local:smollm2-135m-instruct"
    assert local.backend._lm is None  # the model loads on first use, not when built


def test_react_policy_uses_the_student_prompt_without_privileged_state(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.script(then=Reply(content="Reason: The fridge may hold an apple.\nAction: go to fridge 1"))
    params = _params(fake_openai, tmp_path)
    policy = build_react_policy(params)
    assert isinstance(policy, ReActPolicy) and policy.privileged is False
    assert policy.policy_id == "react:openai:fake-model"
    (out,) = policy.act([alfworld_ctx()])
    assert (out.reason, out.action, out.parse_ok) == ("The fridge may hold an apple.", "go to fridge 1", True)
    body = fake_openai.requests[0]
    assert "response_format" not in body
    sent = " ".join(m["content"] for m in body["messages"])
    assert "apple 1 is in fridge 1" not in sent and "expert_action" not in sent
    from leap.students.prompting import build_messages

    expected = build_messages(alfworld_ctx(), params.student)
    assert [m["content"] for m in body["messages"]] == [m.content for m in expected]
    # Cached like the teacher: a second run makes no call.
    build_react_policy(params).act([alfworld_ctx()])
    assert len(fake_openai.requests) == 1


def test_react_policy_records_endpoint_failures(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    fake_openai.script(then=Reply(status=400, body={"error": {"message": "bad"}}))
    (out,) = build_react_policy(_params(fake_openai, tmp_path)).act([alfworld_ctx()])
    assert out.parse_ok is False and out.action == "" and "bad" in (out.raw_output or "")


def test_react_policy_needs_an_llm_teacher(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"teacher\.kind"):
        build_react_policy(_params(None, tmp_path, kind="oracle"))


def _demo() -> Trajectory:
    steps = [
        Step(observation="You are in a room.", reason="", action="go to fridge 1"),
        Step(observation="The fridge 1 is closed.", reason="Already reasoned.", action="open fridge 1"),
        Step(observation="You see an apple 1.", reason="", action="take apple 1 from fridge 1"),
    ]
    return Trajectory(
        task_id="alf-1",
        env="alfworld",
        split="train",
        category="c",
        instruction="put some apple in the microwave.",
        policy="expert",
        steps=steps,
    )


def test_annotate_reasons_with_an_llm_teacher(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    fake_openai.script(
        Reply(content='{"reason": "I should check the fridge first.", "action": "go to fridge 1"}'),
        Reply(content="garbage"),
    )
    teacher = build_teacher(_params(fake_openai, tmp_path))
    demo = _demo()
    (out,) = annotate_reasons(teacher, [demo], batch_size=1)
    assert out.steps[0].reason == "I should check the fridge first."
    assert out.steps[1].reason == "Already reasoned."  # kept: only empty reasons are written
    assert out.steps[2].reason == ""  # failed: kept empty and recorded
    assert out.error and "annotation: 1 step(s)" in out.error
    assert [s.action for s in out.steps] == [s.action for s in demo.steps]
    assert demo.steps[0].reason == ""  # the input is not modified
    assert len(fake_openai.requests) == 2
    assert "Action taken: take apple 1 from fridge 1" in fake_openai.requests[1]["messages"][1]["content"]


def test_annotate_reasons_with_a_teacher_without_annotate() -> None:
    class Fixed:
        teacher_id, privilege_level = "fixed", 2

        def correct(self, items: list) -> list:
            return [StepLabel(reason="Because.", action="go to fridge 1") for _ in items]

    (out,) = annotate_reasons(Fixed(), [_demo()])
    assert out.steps[0].reason == "Because." and out.steps[2].reason == ""
    assert out.error and "not the demonstrated" in out.error


def test_self_improve_experiment_loads() -> None:
    p = load_params(REPO / "params.yaml", REPO / "experiments" / "self-improve.yaml")
    assert p.teacher.kind == "local" and p.teacher.privilege_level == 2
    assert p.teacher.local.model == "student"  # the student is its own privileged teacher
    assert p.tracking.experiment == "leap-alfworld"
    assert p.env.alfworld.n_train == 4 and p.loop.iterations == {1: 0}
