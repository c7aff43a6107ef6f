"""How likely the student finds a given step: teacher-forced log-probabilities of a reason and an
action in a step context, under the student's own prompt (realizability of a teacher's corrections).

A step is tokenized as the engine writes it (:mod:`leap.students.engine`): the prompt ends with the
forced ``Reason:``, then the reason, the action marker, the action and the end of the turn. The
scores are under the model's full next-token distribution: how likely the student is to write the
text, not how it ranks the admissible actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leap.agent import StepContext
from leap.config import StudentParams
from leap.records import StepLabel
from leap.students.engine import Engine
from leap.students.policy import REASON_PREFIX
from leap.students.prompting import build_messages


@dataclass
class StepScore:
    """Per-token log-probabilities of one step: its reason, the action marker, its action (with the
    end of the turn)."""

    reason: list[float]
    marker: list[float]
    action: list[float]

    @property
    def tokens(self) -> list[float]:
        return [*self.reason, *self.marker, *self.action]

    @property
    def logprob(self) -> float:
        return float(sum(self.tokens))

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)


class StepScorer:
    """Scores (context, step) pairs under a student (its model with an optional adapter)."""

    def __init__(
        self,
        params: StudentParams,
        adapter_dir: Path | None = None,
        *,
        model: Any = None,
        tokenizer: Any = None,
        max_rows: int | None = None,
    ) -> None:
        self.params = params
        if model is None or tokenizer is None:
            from leap.students.models import load_student

            model, tokenizer = load_student(params, adapter_dir)
        self.tokenizer = tokenizer
        self.engine = Engine(model, tokenizer, max_rows=max_rows or params.batch_size)

    def prompt_ids(self, ctx: StepContext) -> list[int]:
        """The student's prompt for ``ctx`` (as :meth:`StudentPolicy.prompt_ids` builds it)."""
        msgs = [m.model_dump() for m in build_messages(ctx, self.params)]
        text = self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return self.engine.encode(text + REASON_PREFIX)

    def completion_ids(self, label: StepLabel) -> tuple[list[int], list[int], list[int]]:
        """(reason, marker, action + end of turn) token ids, as the engine generates a step."""
        enc = self.engine.encode
        reason = enc(" " + label.reason.strip()) if label.reason.strip() else []
        action = [*enc(" " + label.action.strip()), self.engine.end_of_turn()]
        return reason, list(self.engine.marker_ids), action

    def score(self, items: list[tuple[StepContext, StepLabel]]) -> list[StepScore]:
        prompts, comps, cuts = [], [], []
        for ctx, label in items:
            reason, marker, action = self.completion_ids(label)
            prompts.append(self.prompt_ids(ctx))
            comps.append([*reason, *marker, *action])
            cuts.append((len(reason), len(reason) + len(marker)))
        out = []
        for lps, (a, b) in zip(self.engine.score(prompts, comps), cuts, strict=True):
            out.append(StepScore(reason=lps[:a], marker=lps[a:b], action=lps[b:]))
        return out
