"""The OpenAI-compatible teacher against a scripted server on 127.0.0.1, through the real `openai` client."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from teacher_fakes import FakeOpenAI, Reply, alfworld_ctx

from leap.agent import TeacherError
from leap.config import OpenAITeacherParams
from leap.records import StepLabel
from leap.teachers.llm import OpenAITeacher, TeacherConfigError

KEY_ENV = "LEAP_TEST_TEACHER_KEY"


def make_teacher(fake: FakeOpenAI, tmp_path: Path, level: int = 2, **over: Any) -> OpenAITeacher:
    backend_kw = {k: over.pop(k) for k in ("circuit_breaker", "json_mode") if k in over}
    p = OpenAITeacherParams(
        model="fake-model",
        base_url=fake.base_url,
        api_key_env=KEY_ENV,
        **{"timeout_s": 5.0, "max_retries": 2, "concurrency": 4, **over},
    )
    return OpenAITeacher(p, level, cache_dir=str(tmp_path / "cache"), **backend_kw)


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test-not-secret")


def _items(n: int) -> list[tuple[Any, StepLabel]]:
    out = []
    for i in range(n):
        ctx = alfworld_ctx()
        ctx.observation = f"On the countertop 1, you see a knife 1. (variant {i})"  # distinct requests
        out.append((ctx, StepLabel(reason="I will look.", action="look")))
    return out


def test_correction_round_trip(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    teacher = make_teacher(fake_openai, tmp_path, price_per_1k_input=1.0, price_per_1k_output=2.0)
    res = teacher.correct(_items(3))
    assert res == [StepLabel(reason="I have not looked in the fridge yet.", action="go to fridge 1")] * 3
    assert len(fake_openai.requests) == 3
    body = fake_openai.requests[0]
    assert body["model"] == "fake-model"
    assert body["response_format"] == {"type": "json_object"}
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    user = body["messages"][1]["content"]
    # The teacher sees the student's step and the privileged state; the task spec stays hidden.
    assert "Action: look" in user and "apple 1 is in fridge 1" in user and "expert_action" in user
    assert "hidden/path" not in json.dumps(body)
    stats = teacher.stats()
    assert stats["calls"] == 3 and stats["cache_misses"] == 3 and stats["errors"] == 0
    assert stats["prompt_tokens"] == 300 and stats["completion_tokens"] == 60
    assert stats["cost_usd"] == pytest.approx(0.3 + 0.12)
    assert teacher.teacher_id == "openai:fake-model" and teacher.privilege_level == 2


def test_level_zero_withholds_privileged_state(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    make_teacher(fake_openai, tmp_path, level=0).correct(_items(1))
    user = fake_openai.requests[0]["messages"][1]["content"]
    assert "apple 1 is in fridge 1" not in user and "expert_action" not in user


def test_malformed_replies_become_errors(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    fake_openai.script(
        Reply(content="I think you should go to the fridge."),  # no JSON, no "Action:" line
        Reply(body="<html>bad gateway page</html>"),  # not a chat completion at all
        Reply(body={"choices": []}),
    )
    teacher = make_teacher(fake_openai, tmp_path, concurrency=1)
    res = teacher.correct(_items(3))
    assert all(isinstance(r, TeacherError) for r in res)
    assert "unparsable reply" in str(res[0])
    assert "malformed response" in str(res[1]) and "malformed response" in str(res[2])
    st = teacher.stats()
    assert st["errors"] == 3 and st["parse_errors"] == 1
    # A reply that came back is cached even when unusable (an unchanged re-run makes no call for it
    # and gets the same error); transport-level failures are asked again.
    again_teacher = make_teacher(fake_openai, tmp_path)
    again = again_teacher.correct(_items(3))
    assert isinstance(again[0], TeacherError) and "unparsable reply" in str(again[0])
    assert all(isinstance(r, StepLabel) for r in again[1:])
    assert len(fake_openai.requests) == 5
    assert again_teacher.stats()["cache_hits"] == 1 and again_teacher.stats()["parse_errors"] == 1


def test_plain_text_reply_is_accepted(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    fake_openai.script(then=Reply(content="Reason: I have not checked it.\nAction: Go to fridge 1"))
    (res,) = make_teacher(fake_openai, tmp_path).correct(_items(1))
    # Parsed from "Reason:/Action:" and snapped to the admissible spelling.
    assert res == StepLabel(reason="I have not checked it.", action="go to fridge 1")


def test_rate_limit_then_success_is_retried(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    fake_openai.script(
        Reply(status=429, body={"error": {"message": "slow down"}}, headers={"retry-after": "0"})
    )
    teacher = make_teacher(fake_openai, tmp_path, concurrency=1)
    (res,) = teacher.correct(_items(1))
    assert isinstance(res, StepLabel)
    assert len(fake_openai.requests) == 2
    st = teacher.stats()
    assert st["retries"] == 1 and st["attempts"] == 2 and st["calls"] == 1 and st["errors"] == 0


def test_retry_after_is_honoured(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    fake_openai.script(Reply(status=503, body={"error": {"message": "busy"}}, headers={"retry-after": "1.2"}))
    t0 = time.monotonic()
    (res,) = make_teacher(fake_openai, tmp_path, concurrency=1).correct(_items(1))
    assert isinstance(res, StepLabel) and time.monotonic() - t0 >= 1.1
    assert len(fake_openai.requests) == 2


def test_server_errors_exhaust_retries(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    fake_openai.script(then=Reply(status=503, body={"error": {"message": "overloaded"}}))
    (res,) = make_teacher(fake_openai, tmp_path, max_retries=2).correct(_items(1))
    assert isinstance(res, TeacherError) and "3 attempt(s)" in str(res) and "503" in str(res)
    assert len(fake_openai.requests) == 3


def test_client_error_is_not_retried(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    fake_openai.script(then=Reply(status=404, body={"error": {"message": "no such model"}}))
    (res,) = make_teacher(fake_openai, tmp_path).correct(_items(1))
    assert isinstance(res, TeacherError) and "404" in str(res)
    assert len(fake_openai.requests) == 1


def test_timeout_fails_quickly_after_retries(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    fake_openai.script(then=Reply(delay=3.0))
    teacher = make_teacher(fake_openai, tmp_path, timeout_s=0.2, max_retries=1)
    t0 = time.monotonic()
    (res,) = teacher.correct(_items(1))
    assert time.monotonic() - t0 < 2.5
    assert isinstance(res, TeacherError) and "Timeout" in str(res) and "2 attempt(s)" in str(res)
    assert len(fake_openai.requests) == 2


def test_endpoint_rejecting_response_format_falls_back(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    def responder(body: dict[str, Any], n: int) -> Reply:
        if "response_format" in body:
            return Reply(status=400, body={"error": {"message": "response_format is not supported"}})
        return Reply()

    fake_openai.responder = responder
    res = make_teacher(fake_openai, tmp_path, concurrency=1).correct(_items(2))
    assert all(isinstance(r, StepLabel) for r in res)
    assert len(fake_openai.requests) == 3  # one rejected, then both without response_format


def test_server_dies_mid_batch_then_resume_from_cache(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    fake_openai.script(Reply(), Reply(), Reply(die=True))
    items = _items(6)
    teacher = make_teacher(fake_openai, tmp_path, concurrency=1, max_retries=1, circuit_breaker=2)
    res = teacher.correct(items)
    assert [isinstance(r, StepLabel) for r in res] == [True, True, False, False, False, False]
    for r in res[2:]:
        msg = str(r)
        assert "Connection" in msg or "unreachable" in msg, msg
    assert "unreachable" in str(res[-1])  # the circuit breaker stops hammering a dead endpoint
    assert len(fake_openai.requests) == 3
    # The server comes back on the same port: only the failed items are requested again.
    fake_openai.responder = lambda body, n: Reply()
    fake_openai.start()
    teacher2 = make_teacher(fake_openai, tmp_path, concurrency=1)
    res2 = teacher2.correct(items)
    assert all(isinstance(r, StepLabel) for r in res2)
    assert len(fake_openai.requests) == 3 + 4
    assert teacher2.stats()["cache_hits"] == 2 and teacher2.stats()["calls"] == 4


def test_cache_second_run_makes_no_calls(
    fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = _items(4)
    items.append(items[0])  # a duplicate within the batch is asked once
    first = make_teacher(fake_openai, tmp_path).correct(items)
    assert len(fake_openai.requests) == 4
    monkeypatch.setenv(KEY_ENV, "sk-another-key")  # the key is not part of the cache key
    teacher = make_teacher(fake_openai, tmp_path)
    second = teacher.correct(items)
    assert second == first
    assert len(fake_openai.requests) == 4
    st = teacher.stats()
    assert st["calls"] == 0 and st["cache_hits"] == 5 and st["cache_misses"] == 0
    # Anything that changes the answer changes the key.
    make_teacher(fake_openai, tmp_path, temperature=0.7).correct(items[:1])
    make_teacher(fake_openai, tmp_path, level=3).correct(items[:1])
    assert len(fake_openai.requests) == 6


def test_cache_ignores_a_torn_entry(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    make_teacher(fake_openai, tmp_path).correct(_items(1))
    (entry,) = (tmp_path / "cache").glob("*/*.json")
    entry.write_text('{"key": "trunc')  # as if a writer died mid-file (atomic writes prevent it)
    (res,) = make_teacher(fake_openai, tmp_path).correct(_items(1))
    assert isinstance(res, StepLabel) and len(fake_openai.requests) == 2
    assert json.loads(entry.read_text())["response"]["text"]  # rewritten whole


def test_api_key_never_leaks(
    fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sentinel = "sk-SENTINEL-7f3a9c2e1b5d4f60"
    monkeypatch.setenv(KEY_ENV, sentinel)

    def echo_key(body: dict[str, Any], n: int) -> Reply:
        # Like real APIs, the error bodies quote the key they were given.
        auth = fake_openai.headers[n].get("authorization", "")
        if n % 3 == 0:
            return Reply(status=401, body={"error": {"message": f"Incorrect API key provided: {auth}"}})
        if n % 3 == 1:
            return Reply(status=500, body={"error": {"message": f"internal error for {auth[7:]}"}})
        return Reply(content=f"no json here, key {auth[7:]}")

    fake_openai.responder = echo_key
    caplog.set_level(logging.DEBUG)
    teacher = make_teacher(fake_openai, tmp_path, concurrency=1, max_retries=1)
    res = teacher.correct(_items(3))
    assert fake_openai.headers[0]["authorization"] == f"Bearer {sentinel}"  # the key was really used
    assert all(isinstance(r, TeacherError) for r in res)
    texts = [
        caplog.text,
        *(str(r) for r in res),
        *(repr(r) for r in res),
        json.dumps(teacher.stats()),
        repr(teacher),
        repr(teacher.backend),
        teacher.teacher_id,
    ]
    texts += [p.read_text() for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    for text in texts:
        assert sentinel not in text
        assert "SENTINEL" not in text
    assert "[redacted]" in " ".join(str(r) for r in res)


def test_missing_key_variable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    p = OpenAITeacherParams(model="gpt-4o", api_key_env=KEY_ENV)
    with pytest.raises(TeacherConfigError, match=KEY_ENV):
        OpenAITeacher(p, 2, cache_dir=None)


def test_local_endpoint_needs_no_key(
    fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    (res,) = make_teacher(fake_openai, tmp_path).correct(_items(1))
    assert isinstance(res, StepLabel)


def test_reply_parsing_variants() -> None:
    from leap.prompts.parsing import ReplyError, parse_reply

    ok = {
        '{"reason": "r", "action": "go to fridge 1"}': ("r", "go to fridge 1"),
        'Sure:\n```json\n{"Reason": "r", "Action": "open fridge 1"}\n```': ("r", "open fridge 1"),
        "**Reason:** I need it.\nmore\n**Action:** `ls -la`\nReason: again\nAction: x": (
            "I need it. more",
            "ls -la",
        ),
        '{"reasoning": ["a", "b"], "action": "look"}': ("a b", "look"),
    }
    for text, (reason, action) in ok.items():
        got = parse_reply(text)
        assert (got.reason, got.action) == (reason, action), text
    for bad in [
        "",
        "no format at all",
        '{"reason": "r", "action": ""}',
        '{"reason": "r", "action": "a\\nb"}',
    ]:
        with pytest.raises(ReplyError):
            parse_reply(bad)


def test_prompt_options_are_params(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    """teacher.openai.prompt sets what the teacher sees (visible to DVC and MLflow as params)."""
    make_teacher(fake_openai, tmp_path).correct(_items(1))
    make_teacher(fake_openai, tmp_path, prompt={"history_window": 0, "output_format": "text"}).correct(
        _items(1)
    )
    full, windowless = (r["messages"][1]["content"] for r in fake_openai.requests)
    assert "Step 1:" in full and "(1 earlier step(s) omitted)" not in full
    assert "(1 earlier step(s) omitted)" in windowless and "Step 1:" not in windowless
    assert "response_format" in fake_openai.requests[0]  # json by default
    assert "Reason: <one to three sentences" in fake_openai.requests[1]["messages"][0]["content"]
