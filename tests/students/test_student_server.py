"""The server-backed student (student.backend: openai) against a real local server over HTTP on
127.0.0.1 (`leap serve --student`): the same greedy turns as the in-process student on the same games,
and a LoRA adapter trained by the train stage's trainer served and used by its model name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from leap.agent import PolicyUnavailable
from leap.config import StudentParams, StudentServerParams, TrainParams
from leap.envs.toy import ToyEnv, ToyTasks
from leap.records import Message, TrainExample
from leap.rollout import run_episodes
from leap.students.policy import StudentPolicy
from leap.students.remote import RemoteStudentPolicy, action_regex
from leap.students.serve import StudentServer, create_student_app
from leap.teachers.serve import BackgroundServer

TASKS = ToyTasks(seed=0).tasks("train")[:6]
BASE = "tiny-base"


def _demo(i: int) -> TrainExample:
    box = 1 + i % 3
    return TrainExample(
        prompt=[
            Message(role="system", content="You are an agent."),
            Message(role="user", content=f"Room {i}."),
        ],
        completion=[
            Message(role="assistant", content=f"Reason: The key is in box {box}.\nAction: open box {box}")
        ],
        source="demo",
        task_id=f"t{i}",
        iteration=0,
        step_index=0,
    )


@pytest.fixture(scope="module")
def student(tiny_model_dir: Path) -> StudentParams:
    return StudentParams(model=str(tiny_model_dir), batch_size=4, max_new_tokens=12)


@pytest.fixture(scope="module")
def adapter(student: StudentParams, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from leap.training import train_adapter

    out = tmp_path_factory.mktemp("served") / "iter_1"
    train = TrainParams(epochs=2, batch_size=2, learning_rate=5e-2, max_length=256)
    train_adapter([_demo(i) for i in range(6)], student, train, out, progress=False)
    return out


@pytest.fixture(scope="module")
def server(student: StudentParams, adapter: Path) -> Iterator[tuple[StudentServer, str]]:
    srv = StudentServer(student, {"leap-iter_1": adapter}, served_name=BASE)
    with BackgroundServer(create_student_app(srv)) as http:
        yield srv, http.base_url
    srv.close()


def _unmerged(student: StudentParams, adapter: Path) -> StudentPolicy:
    """The in-process student with the adapter beside the weights, as the server runs it (the stages'
    in-process student folds it into the weights: the same up to float rounding, which a tiny random
    model's near-tied reasons can show)."""
    from leap.students.models import load_student

    model, tok = load_student(student, adapter, merge=False)
    return StudentPolicy(student, adapter, model=model, tokenizer=tok)


def _turns(trajs: list) -> list[list[tuple[str, str]]]:
    return [[(s.raw_output, s.action) for s in t.steps] for t in trajs]


def _play(policy: object, concurrency: int | None) -> list:
    return run_episodes(
        TASKS, policy, ToyEnv, horizon=4, batch_size=4, concurrency=concurrency, progress=False
    )


def test_the_served_base_student_takes_the_same_greedy_turns(student: StudentParams, server: tuple) -> None:
    srv, url = server
    local = _play(StudentPolicy(student), None)
    remote = RemoteStudentPolicy(student, BASE, base_url=url)
    try:
        served = _play(remote, 4)
    finally:
        remote.close()
    assert _turns(served) == _turns(local)
    assert [t.success for t in served] == [t.success for t in local]
    assert remote.requests == sum(t.num_actions for t in served) > 0
    assert max(srv.batcher.batches) > 1  # concurrent episodes were batched on the server


def test_an_adapter_is_served_and_used_by_name(student: StudentParams, server: tuple, adapter: Path) -> None:
    _, url = server
    local = _play(_unmerged(student, adapter), None)
    remote = RemoteStudentPolicy(student, "leap-iter_1", base_url=url)
    try:
        served = _play(remote, 3)
    finally:
        remote.close()
    assert _turns(served) == _turns(local)
    assert _turns(served) != _turns(_play(StudentPolicy(student), None))  # the adapter changes the turns


def test_a_missing_adapter_is_loaded_from_its_directory(
    student: StudentParams, server: tuple, adapter: Path
) -> None:
    srv, url = server
    remote = RemoteStudentPolicy(student, "leap-iter_7", base_url=url, adapter_dir=adapter)
    try:
        served = _play(remote, 2)
    finally:
        remote.close()
    assert "leap-iter_7" in srv.models
    ids = [m["id"] for m in httpx.get(f"{url}/models").json()["data"]]
    assert ids[0] == BASE and {"leap-iter_1", "leap-iter_7"} <= set(ids)
    assert _turns(served) == _turns(_play(_unmerged(student, adapter), None))


def test_a_model_the_server_does_not_serve_stops_the_stage(student: StudentParams, server: tuple) -> None:
    _, url = server
    remote = RemoteStudentPolicy(student, "leap-iter_9", base_url=url)  # no directory to load it from
    with pytest.raises(PolicyUnavailable, match="refused model 'leap-iter_9'"):
        _play(remote, 2)
    remote.close()


def test_an_unreachable_server_stops_the_stage(student: StudentParams) -> None:
    from leap.students.remote import free_port

    cfg = StudentServerParams(max_retries=1)
    remote = RemoteStudentPolicy(student, BASE, base_url=f"http://127.0.0.1:{free_port()}/v1", server=cfg)
    with pytest.raises(PolicyUnavailable, match="unreachable"):
        _play(remote, 2)
    remote.close()


def test_vllm_guidance_is_a_regex_of_the_admissible_actions(student: StudentParams) -> None:
    import re

    rx = re.compile(action_regex(["open box 1", "open door"]))
    assert rx.fullmatch(" The key is here.\nAction: open door")
    assert not rx.fullmatch(" The key is here.\nAction: open box 2")


def test_a_stage_starts_leap_serve_for_itself_and_stops_it(
    student: StudentParams, adapter: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from leap import paths
    from leap.config import Params
    from leap.stages.episodes import close_policy, concurrency, student_policy

    monkeypatch.chdir(tmp_path)
    shutil.copytree(adapter, paths.model(1))
    params = Params().model_copy(
        update={"student": student.model_copy(update={"backend": "openai"}), "env": Params().env}
    )
    assert concurrency(params) == params.student.server.concurrency
    policy = student_policy(params, 1)
    try:
        assert isinstance(policy, RemoteStudentPolicy) and policy.model_name == "leap-iter_1"
        process = policy.process
        assert process is not None and process.base_url.startswith("http://127.0.0.1:")
        served = _play(policy, 3)
    finally:
        close_policy(policy)
    assert process.proc.poll() is not None  # stopped with the stage
    assert _turns(served) == _turns(_play(_unmerged(student, adapter), None))
