"""AlfworldEnv on the real engine: a hand-written game (tests/fixtures/alfworld) and generated ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("alfworld")

from leap.envs.alfworld.env import AlfworldEnv
from leap.envs.alfworld.params import AlfworldParams
from leap.envs.alfworld.play import play_oracle, task_for
from leap.envs.alfworld.tasks import AlfworldTasks
from leap.envs.base import EnvError, make_env, make_task_source, registered
from leap.records import Task

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "alfworld"
HAND_GAME = next(FIXTURE.rglob("game.tw-pddl"))
HAND_PLAN = [
    "go to cabinet 2",
    "open cabinet 2",
    "take tomato 1 from cabinet 2",
    "go to fridge 1",
    "cool tomato 1 with fridge 1",
    "go to diningtable 1",
    "move tomato 1 to diningtable 1",
]


@pytest.fixture(scope="module")
def env():
    e = AlfworldEnv()
    yield e
    e.close()


@pytest.fixture(scope="module")
def hand_task() -> Task:
    return task_for(HAND_GAME, split="test")


def test_fixture_is_the_handwritten_problem():
    game = json.loads(HAND_GAME.read_text())
    assert game["pddl_problem"] == (FIXTURE / "problem.pddl").read_text()
    assert game["walkthrough"] == HAND_PLAN


def test_reset_shows_task_and_receptacles_only(env, hand_task):
    obs, info = env.reset(hand_task)
    assert "Your task is to: put a cool tomato in diningtable." in obs
    assert "cabinet 2" in obs and "Welcome to TextWorld" not in obs
    assert "tomato" not in obs.split("Your task is to:")[0]  # hidden until seen
    assert "go to fridge 1" in info["admissible_actions"] and "help" not in info["admissible_actions"]
    assert info["won"] is False and info["valid_action"] is True and info["score"] == 0.0
    priv = info["privileged"]
    assert priv["expert_action"] == "go to cabinet 2"
    assert "tomato 1 is in cabinet 2" in priv["secrets"]
    json.dumps(info)  # JSON-serialisable (recorded in trajectories)


def test_invalid_action_and_win(env, hand_task):
    env.reset(hand_task)
    obs, reward, terminated, truncated, info = env.step("take tomato 1 from cabinet 2")  # not there yet
    assert obs == "Nothing happens." and info["valid_action"] is False
    assert (reward, terminated, truncated) == (0.0, False, False)
    rewards = []
    for action in HAND_PLAN:
        obs, reward, terminated, truncated, info = env.step(action.upper())  # commands are normalised
        assert info["valid_action"], (action, obs)
        rewards.append(reward)
    assert rewards == [0.0] * 6 + [1.0]
    assert terminated and not truncated and info["won"] and info["score"] == 1.0


def test_secrets_disappear_once_seen(env, hand_task):
    env.reset(hand_task)
    env.step("go to cabinet 2")
    _obs, _r, _t, _tr, info = env.step("open cabinet 2")
    assert not any("tomato 1 is" in s for s in info["privileged"]["secrets"])
    assert info["privileged"]["expert_action"] == "take tomato 1 from cabinet 2"


def test_expert_recovers_from_a_wrong_object(env, hand_task):
    env.reset(hand_task)
    env.step("go to countertop 1")
    _o, _r, _t, _tr, info = env.step("take bread 1 from countertop 1")
    assert info["privileged"]["expert_action"] == "move bread 1 to countertop 1"


def test_missing_and_corrupt_games_raise_env_error(env, tmp_path):
    with pytest.raises(EnvError, match="not found"):
        env.reset(
            Task(
                task_id="x",
                env="alfworld",
                split="test",
                category="c",
                spec={"game_file": str(tmp_path / "nope" / "game.tw-pddl")},
            )
        )
    with pytest.raises(EnvError, match="game_file"):
        env.reset(Task(task_id="x", env="alfworld", split="test", category="c", spec={}))
    bad = tmp_path / "bad"
    shutil.copytree(HAND_GAME.parent, bad)
    game = json.loads((bad / "game.tw-pddl").read_text())
    game["pddl_problem"] = game["pddl_problem"].replace("SinkBasinType - rtype", "")
    (bad / "game.tw-pddl").write_text(json.dumps(game))
    with pytest.raises(EnvError, match="could not load"):
        env.reset(task_for(bad / "game.tw-pddl"))
    (bad / "game.tw-pddl").write_text("{not json")
    with pytest.raises(EnvError, match="corrupt"):
        env.reset(task_for(HAND_GAME).model_copy(update={"spec": {"game_file": str(bad / "game.tw-pddl")}}))


def test_env_keeps_working_after_an_error(env, hand_task):
    with pytest.raises(EnvError):
        env.reset(Task(task_id="x", env="alfworld", split="test", category="c", spec={"game_file": "/nope"}))
    obs, _info = env.reset(hand_task)
    assert "Your task is to" in obs


def test_oracle_wins_the_handwritten_game(env, hand_task):
    for level in (0, 2, 4):
        assert play_oracle(env, hand_task, level).won, level


def test_registry_and_lazy_import():
    assert "alfworld" in registered()
    from leap.config import EnvParams

    e = make_env("alfworld", EnvParams())
    assert isinstance(e, AlfworldEnv)
    e.close()
    src = make_task_source("alfworld", EnvParams(alfworld=AlfworldParams(data_dir=str(FIXTURE))), 0)
    assert isinstance(src, AlfworldTasks)


def test_official_layout_loader_maps_splits(tmp_path):
    """data_dir mode: valid_seen -> test; the hand-written game has a privileged state."""
    src = AlfworldTasks(AlfworldParams(data_dir=str(FIXTURE)), seed=0)
    src.prepare()
    tasks = src.tasks("test")
    assert [t.category for t in tasks] == ["pick_cool_then_place_in_recep"]
    assert tasks[0].instruction == "put a cool tomato in diningtable"
    assert src.tasks("test_ood") == [] and src.tasks("train") == []
    ps = src.privileged_state(tasks[0])
    assert ps.plan == HAND_PLAN
    assert ps.facts["object_locations"] == {"tomato 1": "cabinet 2"}
    assert "tomato 1 is in cabinet 2" in ps.secrets
    with pytest.raises(EnvError):
        AlfworldTasks(AlfworldParams(data_dir=str(tmp_path)), 0).prepare()


def test_many_envs_in_lock_step(hand_task):
    """Rollouts batch envs in one process: 8 engines stepping in turn must not interfere."""
    envs = [AlfworldEnv() for _ in range(8)]
    try:
        infos = [e.reset(hand_task)[1] for e in envs]
        for k in range(0, 8, 2):  # half of them take a detour first, so the engines differ
            infos[k] = envs[k].step("go to shelf 1")[4]
        done = [False] * 8
        for _ in range(len(HAND_PLAN)):
            for k, e in enumerate(envs):
                if not done[k]:
                    _obs, _r, done[k], _t, infos[k] = e.step(infos[k]["privileged"]["expert_action"])
        assert all(done)
    finally:
        for e in envs:
            e.close()


def test_official_train_split_carves_valid(tmp_path):
    task_dir = HAND_GAME.parent.parent.name
    for k in range(4):
        shutil.copytree(HAND_GAME.parent, tmp_path / "json_2.1.1" / "train" / task_dir / f"trial_T{k}")
    params = AlfworldParams(data_dir=str(tmp_path / "json_2.1.1"), n_valid=1, n_train=10)
    src = AlfworldTasks(params, seed=0)
    train, valid = src.tasks("train"), src.tasks("valid")
    assert (len(train), len(valid)) == (3, 1)
    assert {t.task_id for t in train}.isdisjoint(t.task_id for t in valid)
    assert [t.task_id for t in AlfworldTasks(params, seed=0).tasks("valid")] == [valid[0].task_id]
    assert AlfworldTasks(params.model_copy(update={"n_train": 2}), seed=0).tasks("train") == train[:2]
