"""The train stage under `accelerate launch` (train.launcher: accelerate): two CPU processes (DDP over
gloo) produce an adapter, with the effective batch of one process (the same steps and losses)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leap import paths
from leap.config import Params, StudentParams, TrainParams
from leap.io import write_jsonl
from leap.records import Message, TrainExample
from leap.training.trainer import micro_batching

EXAMPLES = [
    TrainExample(
        prompt=[Message(role="system", content="An agent."), Message(role="user", content=f"Task: mug {i}")],
        completion=[
            Message(role="assistant", content=f"Reason: On shelf {i}.\nAction: put mug 1 in/on shelf {i}")
        ],
        source="demo",
        task_id=f"t{i}",
        iteration=0,
        step_index=0,
    )
    for i in range(4)
]


def test_processes_share_the_accumulation_steps() -> None:
    assert micro_batching("sft", 4, 2, cuda=False, processes=2) == (1, 4)
    assert micro_batching("sft", 4, 2, cuda=True, processes=2) == (4, 1)
    assert micro_batching("sft", 4, 2, cuda=False) == (1, 8)


@pytest.mark.slow
def test_two_cpu_processes_train_an_adapter(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leap.stages import train as train_stage
    from leap.students.models import load_student

    monkeypatch.chdir(tmp_path)
    write_jsonl(paths.train_set(0), EXAMPLES)
    base = Params().model_copy(
        update={
            "student": StudentParams(model=str(tiny_model_dir)),
            "train": TrainParams(epochs=1, batch_size=2, grad_accum=2, learning_rate=5e-3, max_length=256),
        }
    )
    launched = base.model_copy(
        update={"train": base.train.model_copy(update={"launcher": "accelerate", "num_processes": 2})}
    )
    res = train_stage.run(launched, 0)
    assert res["processes"] == 2
    saved = json.loads((paths.model(0) / "leap_train.json").read_text())
    assert saved["train"]["launcher"] == "accelerate"
    load_student(base.student, paths.model(0))  # a PEFT adapter the student loads
    one = train_stage.run(base, 0)
    assert res["steps"] == one["steps"]
    assert [round(loss, 3) for _, loss in res["loss_history"]] == [
        round(loss, 3) for _, loss in one["loss_history"]
    ]
