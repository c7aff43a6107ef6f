"""LEAP learns, and the test can tell.

On the toy environment (in some rooms a smell gives the key's box away; opening a wrong box springs
a trap after which only "pull lever" gets out, see ``leap.envs.toy``) a tiny model trained from scratch is
cloned from the privileged expert's demonstrations (BC), then improved by one LEAP iteration: roll
out, privileged corrections, aggregate, train. The expert never opens a wrong box, so BC has never
seen the trap and is lost after a wrong first guess; the corrections teach it to pull the lever.

The margin and the seeds are fixed: the first test fails if LEAP stops beating BC, and the second
checks that the first would fail with the LEAP update replaced by a no-op (the same loop, with the
corrections dropped before training, gains nothing).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from leap.config import Params
from leap.io import read_jsonl
from leap.records import Trajectory
from tests.conftest import build_tiny_model

MARGIN = 0.3  # success on `test`: LEAP iteration 1 minus BC (measured, seeds 0-3: BC 0.20-0.37, LEAP 1.00)
N_TEST = 60
BC_EPOCHS = 6


def _toy_corpus() -> list[str]:
    from leap.envs.toy import SCENTS

    text = [
        "You are in a room with a locked door and 6 boxes (box 1 to box 6). Your task is to: find the key "
        "and open the door. You open box It is empty. Inside is a key; you take it. I have the key, so I "
        "open the door. Reason: Action: open box open door I have no lead, so I guess a box. "
        "I follow the smell. The air smells of nothing in particular. The key is gone, so I pull the lever. "
        "You pull the lever. The door swings open. You are free! "
        "Click: a trapdoor swallows the key. A lever sticks out of the wall. pull lever push lever "
        "knock on door shout for help wait Nothing happens.",
    ]
    text += [f"A smell of {s} hangs in the air." for s in SCENTS]
    return text


def _params(model: Path) -> Params:
    return Params.model_validate(
        {
            "seed": int(os.environ.get("LEAP_LEARNING_SEED", "0")),  # fixed; other seeds: RESULTS.md
            "env": {
                "name": "toy",
                "horizon": 2,  # a guess and the lever (or the smell and the door): no time for a second guess
                "eval_splits": ["valid", "test"],
                "toy": {"n_boxes": 6, "cue_rate": 0.25, "n_train": 120, "n_valid": 20, "n_test": N_TEST},
            },
            "student": {
                "model": str(model),
                # float32 everywhere: the same numbers on every CPU (auto is bfloat16 only with AMX)
                "dtype": "float32",
                "max_new_tokens": 16,
                "batch_size": 16,
                "lora": {"r": 16, "alpha": 32},
            },
            "train": {
                "epochs": 6,
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


@pytest.fixture(scope="module")
def bc_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Iteration 0 (BC), shared by both tests: the prepared tasks, the demonstrations, the BC adapter
    and its evaluation."""
    from leap.stages import aggregate, demos, evaluate, prepare, train

    root = tmp_path_factory.mktemp("toy-bc")
    model = build_tiny_model(
        root / "model", corpus=_toy_corpus(), hidden_size=64, layers=2, initializer_range=0.2
    )
    params = _params(model)
    cwd = Path.cwd()
    os.chdir(root)
    try:
        prepare.run(params)
        demos.run(params)
        aggregate.run(params, 0)
        train.run(
            params.model_copy(update={"train": params.train.model_copy(update={"epochs": BC_EPOCHS})}), 0
        )
        bc = evaluate.run(params, 0)
    finally:
        os.chdir(cwd)
    return root, {split: m.success_rate for split, m in bc.items()}


def _iteration_1(bc_run: tuple[Path, dict], root: Path, *, drop_corrections: bool) -> dict:
    from leap.stages import aggregate, correct, evaluate, rollout, train

    src, bc = bc_run
    shutil.copytree(src, root, dirs_exist_ok=True)
    params = _params(root / "model")
    cwd = Path.cwd()
    os.chdir(root)
    try:
        rollout.run(params, 1)
        correct.run(params, 1)
        if drop_corrections:  # the no-op update: iteration 1 trains on the BC data again
            (root / "data/iter_1/corrections.jsonl").write_text("")
        aggregate.run(params, 1)
        train.run(params, 1)
        leap = evaluate.run(params, 1)
    finally:
        os.chdir(cwd)
    return {
        "bc": bc["test"],
        "leap": leap["test"].success_rate,
        "bc_valid": bc["valid"],
        "leap_valid": leap["valid"].success_rate,
    }


def test_leap_beats_bc_by_a_fixed_margin(bc_run: tuple[Path, dict], tmp_path: Path) -> None:
    res = _iteration_1(bc_run, tmp_path / "leap", drop_corrections=False)
    trapped = [
        t
        for t in read_jsonl(tmp_path / "leap/data/iter_0/eval.jsonl", Trajectory)
        if t.split == "test" and any("trapdoor swallows" in s.observation for s in t.steps)
    ]
    assert trapped, "BC must spring the trap in some test rooms (else there is nothing to correct)"
    assert res["leap"] - res["bc"] >= MARGIN, res


def test_a_no_op_update_does_not_pass(bc_run: tuple[Path, dict], tmp_path: Path) -> None:
    res = _iteration_1(bc_run, tmp_path / "noop", drop_corrections=True)
    assert res["leap"] - res["bc"] < MARGIN, res
