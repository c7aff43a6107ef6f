"""StepScorer (realizability): the log-likelihood of a step under the student is a teacher-forced
forward pass over the student's own prompt and the step as the engine writes it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from leap.agent import StepContext
from leap.config import StudentParams
from leap.records import Step, StepLabel, Task
from leap.students.scoring import StepScorer


def _ctx(k: int) -> StepContext:
    task = Task(
        task_id=f"toy-train-{k}", env="toy", split="train", category="smell", instruction="find the key"
    )
    hist = [Step(observation="You see 4 boxes.", reason="I look around.", action="open box 1")] * k
    return StepContext(task, hist, "Nothing happens." if k else "You see 4 boxes.", None)


def test_scores_are_a_teacher_forced_forward_of_the_students_prompt(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    params = StudentParams(model=str(tiny_model_dir), batch_size=2)
    scorer = StepScorer(params, model=model, tokenizer=tok)
    steps = [
        StepLabel(reason="The key may be in box 3.", action="open box 3"),
        StepLabel(reason="", action="look"),
    ]
    items = [(_ctx(k), s) for k in (0, 1) for s in steps]
    scores = scorer.score(items)
    assert len(scores) == 4
    for (ctx, label), sc in zip(items, scores, strict=True):
        reason, marker, action = scorer.completion_ids(label)
        assert (len(sc.reason), len(sc.marker), len(sc.action)) == (len(reason), len(marker), len(action))
        assert tok.decode(reason) == (" " + label.reason if label.reason else "")
        assert tok.decode(action[:-1]) == " " + label.action
        prompt = scorer.prompt_ids(ctx)
        assert tok.decode(prompt).endswith("<|im_start|>assistant\nReason:")
        ids = torch.tensor([prompt + reason + marker + action])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0], dim=-1)
        want = [float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(reason + marker + action)]
        assert sc.tokens == pytest.approx(want, abs=1e-4)
        assert sc.logprob == pytest.approx(sum(want), abs=1e-3) and sc.n_tokens == len(want)
