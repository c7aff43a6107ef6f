"""The local HF teacher and `leap serve`, on the tiny random model (fixture tiny_model_dir)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from teacher_fakes import alfworld_ctx

from leap.agent import TeacherError
from leap.config import LocalTeacherParams, OpenAITeacherParams
from leap.records import StepLabel
from leap.teachers.chat import BackendError, ChatResult
from leap.teachers.llm import OpenAITeacher
from leap.teachers.local import LocalChat, LocalTeacher
from leap.teachers.serve import BackgroundServer, create_app


def test_local_teacher_runs_the_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    teacher = LocalTeacher(
        LocalTeacherParams(model=str(tiny_model_dir), max_new_tokens=8, batch_size=2),
        2,
        cache_dir=str(tmp_path),
    )
    ctxs = [alfworld_ctx() for _ in range(3)]
    for i, c in enumerate(ctxs):
        c.observation += f" ({i})"
    res = teacher.correct([(c, StepLabel(reason="r", action="look")) for c in ctxs])
    assert len(res) == 3
    # A random model rarely writes "Action: ..."; whatever it wrote is a label or a recorded error.
    assert all(isinstance(r, StepLabel | TeacherError) for r in res)
    st = teacher.stats()
    assert (
        st["calls"] == 3 and st["prompt_tokens"] > 100 and st["completion_tokens"] <= 48
    )  # two passes when the action line is forced
    assert st["errors"] == sum(isinstance(r, TeacherError) for r in res)
    assert teacher.teacher_id == f"local:{tiny_model_dir}"


def test_forced_action_line(tiny_model_dir: Path) -> None:
    chat = LocalChat(
        str(tiny_model_dir), max_new_tokens=6, assistant_prefix="Reason:", force_action_line=True
    )
    res = chat.generate([[{"role": "user", "content": f"Where is the apple {i}?"}] for i in range(3)])
    for r in res:
        assert r.text.startswith("Reason:")
        _reason, action = r.text.split("\n")  # exactly one reason line and one action line
        assert action.startswith("Action:")


def test_student_as_its_own_teacher(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from leap.config import Params
    from leap.teachers.factory import build_teacher

    monkeypatch.chdir(tmp_path)  # models/iter_<i> are repo-relative
    params = Params.model_validate(
        {
            "student": {"model": str(tiny_model_dir), "max_new_tokens": 8},
            "teacher": {"kind": "local", "cache_dir": str(tmp_path / "cache"), "local": {"model": "student"}},
        }
    )
    assert build_teacher(params, iteration=1).teacher_id == "local:student@base"  # no adapter yet
    lm = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraConfig(r=2, target_modules="all-linear")
    )
    lm.save_pretrained(tmp_path / "models" / "iter_0")
    teacher = build_teacher(params, iteration=1)
    assert teacher.teacher_id == "local:student@iter_0"
    (res,) = teacher.correct([(alfworld_ctx(), None)])
    assert isinstance(res, StepLabel | TeacherError)
    assert teacher.backend.adapter_dir == Path("models/iter_0")  # type: ignore[attr-defined]


def test_local_teacher_caches_parsed_replies(tiny_model_dir: Path, tmp_path: Path) -> None:
    calls: list[int] = []

    def fake_generate(self: LocalChat, batch: list[Any], **kw: Any) -> list[ChatResult]:
        calls.append(len(batch))
        return [ChatResult("Reason: I should open it.\nAction: go to fridge 1", 10, 5) for _ in batch]

    params = LocalTeacherParams(model=str(tiny_model_dir))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LocalChat, "generate", fake_generate)
        mp.setattr(LocalChat, "load", lambda self: (None, None))
        first = LocalTeacher(params, 2, cache_dir=str(tmp_path)).correct([(alfworld_ctx(), None)])
        second_teacher = LocalTeacher(params, 2, cache_dir=str(tmp_path))
        second = second_teacher.correct([(alfworld_ctx(), None)])
    assert first == second == [StepLabel(reason="I should open it.", action="go to fridge 1")]
    assert calls == [1]
    assert second_teacher.stats()["cache_hits"] == 1 and second_teacher.stats()["calls"] == 0


def test_local_teacher_missing_model_stops_with_a_clear_error(tmp_path: Path) -> None:
    teacher = LocalTeacher(LocalTeacherParams(model=str(tmp_path / "nope")), 2, cache_dir=None)
    with pytest.raises(BackendError, match="cannot load the model"):
        teacher.correct([(alfworld_ctx(), None)])


@pytest.fixture
def served_tiny(tiny_model_dir: Path) -> Any:
    chat = LocalChat(str(tiny_model_dir), max_new_tokens=8, stop_after_action=False)
    with BackgroundServer(create_app(chat, "tiny")) as server:
        yield server


def test_serve_answers_the_openai_client(served_tiny: BackgroundServer) -> None:
    client = openai.OpenAI(base_url=served_tiny.base_url, api_key="unused", max_retries=0, timeout=30)
    assert [m.id for m in client.models.list().data] == ["tiny"]
    resp = client.chat.completions.create(
        model="tiny",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Where is the apple?"},
        ],
        max_tokens=5,
        temperature=0,
    )
    assert isinstance(resp.choices[0].message.content, str)
    assert resp.choices[0].finish_reason in {"stop", "length"}
    assert resp.usage is not None and resp.usage.prompt_tokens > 5 and 0 < resp.usage.completion_tokens <= 5
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    with pytest.raises(openai.NotFoundError, match="not served"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=[])


def test_openai_teacher_against_leap_serve(served_tiny: BackgroundServer, tmp_path: Path) -> None:
    p = OpenAITeacherParams(model="tiny", base_url=served_tiny.base_url, api_key_env="LEAP_UNSET_KEY_VAR")
    teacher = OpenAITeacher(p, 2, cache_dir=str(tmp_path))
    (res,) = teacher.correct([(alfworld_ctx(), None)])
    # The random model's text is not a valid reply, but the round trip and usage accounting work.
    assert isinstance(res, StepLabel | TeacherError)
    if isinstance(res, TeacherError):
        assert "unparsable reply" in str(res)
    st = teacher.stats()
    assert st["calls"] == 1 and st["prompt_tokens"] > 100 and st["completion_tokens"] > 0


def test_serve_requires_the_key_when_configured(tiny_model_dir: Path) -> None:
    chat = LocalChat(str(tiny_model_dir), max_new_tokens=4, stop_after_action=False)
    with BackgroundServer(create_app(chat, "tiny", api_key="s3cret-token")) as server:
        bad = openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        good = openai.OpenAI(base_url=server.base_url, api_key="s3cret-token", max_retries=0)
        assert good.models.list().data[0].id == "tiny"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_command_in_a_subprocess(tiny_model_dir: Path) -> None:
    """The Typer command the CLI mounts as `leap serve`, run as a real process on loopback."""
    port = _free_port()
    code = "import typer; from leap.teachers.serve import serve; typer.run(serve)"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            str(tiny_model_dir),
            "--port",
            str(port),
            "--served-name",
            "tiny",
            "--max-new-tokens",
            "4",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "leap serve did not come up"
            time.sleep(0.2)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        resp = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello"}])
        assert resp.usage is not None and resp.usage.completion_tokens <= 4
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
