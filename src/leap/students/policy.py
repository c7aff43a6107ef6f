"""The student as a :class:`leap.agent.Policy`: prompt, generate in batches, parse, repair."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from leap.agent import PolicyOutput, StepContext
from leap.config import StudentParams
from leap.prompts.parsing import SNAP_THRESHOLD, parse_completion, snap_action
from leap.students.generation import Generator
from leap.students.prompting import build_messages


class StudentPolicy:
    """A (LoRA-adapted) causal LM acting from student-visible context only.

    Model output never raises: an unparsable answer gives ``parse_ok=False`` and action ""
    (the rollout loop decides what that costs). An action outside the admissible list is
    mapped to the closest admissible one when close enough (``meta["repaired"]``).
    ``model``/``tokenizer`` may be passed to reuse an already loaded model.
    """

    privileged = False

    def __init__(
        self,
        model_params: StudentParams,
        adapter_dir: Path | None = None,
        policy_id: str = "student",
        *,
        model: Any = None,
        tokenizer: Any = None,
        repair: bool = True,
        snap_threshold: float = SNAP_THRESHOLD,
        seed: int | None = None,
    ) -> None:
        self.params = model_params
        self.adapter_dir = adapter_dir
        self.policy_id = policy_id
        self.repair = repair
        self.snap_threshold = snap_threshold
        if model is None or tokenizer is None:
            from leap.students.models import load_student

            model, tokenizer = load_student(model_params, adapter_dir)
        self.model = model
        self.tokenizer = tokenizer
        self.generator = Generator(
            model,
            tokenizer,
            max_new_tokens=model_params.max_new_tokens,
            temperature=model_params.temperature,
            batch_size=model_params.batch_size,
            seed=seed,
        )

    def act(self, contexts: list[StepContext]) -> list[PolicyOutput]:
        if not contexts:
            return []
        prompts = [build_messages(ctx, self.params) for ctx in contexts]
        texts = self.generator.generate(prompts)
        return [self._output(ctx, text) for ctx, text in zip(contexts, texts, strict=True)]

    def _output(self, ctx: StepContext, text: str) -> PolicyOutput:
        reason, action, ok = parse_completion(text)
        meta: dict[str, Any] = {}
        if ok and self.repair and ctx.admissible_actions:
            fixed = snap_action(action, ctx.admissible_actions, self.snap_threshold)
            if fixed is not None:
                meta = {"repaired": True, "original_action": action}
                action = fixed
        return PolicyOutput(
            reason=reason, action=action if ok else "", raw_output=text, parse_ok=ok, meta=meta
        )
