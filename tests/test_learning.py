"""LEAP learns, and the test can tell.

On the toy environment (in half of the rooms a smell gives the key's box away; an empty box jingles
towards the key, see ``leap.envs.toy``) a tiny model trained from scratch is cloned from the
privileged expert's demonstrations (BC), then improved by one LEAP iteration: roll out, privileged
corrections, aggregate, train. The expert never opens an empty box, so BC never sees a jingle and is
lost after a wrong first guess; the corrections teach it to follow the jingle.

The margin is fixed and the seeds are fixed: the test fails if LEAP stops beating BC, and (second
test) it would fail with the LEAP update replaced by a no-op — the same loop with the corrections
dropped before training gains nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from leap.config import Params
from leap.io import read_jsonl
from leap.records import Trajectory
from tests.conftest import build_tiny_model

MARGIN = 0.2  # success on `test`: LEAP iteration 1 minus BC
N_TEST = 60
BC_EPOCHS = 20


def _toy_corpus() -> list[str]:
    from leap.envs.toy import SCENTS

    text = [
        "You are in a room with a locked door and 6 boxes (box 1 to box 6). Your task is to: find the key "
        "and open the door. You open box It is empty. Inside is a key; you take it. I have the key, so I "
        "open the door. Reason: Action: open box open door I have no lead, so I guess a box. "
        "I follow the smell. I follow the jingle. The air smells of nothing in particular.",
    ]
    text += [f"A smell of {s} hangs in the air." for s in SCENTS]
    text += [f"The key jingles in box {k}." for k in range(1, 9)]
    return text


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(
        tmp_path_factory.mktemp("toy-llama") / "model",
        corpus=_toy_corpus(),
        hidden_size=64,
        layers=2,
        initializer_range=0.2,
    )


def _params(model: Path) -> Params:
    return Params.model_validate(
        {
            "seed": 0,
            "env": {
                "name": "toy",
                "horizon": 3,  # open a box, open a box, open the door: one wrong box is all there is time for
                "eval_splits": ["valid", "test"],
                "toy": {"n_boxes": 5, "cue_rate": 0.4, "n_train": 240, "n_valid": 20, "n_test": N_TEST},
            },
            "student": {
                "model": str(model),
                "max_new_tokens": 16,
                "batch_size": 16,
                "lora": {"r": 16, "alpha": 32},
            },
            "train": {
                "epochs": 10,
                "learning_rate": 0.01,
                "batch_size": 8,
                "grad_accum": 1,
                "max_length": 512,
                "cpu_rows_per_pass": 8,  # a tiny model: one forward over 8 rows beats 8 forwards
            },
            "demos": {"privilege_level": 2},
            "teacher": {"privilege_level": 2},
            "loop": {"iterations": {"1": 0}, "correct_failed_only": True},
            "tracking": {"experiment": "toy-learning"},
        }
    )


def _run_loop(root: Path, params: Params, monkeypatch: pytest.MonkeyPatch, *, drop_corrections: bool) -> dict:
    from leap.stages import aggregate, correct, demos, evaluate, prepare, rollout, train

    monkeypatch.chdir(root)
    prepare.run(params)
    demos.run(params)
    aggregate.run(params, 0)
    # BC trains to convergence, so that more training of the same data (the no-op) gains nothing.
    train.run(params.model_copy(update={"train": params.train.model_copy(update={"epochs": BC_EPOCHS})}), 0)
    bc = evaluate.run(params, 0)
    rollout.run(params, 1)
    correct.run(params, 1)
    if drop_corrections:  # the no-op update: iteration 1 trains on the BC data again
        (root / "data/iter_1/corrections.jsonl").write_text("")
    aggregate.run(params, 1)
    train.run(params, 1)
    leap = evaluate.run(params, 1)
    return {
        "bc": bc["test"].success_rate,
        "leap": leap["test"].success_rate,
        "bc_valid": bc["valid"].success_rate,
        "leap_valid": leap["valid"].success_rate,
    }


def test_leap_beats_bc_by_a_fixed_margin(
    toy_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    res = _run_loop(tmp_path, _params(toy_model), monkeypatch, drop_corrections=False)
    guessed = [
        t
        for t in read_jsonl(tmp_path / "data/iter_0/eval.jsonl", Trajectory)
        if t.split == "test" and t.category == "no_smell"
    ]
    assert guessed, "the test split must hold rooms without a smell"
    assert res["leap"] - res["bc"] >= MARGIN, res


def test_a_no_op_update_does_not_pass(
    toy_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    res = _run_loop(tmp_path, _params(toy_model), monkeypatch, drop_corrections=True)
    assert res["leap"] - res["bc"] < MARGIN, res
