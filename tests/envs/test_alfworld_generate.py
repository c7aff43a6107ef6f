"""The ALFWorld game generator and task source: valid, winnable, balanced, reproducible games."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("alfworld")

from leap.envs.alfworld import scenes
from leap.envs.alfworld.engine import Engine, read_game
from leap.envs.alfworld.generate import SPLIT_DIRS, _alfred_id, generate, read_manifest
from leap.envs.alfworld.params import TASK_TYPES, AlfworldParams
from leap.envs.alfworld.tasks import AlfworldTasks

SMALL = dict(n_train=6, n_valid=1, n_test=1, n_test_ood=2)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> AlfworldTasks:
    root = tmp_path_factory.getbasetemp() / "alfworld_games"  # shared with the oracle tests
    src = AlfworldTasks(AlfworldParams(games_dir=str(root), **SMALL), seed=0)
    src.prepare()
    return src


def _scene(game_file: str | Path) -> int:
    return int(Path(game_file).parent.parent.name.rsplit("-", 1)[1])


def test_splits_counts_and_balance(source):
    counts = {s: len(source.tasks(s)) for s in ("train", "valid", "test", "test_ood")}
    assert counts == {"train": 6, "valid": 1, "test": 1, "test_ood": 2}
    assert Counter(t.category for t in source.tasks("train")) == Counter(TASK_TYPES)
    for split, d in SPLIT_DIRS.items():
        for f in source.game_files(split):
            assert f"/json_2.1.1/{d}/" in str(f)


def test_ood_scenes_are_held_out(source):
    seen = set(scenes.scene_pool("train"))
    assert not seen & set(scenes.scene_pool("test_ood"))
    for split in ("train", "valid", "test"):
        assert {_scene(f) for f in source.game_files(split)} <= seen
    assert {_scene(f) for f in source.game_files("test_ood")}.isdisjoint(seen)


def test_games_are_official_format_and_winnable(source):
    """Every game loads on the engine, is not won at reset, and its walkthrough wins it."""
    engine = Engine()
    try:
        for split in ("train", "test_ood"):
            for f in source.game_files(split):
                game, traj = read_game(str(f))
                assert game["solvable"] is True and game["pddl_domain"].startswith(";; Specification in PDDL")
                assert traj["task_type"] in TASK_TYPES and traj["pddl_params"]["object_target"]
                assert traj["turk_annotations"]["anns"][0]["task_desc"]
                state = engine.reset(str(f))
                assert not state["won"]
                plan = game["walkthrough"]
                assert 2 <= len(plan) <= 15
                for action in plan:
                    assert action in state["admissible_commands"], (f, action)
                    state = engine.step(action)
                assert state["won"], f
    finally:
        engine.close()


def test_task_records_and_privileged_state(source):
    task = source.tasks("train")[0]
    assert task.env == "alfworld" and task.spec["game_file"].endswith("game.tw-pddl")
    assert task.instruction and "Your task" not in task.instruction
    ps = source.privileged_state(task)
    game, _ = read_game(task.spec["game_file"])
    assert ps.plan == game["walkthrough"]
    assert ps.facts["task_type"] == task.category and ps.facts["object_locations"]
    for obj, recep in ps.facts["object_locations"].items():
        assert f"{obj} is in {recep}" in ps.secrets


def test_prepare_is_idempotent_and_tracks_params(source, tmp_path):
    manifest = source.root / "manifest.json"
    before = manifest.stat().st_mtime_ns
    source.prepare()
    assert manifest.stat().st_mtime_ns == before
    other = AlfworldTasks(source.params.model_copy(update={"n_test_ood": 3}), seed=0)
    assert not other.is_prepared()  # different counts: prepare would regenerate
    assert not AlfworldTasks(source.params, seed=1).is_prepared()


def test_same_seed_same_games_other_seed_other_games(tmp_path):
    params = AlfworldParams(n_train=1, n_valid=0, n_test=0, n_test_ood=1, check_handcoded_expert=False)
    generate(tmp_path / "a", params, seed=7)
    generate(tmp_path / "b", params, seed=7)
    generate(tmp_path / "c", params, seed=8)

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    a, b, c = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
    assert a == b
    assert len([k for k in a if k.endswith("game.tw-pddl")]) == 2
    games_a = {json.loads(v)["pddl_problem"] for k, v in a.items() if k.endswith("game.tw-pddl")}
    games_c = {json.loads(v)["pddl_problem"] for k, v in c.items() if k.endswith("game.tw-pddl")}
    assert games_a.isdisjoint(games_c)
    assert read_manifest(tmp_path / "a")["key"]["seed"] == 7


def test_alfworlds_own_loader_reads_the_games(source, capsys):
    """alfworld's AlfredTWEnv collects the generated split dirs as it would the official data."""
    from alfworld.agents.environment.alfred_tw_env import AlfredTWEnv

    config = {
        "env": {"goal_desc_human_anns_prob": 0, "task_types": [1, 2, 3, 4, 5, 6]},
        "dataset": {"data_path": str(source.root / "json_2.1.1" / "train"), "num_train_games": -1},
    }
    tw = AlfredTWEnv(config, train_eval="train")
    assert sorted(tw.game_files) == sorted(str(f) for f in source.game_files("train"))


def test_handcoded_expert_wins_the_handwritten_game():
    from leap.envs.alfworld.generate import handcoded_expert_wins

    game = next((Path(__file__).resolve().parents[1] / "fixtures" / "alfworld").rglob("game.tw-pddl"))
    engine = Engine()
    try:
        assert handcoded_expert_wins(engine, str(game), max_steps=60, seed=0)
        assert not handcoded_expert_wins(engine, str(game), max_steps=3, seed=0)
    finally:
        engine.close()


def test_poseless_basins_get_alfreds_id_form():
    """A sink or bathtub basin without a pose in the layout gets ALFRED's "Sink|x|y|z|SinkBasin" id
    (the engine renders a bare "SinkBasin|..." as "sinkbasinbasin"), drawing the same random numbers
    as any other receptacle so the rest of the game is unchanged."""
    a, b = random.Random(3), random.Random(3)
    sink, desk = _alfred_id("SinkBasin", a), _alfred_id("Desk", b)
    assert sink.startswith("Sink|") and sink.endswith("|SinkBasin") and sink.count("|") == 4, sink
    assert sink.split("|")[1:4] == desk.split("|")[1:4] and desk.startswith("Desk|")
    assert _alfred_id("BathtubBasin", a).startswith("Bathtub|")
    _alfred_id("Desk", b)
    assert a.random() == b.random()
