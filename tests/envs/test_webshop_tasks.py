"""WebShop data loading, goals, splits, privileged states and registration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leap.config import EnvParams, load_params
from leap.envs.base import EnvError, make_task_source, registered, spec
from leap.envs.webshop.catalogue import SAMPLE_DIR, load_catalogue, parse_options, parse_pricing
from leap.envs.webshop.goals import PRICE_RANGE, Goal
from leap.envs.webshop.params import WebshopParams
from leap.envs.webshop.tasks import WebshopTaskSource

REPO = Path(__file__).resolve().parents[2]
SAMPLE = json.loads((SAMPLE_DIR / "items_shuffle_sample.json").read_text())


def _store(tmp: Path, products: list[dict], **files: object) -> WebshopParams:
    (tmp / "items_shuffle_x.json").write_text(json.dumps(products))
    for name, content in files.items():
        (tmp / f"{name}_x.json").write_text(json.dumps(content))
    return WebshopParams(data_dir=str(tmp))


def test_pricing_and_options_are_parsed_as_webshop_does() -> None:
    assert parse_pricing("$19.99$27.99") == ([19.99, 27.99], "$19.99 to $27.99")
    assert parse_pricing("$877.80") == ([877.8], "$877.8")
    assert parse_pricing("$1,299.00") == ([1299.0], "$1299.0")
    assert parse_pricing("") == ([100.0], "$100.0")
    assert parse_options({"Color": [{"value": " Black/Clear Glass "}], "Size": None}) == {
        "color": ["black | clear glass"]
    }
    assert parse_options("") == {}


def test_catalogue_cleaning_and_seeded_prices(tmp_path: Path) -> None:
    dup = dict(SAMPLE[0])
    bad = {**SAMPLE[1], "asin": "nan"}
    params = _store(tmp_path, [*SAMPLE, dup, bad])
    cat = load_catalogue(params)
    assert len(cat) == 18 and cat.products[0].asin == "B06Y3VLDFB"
    ranged = [p for p in cat.products if len(p.pricing) == 2]
    assert ranged and all(p.pricing[0] <= p.price <= p.pricing[1] for p in ranged)
    again = load_catalogue(params)
    other = load_catalogue(params.model_copy(update={"price_seed": 1}))
    assert [p.price for p in again.products] == [p.price for p in cat.products]
    assert [p.price for p in other.products] != [p.price for p in cat.products]
    assert len(load_catalogue(params.model_copy(update={"num_products": 5}))) == 5


def test_sample_attributes_are_derived_from_the_product_text() -> None:
    cat = load_catalogue(WebshopParams())
    for p in cat.products:
        assert p.attributes_source == "derived" and p.attributes
        fields = [p.title.lower(), " ".join(p.bullets).lower(), p.description.lower()]
        assert all(any(a in f for f in fields) for a in p.attributes)  # the reward finds them
    assert "damaged hair" in cat.get("B07B6DVG41").attributes
    assert not any("vhomes" in a for a in cat.get("B06Y3VLDFB").attributes)  # brand words are not attributes


def test_splits_follow_params_and_seed() -> None:
    src = make_task_source("webshop", EnvParams(name="webshop"), 0)
    splits = {s: src.tasks(s) for s in ("train", "valid", "test")}
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [12, 3, 3]
    ids = [t.task_id for ts in splits.values() for t in ts]
    assert len(set(ids)) == 18
    again = make_task_source("webshop", EnvParams(name="webshop"), 0).tasks("test")
    assert [t.model_dump() for t in again] == [t.model_dump() for t in splits["test"]]
    other = make_task_source("webshop", EnvParams(name="webshop"), 1)
    assert [t.task_id for t in other.tasks("test")] != [t.task_id for t in splits["test"]]
    assert src.tasks("test_ood") == []
    with pytest.raises(EnvError, match="no split"):
        src.tasks("dev")
    small = WebshopTaskSource(WebshopParams(n_train=2, n_valid=1, n_test=1), 0)
    assert [len(small.tasks(s)) for s in ("train", "valid", "test")] == [2, 1, 1]


def test_synthetic_goals_on_the_sample() -> None:
    src = WebshopTaskSource(WebshopParams(), 0)
    cat = src.shop.catalogue
    for task in src.tasks("train") + src.tasks("valid") + src.tasks("test"):
        goal = Goal.from_spec(task.spec)
        p = cat.get(goal.asin)
        assert task.env == "webshop" and task.category in {"beauty", "fashion", "garden", "electronics"}
        assert goal.source == "synthetic" and set(goal.attributes) <= set(p.attributes)
        assert task.instruction.startswith(("i am looking for", "i need", "find me", "i want to buy"))
        for name, value in zip(goal.option_names, goal.options, strict=True):
            assert value in p.options[name] and f"{name}: {value}" in task.instruction
        upper = [u for u in PRICE_RANGE if u > p.price][:4]
        assert goal.price_upper in upper[1:]  # the larger of two draws from the first four
        assert task.instruction.endswith(f", and price lower than {goal.price_upper:.2f} dollars")
        assert all(len(p.options[n]) for n in goal.option_names)
    assert sum(bool(Goal.from_spec(t.spec).options) for t in src.tasks("train") + src.tasks("test")) >= 4


def test_privileged_state() -> None:
    src = WebshopTaskSource(WebshopParams(), 0)
    task = src.tasks("test")[0]
    goal = Goal.from_spec(task.spec)
    ps = src.privileged_state(task)
    assert ps.task_id == task.task_id and ps.env == "webshop"
    assert ps.facts["target_asin"] == goal.asin and ps.facts["goal_attributes"] == goal.attributes
    assert ps.facts["goal_options"] == goal.options and ps.facts["price_upper"] == goal.price_upper
    assert ps.facts["example_product"]["asin"] == goal.asin
    assert ps.facts["target_price"] <= goal.price_upper
    assert ps.plan[0].startswith("search[") and ps.plan[-1] == "click[buy now]"
    assert f"click[{goal.asin.lower()}]" in ps.plan
    assert ps.secrets[:2] == [ps.facts["target_title"], goal.asin]


def test_human_goals_when_the_data_has_them(tmp_path: Path) -> None:
    human = {
        "B08ZRR3DZT": [
            {
                "asin": "B08ZRR3DZT",
                "instruction": "i want a black bodycon dress in size large for the club.",
                "attributes": ["bodycon dress", "club"],
                "options": ["color: black", "size: large"],
                "instruction_attributes": ["bodycon dress"],
                "instruction_options": ["black", "large"],
            },
            {
                "asin": "B08ZRR3DZT",
                "instruction": "a dress",
                "attributes": [],
                "options": [],
                "instruction_attributes": [],
                "instruction_options": [],
            },
        ]
    }
    params = _store(tmp_path, SAMPLE, items_human_ins=human)
    src = WebshopTaskSource(params.model_copy(update={"n_train": 5, "n_valid": 0, "n_test": 0}), 3)
    tasks = src.tasks("train")
    assert len(tasks) == 1  # the instruction without instruction_attributes is skipped, as in WebShop
    goal = Goal.from_spec(tasks[0].spec)
    assert (
        goal.source == "human"
        and goal.options == ["black", "large"]
        and goal.option_names == ["color", "size"]
    )
    assert tasks[0].instruction.startswith(
        "i want a black bodycon dress in size large for the club, and price lower than"
    )
    assert src.shop.catalogue.get("B08ZRR3DZT").attributes == [
        "bodycon dress",
        "club",
    ]  # the human file's list
    assert src.privileged_state(tasks[0]).plan[-3:] == ["click[black]", "click[large]", "click[buy now]"]


def test_attribute_file_gives_attributes_and_synthetic_instructions(tmp_path: Path) -> None:
    attrs = {
        "B06Y3VLDFB": {
            "attributes": ["solid wood", "living room"],
            "instruction": "i need a solid wood console table",
            "instruction_attributes": ["solid wood"],
        }
    }
    params = _store(tmp_path, SAMPLE, items_ins_v2=attrs)
    src = WebshopTaskSource(params.model_copy(update={"n_train": 18, "n_valid": 0, "n_test": 0}), 0)
    goal = next(Goal.from_spec(t.spec) for t in src.tasks("train") if t.spec["asin"] == "B06Y3VLDFB")
    assert goal.attributes == ["solid wood"] and goal.instruction.startswith(
        "i need a solid wood console table"
    )
    assert src.shop.catalogue.get("B06Y3VLDFB").attributes_source == "file"


def test_data_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(EnvError, match="does not exist"):
        WebshopTaskSource(WebshopParams(data_dir=str(tmp_path / "nope")), 0).prepare()
    with pytest.raises(EnvError, match="no items_shuffle"):
        WebshopTaskSource(WebshopParams(data_dir=str(tmp_path)), 0).prepare()
    (tmp_path / "items_shuffle_a.json").write_text(json.dumps(SAMPLE[:2]))
    (tmp_path / "items_shuffle_b.json").write_text(json.dumps(SAMPLE[2:4]))
    with pytest.raises(EnvError, match="products_file"):
        WebshopTaskSource(WebshopParams(data_dir=str(tmp_path)), 0).prepare()
    WebshopTaskSource(
        WebshopParams(data_dir=str(tmp_path), products_file="items_shuffle_b.json"), 0
    ).prepare()
    with pytest.raises(EnvError, match="human"):
        WebshopTaskSource(WebshopParams(goals="human"), 0).prepare()


def test_registered_with_oracle_and_experiment_validates() -> None:
    assert "webshop" in registered() and spec("webshop").oracle is not None
    params = load_params(REPO / "params.yaml", REPO / "experiments" / "webshop.yaml")
    assert params.env.name == "webshop" and params.env.eval_splits == ["valid", "test"]
    assert params.tracking.experiment == "leap-webshop" and params.loop.iterations == {1: 0}
