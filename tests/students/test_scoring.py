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


def test_realize_waves_keep_each_trajectory_on_its_rows() -> None:
    """realize batches one step of several trajectories at a time, in step order, so the engine's rows
    extend their own episode (a trajectory's steps in one batch would share no cache)."""
    from types import SimpleNamespace

    from leap.stages.realize import waves

    lengths = {"a": 3, "b": 1, "c": 2, "d": 4, "e": 2}
    corrs = [
        SimpleNamespace(task_id=t, iteration=1, step_index=s) for t, n in lengths.items() for s in range(n)
    ][::-1]  # any input order
    batches = waves(corrs, rows=4)  # two trajectories (student + teacher rows each) per batch
    assert sorted(k for b in batches for k in b) == list(range(len(corrs)))
    for b in batches:
        assert len(b) <= 2 and len({corrs[k].task_id for k in b}) == len(b)
    for task in lengths:
        steps = [corrs[k].step_index for b in batches for k in b if corrs[k].task_id == task]
        assert steps == list(range(lengths[task]))
    assert len(batches) == 3 + 4 + 2  # waves (a, b), (c, d), (e): as long as their longest trajectory


def test_scores_do_not_depend_on_the_batching(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    items = [(_ctx(k), StepLabel(reason=f"Step {k}.", action=f"open box {k}")) for k in range(4)]
    together = StepScorer(StudentParams(model=str(tiny_model_dir), batch_size=4), model=model, tokenizer=tok)
    apart = StepScorer(StudentParams(model=str(tiny_model_dir), batch_size=1), model=model, tokenizer=tok)
    one_by_one = [apart.score([it])[0] for it in items]
    for a, b in zip(together.score(items), one_by_one, strict=True):
        assert a.tokens == pytest.approx(b.tokens, abs=1e-4)
