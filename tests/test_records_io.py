"""Records round-trip through JSONL; bad files fail naming file, line and field; writes are atomic."""

from __future__ import annotations

from pathlib import Path

import pytest

from leap.io import JsonlAppender, RecordError, atomic_path, read_jsonl, write_jsonl
from leap.records import (
    Correction,
    EvalResult,
    Message,
    PrivilegedState,
    Step,
    StepLabel,
    Task,
    TrainExample,
    Trajectory,
)

STEP = Step(
    observation="You see a fridge 1.",
    reason="Check the fridge.",
    action="open fridge 1",
    admissible_actions=["open fridge 1"],
    privileged={"expert_action": "open fridge 1"},
)
SAMPLES = [
    Task(task_id="t1", env="toy", split="train", category="c", instruction="do it", spec={"k": 1}),
    PrivilegedState(task_id="t1", env="toy", facts={"key_box": 2}, plan=["a"], secrets=["key is in box 2"]),
    STEP,
    Trajectory(
        task_id="t1",
        env="toy",
        split="train",
        category="c",
        instruction="i",
        policy="p",
        steps=[STEP],
        success=True,
        reward=1.0,
        score_components={"att": 0.5},
    ),
    Correction(
        task_id="t1",
        env="toy",
        category="c",
        instruction="i",
        iteration=1,
        step_index=0,
        history=[],
        observation="o",
        student=StepLabel(reason="r", action="a"),
        teacher=StepLabel(reason="r2", action="b"),
        privilege_level=2,
        teacher_id="oracle",
    ),
    TrainExample(
        prompt=[Message(role="user", content="u")],
        completion=[Message(role="assistant", content="c")],
        source="demo",
        task_id="t1",
        iteration=0,
        step_index=0,
    ),
    EvalResult(policy="p", iteration=0, split="test", n=1, success_rate=1.0, avg_actions=3.0, avg_reward=1.0),
]


@pytest.mark.parametrize("rec", SAMPLES, ids=lambda r: type(r).__name__)
def test_round_trip(tmp_path: Path, rec) -> None:
    p = tmp_path / "r.jsonl"
    write_jsonl(p, [rec, rec])
    back = read_jsonl(p, type(rec))
    assert back == [rec, rec]


def test_trajectory_derived_counts() -> None:
    bad = STEP.model_copy(update={"valid": False, "parse_ok": False})
    t = Trajectory(
        task_id="t", env="toy", split="s", category="c", instruction="i", policy="p", steps=[STEP, bad]
    )
    assert (t.num_actions, t.num_invalid, t.num_parse_errors) == (2, 1, 1)
    assert '"num_actions":2' in t.model_dump_json()


def test_corrupt_json_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "tasks.jsonl"
    good = SAMPLES[0].model_dump_json()
    p.write_text(good + "\n" + good + "\n{not json\n")
    with pytest.raises(RecordError, match=rf"{p}:3: invalid JSON"):
        read_jsonl(p, Task)


def test_invalid_field_names_file_line_and_field(tmp_path: Path) -> None:
    p = tmp_path / "tasks.jsonl"
    p.write_text('{"task_id": "a", "env": "toy", "split": "train"}\n')
    with pytest.raises(RecordError, match=rf"{p}:1: invalid Task: field 'category': Field required"):
        read_jsonl(p, Task)


def test_schema_version_is_checked(tmp_path: Path) -> None:
    p = tmp_path / "tasks.jsonl"
    p.write_text(SAMPLES[0].model_dump_json().replace('"schema_version":1', '"schema_version":7') + "\n")
    with pytest.raises(RecordError, match="schema_version"):
        read_jsonl(p, Task)


def test_missing_file_says_which_stage(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="file not found"):
        read_jsonl(tmp_path / "nope.jsonl", Task)


def test_atomic_write_keeps_old_file_when_interrupted(tmp_path: Path) -> None:
    p = tmp_path / "out.jsonl"
    write_jsonl(p, [SAMPLES[0]])
    before = p.read_text()

    def gen():
        yield SAMPLES[0]
        raise KeyboardInterrupt  # a kill half-way through

    with pytest.raises(KeyboardInterrupt):
        write_jsonl(p, gen())
    assert p.read_text() == before
    assert [x.name for x in tmp_path.iterdir()] == ["out.jsonl"]  # no temp left behind


def test_atomic_directory_replace(tmp_path: Path) -> None:
    d = tmp_path / "model"
    with atomic_path(d) as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("1")
    with atomic_path(d) as tmp:
        tmp.mkdir()
        (tmp / "b").write_text("2")
    assert sorted(x.name for x in d.iterdir()) == ["b"]


def test_journal_drops_torn_tail(tmp_path: Path) -> None:
    j = JsonlAppender(tmp_path / "j", Task)
    j.append(SAMPLES[0])
    with (tmp_path / "j").open("a") as fh:
        fh.write('{"task_id": "trunc')  # killed mid-write
    assert j.load() == [SAMPLES[0]]
    j.append(SAMPLES[0])
    assert j.load() == [SAMPLES[0], SAMPLES[0]]


def test_invalid_utf8_names_file_and_line(tmp_path: Path) -> None:
    """A killed writer can tear a multi-byte character: a bad line like any other, not a crash."""
    p = tmp_path / "eval.jsonl"
    good = SAMPLES[3].model_dump_json().encode()
    p.write_bytes(good + b"\n" + good.replace(b'"i"', b'"\xc3"') + b"\n")
    with pytest.raises(RecordError, match=rf"{p}:2: invalid UTF-8 at byte \d+"):
        read_jsonl(p, Trajectory)


def test_view_reports_a_corrupt_file_without_a_traceback(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from leap.cli import app

    p = tmp_path / "eval.jsonl"
    p.write_bytes(SAMPLES[3].model_dump_json().encode()[:40] + b"\xe2\x82\n")
    res = CliRunner().invoke(app, ["view", str(p)])
    assert res.exit_code == 2 and (res.exception is None or isinstance(res.exception, SystemExit))
    assert f"{p}:1: invalid UTF-8" in res.output and "Traceback" not in res.output


def test_json_error_says_where_once(tmp_path: Path) -> None:
    p = tmp_path / "tasks.jsonl"
    p.write_text('{"task_id": "a\tb"}\n')  # a raw tab inside a string: "Invalid control character at"
    with pytest.raises(RecordError) as e:
        read_jsonl(p, Task)
    assert str(e.value) == f"{p}:1: invalid JSON at column 15: Invalid control character"


def test_journal_drops_a_torn_utf8_tail(tmp_path: Path) -> None:
    j = JsonlAppender(tmp_path / "j", Task)
    j.append(SAMPLES[0])
    with (tmp_path / "j").open("ab") as fh:
        fh.write(b'{"task_id": "\xe2\x82')  # killed inside a multi-byte character
    assert j.load() == [SAMPLES[0]]
