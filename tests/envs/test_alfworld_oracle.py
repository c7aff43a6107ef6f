"""The ALFWorld oracle at λ0..λ4 on generated games: wins, leaks nothing below λ3, states facts at λ4."""

from __future__ import annotations

import pytest

pytest.importorskip("alfworld")

from leap.agent import StepContext
from leap.envs.alfworld.belief import Belief, parse_goal
from leap.envs.alfworld.engine import read_game
from leap.envs.alfworld.env import AlfworldEnv
from leap.envs.alfworld.oracle import alfworld_oracle
from leap.envs.alfworld.params import TASK_TYPES, AlfworldParams
from leap.envs.alfworld.play import play_oracle
from leap.envs.alfworld.tasks import AlfworldTasks
from leap.records import PrivilegedState, Step
from leap.teachers.oracle import OracleTeacher

SMALL = dict(n_train=6, n_valid=1, n_test=1, n_test_ood=2)  # same games as test_alfworld_generate


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "alfworld_games"
    src = AlfworldTasks(AlfworldParams(games_dir=str(root), **SMALL), seed=0)
    src.prepare()
    out = src.tasks("train")
    assert sorted(t.category for t in out) == sorted(TASK_TYPES)
    return out


@pytest.fixture(scope="module")
def env():
    e = AlfworldEnv()
    yield e
    e.close()


def _leaks(reason: str, privileged: dict) -> list[str]:
    text = reason.lower()
    found = [s for s in privileged["secrets"] if s.lower() in text]
    if privileged["expert_action"] and privileged["expert_action"] in text:
        found.append(privileged["expert_action"])
    return found


def test_oracle_levels(env, tasks):
    """Every level wins every task type; λ0..λ2 reasons leak nothing; λ3 hints; λ4 states the fact;
    λ2..λ4 follow the expert's plan, λ0 has to search so it is never shorter."""
    for task in tasks:
        lengths = {}
        for level in range(5):
            ep = play_oracle(env, task, level, horizon=30)
            steps = list(zip(ep.labels, ep.privileged_seen, strict=True))
            assert ep.won, (level, task.task_id, [(lab.action, lab.reason) for lab in ep.labels])
            lengths[level] = len(steps)
            for lab, priv in steps:
                assert lab.reason and len(lab.reason.split()) <= 25, lab.reason
                if level <= 2:
                    assert not _leaks(lab.reason, priv), (level, lab, priv)
            if level == 3:
                assert any("likely" in lab.reason for lab, _ in steps), ep.labels
            if level == 4:  # every game starts with the target hidden
                assert any(_leaks(lab.reason, priv) for lab, priv in steps), ep.labels
        assert lengths[2] == lengths[3] == lengths[4] <= lengths[1] <= lengths[0], (task.task_id, lengths)
        assert lengths[4] == len(read_game(task.spec["game_file"])[0]["walkthrough"]), task.task_id


def _ctx(task, obs, info, history=(), privileged=None, state=None):
    return StepContext(
        task=task,
        history=list(history),
        observation=obs,
        privileged=privileged,
        admissible_actions=info["admissible_actions"],
        privileged_state=state,
    )


def test_level0_reads_nothing_privileged(env, tasks):
    task = tasks[0]
    obs, info = env.reset(task)
    clean = alfworld_oracle(_ctx(task, obs, info), None, 0)
    fake = {"expert_action": "go to nowhere 9", "secrets": ["the answer is in nowhere 9"]}
    state = PrivilegedState(task_id=task.task_id, env="alfworld", plan=["look"], secrets=["x"])
    poisoned = alfworld_oracle(_ctx(task, obs, info, privileged=fake, state=state), None, 0)
    assert poisoned == clean
    # ... while λ2 does follow the privileged action when it is admissible
    real = info["privileged"]
    assert alfworld_oracle(_ctx(task, obs, info, privileged=real), None, 2).action == real["expert_action"]


def test_oracle_is_deterministic_and_dispatched(env, tasks):
    task = tasks[1]
    obs, info = env.reset(task)
    action = info["privileged"]["expert_action"]
    obs2, _r, _t, _tr, info2 = env.step(action)
    history = [Step(observation=obs, reason="r", action=action)]
    ctx = _ctx(task, obs2, info2, history, privileged=info2["privileged"])
    labels = [alfworld_oracle(ctx, None, lvl) for lvl in range(5)]
    assert labels == [alfworld_oracle(ctx, None, lvl) for lvl in range(5)]
    out = OracleTeacher(2).correct([(ctx, None)])
    assert out == [labels[2]]


def test_parse_goal_reads_every_template():
    import alfworld.gen.goal_library as glib

    for task_type in TASK_TYPES:
        for template in glib.gdict[task_type]["templates"]:
            text = template.format(obj="apple", recep="countertop", toggle="desklamp", mrecep="")
            goal = parse_goal(text)
            assert goal.task_type == task_type, text
            assert goal.obj == "apple"
            target = goal.toggle if task_type == "look_at_obj_in_light" else goal.recep
            assert target in ("desklamp", "countertop")


def test_ranked_memory_lists_the_level0_search_order(tasks):
    """`memory: ranked` ends every observation (the first too) with the unchecked receptacles in the
    order λ0 searches them, so each λ0 search step goes to the first one listed; and the line does not
    change what the oracle believes (it reads the engine's text only)."""
    ranked = AlfworldEnv(memory="ranked")
    plain = AlfworldEnv()
    prefix = "\nNot checked yet, likeliest first: "
    try:
        for task in tasks:
            ep = play_oracle(ranked, task, 0, horizon=30)
            assert ep.won, task.task_id
            assert ep.labels == play_oracle(plain, task, 0, horizon=30).labels, task.task_id
            obs, _info = ranked.reset(task)
            goal = parse_goal(task.instruction, task.category)
            belief = Belief()
            belief.observe(obs)
            searched = 0
            for label in ep.labels:
                assert prefix in obs, obs
                listed = obs.rpartition(prefix)[2].rstrip(".").split(", ")
                # searching: for the object (nothing held) or, holding it, for the lamp
                search = belief.held is None or (goal.task_type == "look_at_obj_in_light" and belief.held)
                if search and label.action.startswith("go to ") and label.action[6:] in listed:
                    assert label.action[6:] == listed[0], (task.task_id, label, obs)
                    searched += 1
                obs, *_ = ranked.step(label.action)
                belief.apply(label.action, obs)
            assert searched >= 1, task.task_id
    finally:
        ranked.close()
        plain.close()


def test_ranked_seen_memory_says_where_the_needed_object_was_seen():
    """`memory: ranked_seen` adds where the agent saw what the goal still needs: the second laptop of a
    two-object task after the first is delivered (not the delivered one), the lamp once a look-at
    task's object is held, nothing while a single-object task holds its object; and the oracle's
    belief reads past the line (strip_memory)."""
    from leap.envs.alfworld.belief import memory_line, strip_memory

    steps = [
        (
            "go to desk 1",
            "You arrive at desk 1. On the desk 1, you see a laptop 2, a desklamp 1, and a laptop 1.",
        ),
        ("take laptop 2 from desk 1", "You pick up the laptop 2 from the desk 1."),
        ("go to sidetable 1", "You arrive at sidetable 1. On the sidetable 1, you see nothing."),
        ("move laptop 2 to sidetable 1", "You move the laptop 2 to the sidetable 1."),
    ]
    b = Belief()
    b.observe(
        "You are in the middle of a room. "
        "Looking quickly around you, you see a desk 1, a sidetable 1, and a bed 1."
    )
    lines = []
    for action, result in steps:
        b.apply(action, result)
        lines.append(memory_line(b, "ranked_seen", parse_goal("put two laptop in sidetable")))
    assert lines[0].endswith(" Seen: laptop 2 at desk 1, laptop 1 at desk 1.")
    assert lines[-1] == "Not checked yet, likeliest first: bed 1. Seen: laptop 1 at desk 1."
    assert (
        memory_line(b, "ranked", parse_goal("put two laptop in sidetable"))
        == "Not checked yet, likeliest first: bed 1."
    )
    assert strip_memory(f"{steps[-1][1]}\n{lines[-1]}") == steps[-1][1]

    held = Belief()
    held.observe("Looking quickly around you, you see a desk 1, and a bed 1.")
    held.apply(*steps[0])
    held.apply(*steps[1])
    assert "Seen" not in memory_line(held, "ranked_seen", parse_goal("put a laptop in bed"))
    look = memory_line(held, "ranked_seen", parse_goal("look at laptop under the desklamp"))
    assert look.endswith(" Seen: desklamp 1 at desk 1.")


def test_ranked_held_memory_says_what_the_agent_holds():
    """`memory: ranked_held`: the ranked line and what the agent holds (nothing, then what it picked
    up, then nothing once it put it down); the belief reads past it."""
    from leap.envs.alfworld.belief import memory_line, strip_memory

    goal = parse_goal("put a laptop in bed")
    b = Belief()
    b.observe("Looking quickly around you, you see a desk 1, and a bed 1.")
    holding = []
    for action, result in [
        ("go to desk 1", "You arrive at desk 1. On the desk 1, you see a laptop 1."),
        ("take laptop 1 from desk 1", "You pick up the laptop 1 from the desk 1."),
        ("go to bed 1", "You arrive at bed 1. On the bed 1, you see nothing."),
        ("move laptop 1 to bed 1", "You move the laptop 1 to the bed 1."),
    ]:
        b.apply(action, result)
        line = memory_line(b, "ranked_held", goal)
        assert line.startswith(memory_line(b, "ranked", goal).removesuffix("."))
        assert strip_memory(f"{result}\n{line}") == result
        holding.append(line.rpartition(" Holding: ")[2])
    assert holding == ["nothing.", "laptop 1.", "laptop 1.", "nothing."]


def test_taking_an_unprocessed_object_from_the_goal_receptacle_says_why():
    """A student that put the apple in the garbagecan before cooling it is corrected with "take it
    back", and the reason says what is missing (visible: the agent never cooled it), not "I found it"."""
    from leap.envs.alfworld.oracle import decide_visible, write_reason

    goal = parse_goal("cool some apple and put it in garbagecan", "pick_cool_then_place_in_recep")
    b = Belief()
    b.observe("Looking quickly around you, you see a countertop 1, a fridge 1, and a garbagecan 1.")
    arrive = ("go to countertop 1", "You arrive at countertop 1. On the countertop 1, you see a apple 1.")
    for action, result in [
        arrive,
        ("take apple 1 from countertop 1", "You pick up the apple 1 from the countertop 1."),
        ("go to garbagecan 1", "You arrive at garbagecan 1. On the garbagecan 1, you see nothing."),
        ("move apple 1 to garbagecan 1", "You move the apple 1 to the garbagecan 1."),
    ]:
        b.apply(action, result)
    d = decide_visible(goal, b)
    assert d.action == "take apple 1 from garbagecan 1"
    reason = write_reason(d, 1, goal, b, "k", [])
    assert "not cool yet" in reason and "found" not in reason

    fresh = Belief()  # the same object on an ordinary receptacle keeps the plain reason
    fresh.observe("Looking quickly around you, you see a countertop 1, a fridge 1, and a garbagecan 1.")
    fresh.apply(*arrive)
    d = decide_visible(goal, fresh)
    assert d.action == "take apple 1 from countertop 1"
    assert "not cool" not in write_reason(d, 1, goal, fresh, "k", [])
