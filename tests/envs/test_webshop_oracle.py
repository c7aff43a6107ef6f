"""The WebShop oracle at each privilege level, a random clicker, and the page parser it uses."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from leap.agent import PolicyOutput, StepContext, TeacherPolicy
from leap.config import EnvParams
from leap.envs.base import make_env, make_task_source
from leap.envs.webshop.catalogue import SAMPLE_DIR
from leap.envs.webshop.env import WebshopEnv
from leap.envs.webshop.goals import Goal
from leap.envs.webshop.params import WebshopParams
from leap.envs.webshop.policy import keywords, split_instruction
from leap.envs.webshop.tasks import WebshopTaskSource
from leap.envs.webshop.view import parse_view
from leap.records import Step, Task, Trajectory
from leap.rollout import run_episodes
from leap.teachers.oracle import OracleTeacher

HORIZON = 10
PRICE_30 = ", and price lower than 30.00 dollars"


def _run(
    tasks: list[Task], policy: object, params: WebshopParams, privileged: dict | None = None
) -> list[Trajectory]:
    env_params = EnvParams(name="webshop", horizon=HORIZON, webshop=params)
    return run_episodes(
        tasks,
        policy,
        lambda: make_env("webshop", env_params),
        horizon=HORIZON,  # type: ignore[arg-type]
        batch_size=4,
        privileged=privileged,
        progress=False,
    )


@pytest.fixture(scope="module")
def sample() -> tuple[WebshopTaskSource, list[Task], dict]:
    src = make_task_source("webshop", EnvParams(name="webshop"), 0)
    src.prepare()
    tasks = [t for split in ("train", "valid", "test") for t in src.tasks(split)]
    return src, tasks, {t.task_id: src.privileged_state(t) for t in tasks}  # type: ignore[return-value]


def _oracle(level: int, privileged: bool = True) -> TeacherPolicy:
    return TeacherPolicy(OracleTeacher(level), privileged=privileged)


def test_l4_oracle_buys_the_target_on_every_sample_goal(sample) -> None:
    _, tasks, priv = sample
    assert len(tasks) == 18
    trajs = _run(tasks, _oracle(4), WebshopParams(), priv)
    bad = {t.task_id: (t.reward, t.score_components) for t in trajs if not (t.success and t.reward == 1.0)}
    assert not bad
    assert all(t.score_components == {"att": 1.0, "opt": 1.0, "type": 1.0, "price": 1.0} for t in trajs)


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_lower_levels_shop_well_on_the_sample(sample, level: int) -> None:
    _, tasks, priv = sample
    trajs = _run(tasks, _oracle(level), WebshopParams(), priv)
    mean = sum(t.reward for t in trajs) / len(trajs)
    assert mean >= (0.9 if level < 2 else 1.0)
    assert max(t.num_actions for t in trajs) < HORIZON


class RandomClicker:
    """Searches three random words of the instruction, then clicks at random."""

    policy_id = "random"
    privileged = False

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def act(self, contexts: list[StepContext]) -> list[PolicyOutput]:
        out = []
        for ctx in contexts:
            acts = ctx.admissible_actions or []
            if any(a.startswith("search[") for a in acts):
                kws = keywords(split_instruction(ctx.task.instruction)[0])
                action = f"search[{' '.join(self.rng.sample(kws, min(3, len(kws))))}]"
            else:
                action = self.rng.choice([a for a in acts if a.startswith("click[")])
            out.append(PolicyOutput(reason="random", action=action))
        return out


def test_random_clicker_scores_low(sample) -> None:
    _, tasks, _ = sample
    rewards = [t.reward for seed in range(3) for t in _run(tasks, RandomClicker(seed), WebshopParams())]
    mean = sum(rewards) / len(rewards)
    assert mean < 0.25
    assert sum(r == 1.0 for r in rewards) / len(rewards) < 0.2


@pytest.mark.parametrize("show_instruction", [True, False])
def test_parsed_view_equals_engine_view(sample, show_instruction: bool) -> None:
    # The oracle sees only text, admissible actions and history; it must rebuild the engine's state.
    _, tasks, _ = sample
    env = WebshopEnv(WebshopParams(observation_instruction=show_instruction))
    clicker = RandomClicker(7)
    pages = set()
    for task in tasks:
        obs, info = env.reset(task)
        history: list[Step] = []
        for _ in range(25):
            ctx = StepContext(
                task=task, history=history, observation=obs, admissible_actions=info["admissible_actions"]
            )
            assert parse_view(obs, info["admissible_actions"], history) == env._session.view()
            pages.add(env._session.page)
            action = clicker.act([ctx])[0].action
            new_obs, _, term, _, new_info = env.step(action)
            history.append(
                Step(
                    observation=obs,
                    reason="",
                    action=action,
                    admissible_actions=info["admissible_actions"],
                    valid=new_info["valid_action"],
                )
            )
            obs, info = new_obs, new_info
            if term:
                break
    assert pages == {"search", "results", "item", "sub"}


def test_reasons_below_l4_keep_the_target_secret(sample) -> None:
    _, tasks, priv = sample
    for level in (1, 2, 3, 4):
        trajs = _run(tasks, _oracle(level), WebshopParams(), priv)
        for traj in trajs:
            secrets = [s.lower() for s in priv[traj.task_id].secrets]
            named = any(s in step.reason.lower() for step in traj.steps for s in secrets)
            assert named == (level == 4), (level, traj.task_id)


def test_without_privileged_facts_the_oracle_acts_as_l0(sample) -> None:
    _, tasks, priv = sample
    blind = _run(tasks[:6], _oracle(3, privileged=False), WebshopParams())
    l0 = _run(tasks[:6], _oracle(0), WebshopParams(), priv)
    assert [[s.action for s in t.steps] for t in blind] == [[s.action for s in t.steps] for t in l0]


# -- a store with a decoy: the same page as the target, without the wanted attribute ---------


@pytest.fixture(scope="module")
def decoy_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[WebshopParams, Task, dict]:
    raw = json.loads((SAMPLE_DIR / "items_shuffle_sample.json").read_text())
    dress = next(p for p in raw if p["asin"] == "B08ZRR3DZT")
    target = {
        **dress,
        "small_description": [*dress["small_description"], "Fully lined with a velvet lining. "],
    }
    decoy = {**dress, "asin": "B0DECOY001"}  # identical in every indexed and shown field
    folder = tmp_path_factory.mktemp("decoy")
    others = [p for p in raw if p["asin"] != "B08ZRR3DZT"]
    (folder / "items_shuffle_decoy.json").write_text(json.dumps([decoy, target, *others]))
    params = WebshopParams(data_dir=str(folder))
    src = WebshopTaskSource(params, 0)
    instruction = "i need a sexy bodycon dress with a velvet lining with color: black" + PRICE_30
    spec = Goal(
        goal_id="decoy",
        asin="B08ZRR3DZT",
        instruction=instruction,
        attributes=["velvet lining"],
        options=["black"],
        option_names=["color"],
        price_upper=30.0,
        name=dress["name"],
        query=dress["query"].lower(),
        product_category=dress["product_category"],
        category="fashion",
        source="synthetic",
    ).to_spec()
    task = Task(
        task_id="webshop-decoy",
        env="webshop",
        split="test",
        category="fashion",
        instruction=instruction,
        spec=spec,
    )
    return params, task, {task.task_id: src.privileged_state(task)}


def test_levels_differ_where_the_page_cannot_tell_target_from_decoy(decoy_store) -> None:
    params, task, priv = decoy_store
    by_level = {lvl: _run([task], _oracle(lvl), params, priv)[0] for lvl in range(5)}
    actions = {lvl: [s.action for s in t.steps] for lvl, t in by_level.items()}
    # λ0 cannot tell them apart and buys the decoy (first in the results): no velvet lining.
    assert "click[b0decoy001]" in actions[0] and "click[b08zrr3dzt]" not in actions[0]
    assert by_level[0].score_components["att"] == 0.0 and by_level[0].reward < 1.0
    # λ1 opens the decoy too, but knows to go back, then buys the target.
    assert actions[1][1:4] == ["click[b0decoy001]", "click[< prev]", "click[b08zrr3dzt]"]
    back = by_level[1].steps[2]
    assert back.reason and "B08ZRR3DZT" not in back.reason
    # λ2 and up go straight to the target.
    for lvl in (1, 2, 3, 4):
        assert by_level[lvl].success, lvl
    for lvl in (2, 3, 4):
        assert "click[b0decoy001]" not in actions[lvl]
        assert len(actions[lvl]) < len(actions[1])


def test_oracle_corrects_a_student_on_the_decoy(decoy_store) -> None:
    params, task, priv = decoy_store
    env = WebshopEnv(params, horizon=HORIZON)
    obs0, info0 = env.reset(task)
    obs1, *_, info1 = env.step("search[bodycon dress velvet lining black]")
    obs2, *_, info2 = env.step("click[b0decoy001]")
    history = [
        Step(
            observation=obs0,
            reason="search",
            action="search[bodycon dress velvet lining black]",
            admissible_actions=info0["admissible_actions"],
        ),
        Step(
            observation=obs1,
            reason="open",
            action="click[b0decoy001]",
            admissible_actions=info1["admissible_actions"],
        ),
    ]
    ctx = StepContext(
        task=task,
        history=history,
        observation=obs2,
        admissible_actions=info2["admissible_actions"],
        privileged=info2["privileged"],
        privileged_state=priv[task.task_id],
    )
    l0, l2 = (OracleTeacher(lvl).correct([(ctx, None)])[0] for lvl in (0, 2))
    assert l0.action == "click[black]"  # type: ignore[union-attr]
    assert l2.action == "click[< prev]"  # type: ignore[union-attr]
    assert "velvet lining" in l2.reason  # type: ignore[union-attr]  (a reason read off the page and instruction)


def test_bundled_sample_keeps_its_licence_note() -> None:
    note = (SAMPLE_DIR / "NOTICE.txt").read_text()
    assert "princeton-nlp/WebShop" in note and "items_shuffle_sample.json" in note
    assert Path(SAMPLE_DIR / "items_human_ins_sample.json").is_file()


def test_oracle_works_without_admissible_actions(sample) -> None:
    # Contexts built by other tools may lack admissible actions: the oracle still finishes.
    _, tasks, priv = sample
    task = next(t for t in tasks if len(t.spec["options"]) == 2)
    env = WebshopEnv(WebshopParams(), horizon=HORIZON)
    obs, info = env.reset(task)
    history: list[Step] = []
    for _ in range(HORIZON):
        ctx = StepContext(task=task, history=history, observation=obs, privileged_state=priv[task.task_id])
        label = OracleTeacher(2).correct([(ctx, None)])[0]
        new_obs, _, term, _, new_info = env.step(label.action)  # type: ignore[union-attr]
        history.append(Step(observation=obs, reason="", action=label.action, valid=new_info["valid_action"]))  # type: ignore[union-attr]
        obs, info = new_obs, new_info
        if term:
            break
    assert info["won"] and len(history) == 5


def test_oracle_sees_through_a_parse_failure_note(sample) -> None:
    # After an unparsable student output the runner shows a note instead of the page (the page
    # did not change): the oracle decides from the last page in the history.
    _, tasks, priv = sample
    task = tasks[0]
    env = WebshopEnv(WebshopParams(), horizon=HORIZON)
    obs0, info0 = env.reset(task)
    action = priv[task.task_id].plan[0]
    obs1, *_, info1 = env.step(action)
    history = [
        Step(observation=obs0, reason="", action=action, admissible_actions=info0["admissible_actions"]),
        Step(
            observation=obs1,
            reason="",
            action="",
            parse_ok=False,
            valid=False,
            admissible_actions=info1["admissible_actions"],
        ),
    ]
    note = "Your output could not be parsed. Write 'Reason: ...' then 'Action: ...'."
    ctx = StepContext(
        task=task,
        history=history,
        observation=note,
        admissible_actions=info1["admissible_actions"],
        privileged_state=priv[task.task_id],
    )
    label = OracleTeacher(2).correct([(ctx, None)])[0]
    assert label.action == priv[task.task_id].plan[1]  # type: ignore[union-attr]
