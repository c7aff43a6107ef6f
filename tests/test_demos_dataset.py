"""demos.source: dataset replays the dataset's expert actions and has the teacher write the reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from leap.cli import app
from leap.io import read_jsonl
from leap.records import PrivilegedState, Trajectory
from tests.teachers.teacher_fakes import FakeOpenAI, Reply


def _stage(root: Path, *args: str) -> str:
    res = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture
def toy_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    params = {
        "env": {"name": "toy", "horizon": 6},
        "demos": {"source": "dataset"},
        "loop": {"iterations": {}},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    _stage(tmp_path, "prepare")
    return tmp_path


def test_oracle_annotates_the_expert_actions(toy_dir: Path) -> None:
    _stage(toy_dir, "demos")
    demos = read_jsonl(toy_dir / "data/iter_0/demos.jsonl", Trajectory)
    plans = {
        p.task_id: p.plan
        for p in read_jsonl(toy_dir / "data/prepared/privileged/train.jsonl", PrivilegedState)
    }
    assert len(demos) == 12 and all(t.success and t.policy == "dataset" for t in demos)
    for t in demos:
        assert [s.action for s in t.steps] == plans[t.task_id]  # the dataset's actions, unchanged
        assert all(s.reason for s in t.steps)  # every one explained by the oracle
        assert "key is in box" not in " ".join(s.reason for s in t.steps)  # λ2: realizable reasons


def test_llm_teacher_annotates_with_its_cache(toy_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeOpenAI().start()
    monkeypatch.setenv("LEAP_TEST_KEY", "sk-test")
    fake.responder = lambda body, n: Reply(content=json.dumps({"reason": f"Reason {n}.", "action": "x"}))
    teacher = {
        "kind": "openai",
        "openai": {"model": "m", "base_url": fake.base_url, "api_key_env": "LEAP_TEST_KEY"},
    }
    (toy_dir / "exp.yaml").write_text(yaml.safe_dump({"teacher": teacher}))
    try:
        _stage(toy_dir, "-e", "exp.yaml", "demos")
        demos = read_jsonl(toy_dir / "data/iter_0/demos.jsonl", Trajectory)
        assert len(demos) == 12 and sum(t.num_actions for t in demos) == 24
        # One request per distinct (history, action); identical ones are asked once.
        first = {(t.steps[0].observation, t.steps[0].action) for t in demos}
        second = {(t.steps[0].observation, t.steps[0].action, t.steps[1].observation) for t in demos}
        n = len(first) + len(second)
        asked = [r["messages"][1]["content"] for r in fake.requests]
        assert len(asked) == len(set(asked)) == n < 24
        assert sum("Action taken: open door" in u for u in asked) == len(second)
        assert {s.reason for t in demos for s in t.steps} == {f"Reason {k}." for k in range(n)}
        _stage(toy_dir, "-e", "exp.yaml", "demos")  # unchanged re-run: every reply from the cache
        assert len(fake.requests) == n
        assert read_jsonl(toy_dir / "data/iter_0/demos.jsonl", Trajectory) == demos
    finally:
        fake.stop()


def test_steps_the_teacher_cannot_explain_drop_their_demonstration(toy_dir: Path) -> None:
    # The λ0 oracle follows the smell, or guesses the first closed box: it explains an expert's
    # "open box K" only when it would open box K itself, so the other demonstrations are dropped.
    (toy_dir / "exp.yaml").write_text(yaml.safe_dump({"demos": {"privilege_level": 0}}))
    _stage(toy_dir, "-e", "exp.yaml", "demos")
    demos = read_jsonl(toy_dir / "data/iter_0/demos.jsonl", Trajectory)
    assert 0 < len(demos) < 12
    assert all(all(s.reason for s in t.steps) for t in demos)
    assert all(t.category == "smell" or t.steps[0].action == "open box 1" for t in demos)
