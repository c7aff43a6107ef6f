"""The people-facing sub-commands: leak-report, bench, play, view."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from leap.agent import TeacherPolicy
from leap.cli import app
from leap.envs.toy import ToyEnv, ToyTasks
from leap.io import write_jsonl
from leap.rollout import run_episodes
from leap.teachers.oracle import OracleTeacher


@pytest.fixture
def toy_trajs(tmp_path: Path) -> tuple[Path, Path]:
    src = ToyTasks(0)
    tasks = src.tasks("train")[:4]
    priv = {t.task_id: src.privileged_state(t) for t in tasks}
    trajs = run_episodes(
        tasks, TeacherPolicy(OracleTeacher(2)), ToyEnv, horizon=6, privileged=priv, progress=False
    )
    write_jsonl(tmp_path / "demos.jsonl", trajs)
    write_jsonl(tmp_path / "priv.jsonl", priv.values())
    return tmp_path / "demos.jsonl", tmp_path / "priv.jsonl"


def test_leak_report_is_a_sub_command(toy_trajs: tuple[Path, Path], tmp_path: Path) -> None:
    trajs, priv = toy_trajs
    out = tmp_path / "leaks.json"
    res = CliRunner().invoke(app, ["leak-report", str(trajs), "--privileged", str(priv), "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert set(report) == {"0", "1", "2", "3", "4"}
    assert report["0"]["rate"] == 0.0 and report["4"]["rate"] > 0  # only λ4 states the key's box
    assert "λ4: leak rate" in res.output


def test_leak_report_with_the_configured_teacher(
    toy_trajs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trajs, priv = toy_trajs
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"env": {"name": "toy"}}))
    args = [
        "leak-report",
        str(trajs),
        "--privileged",
        str(priv),
        "--teacher",
        "configured",
        "--levels",
        "0,4",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "λ0: leak rate 0.0" in res.output and "λ1" not in res.output
    bad = CliRunner().invoke(app, ["leak-report", str(trajs), "--teacher", "someone"])
    assert bad.exit_code == 2 and "'oracle' or 'configured'" in bad.output


def test_bench_is_a_sub_command(tiny_model_dir: Path) -> None:
    args = [
        "bench",
        "--model",
        str(tiny_model_dir),
        "--n-gen",
        "2",
        "--max-new-tokens",
        "4",
        "--sections",
        "gen",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    lines = [line[line.index('{"section"') :] for line in res.output.splitlines() if '{"section"' in line]
    assert [json.loads(line)["section"] for line in lines] == ["gen_base_batched", "gen_base_single"]


@pytest.fixture
def toy_prepared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from leap.config import load_params
    from leap.stages import prepare

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"env": {"name": "toy", "horizon": 6}}))
    prepare.run(load_params())  # the stage alone (no MLflow store to create)
    return tmp_path


def test_play_watches_the_oracle_on_the_shared_runner(toy_prepared: Path) -> None:
    res = CliRunner().invoke(app, ["play", "--oracle", "2", "--index", "1"])
    assert res.exit_code == 0, res.output
    assert "> Action: open door" in res.output and "You are free!" in res.output
    assert "WON after 2 actions; score 1.0" in res.output


def test_play_by_hand(toy_prepared: Path) -> None:
    res = CliRunner().invoke(app, ["play"], input="dance\nopen box 1\nquit\n")
    assert res.exit_code == 0, res.output
    assert "Nothing happens." in res.output and "You open box 1." in res.output
    assert "stopped" in res.output
    res = CliRunner().invoke(
        app, ["play"], input="".join(f"open box {b}\n" for b in (1, 2, 3, 4)) + "open door\n"
    )
    assert "WON after" in res.output
    assert CliRunner().invoke(app, ["play", "--index", "99"]).exit_code == 2
