"""A teacher (or ReAct agent, or `leap serve` model) run locally with Hugging Face transformers.

It answers the same correction prompts as the OpenAI-compatible teacher, through the student's
batched Generator, so self-improvement (the base model as its own privileged teacher, paper §4.6)
runs offline. The model loads on first use.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from leap.agent import TeacherError
from leap.config import LocalTeacherParams, StudentParams
from leap.prompts.parsing import HAS_ACTION_LINE, SNAP_THRESHOLD
from leap.teachers.accounting import TeacherStats
from leap.teachers.chat import BackendError, ChatMessages, ChatResult, ChatTeacher


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0].strip() if text.strip() else ""


class LocalChat:
    """Chat completions from a local causal LM (SmolLM2 by default), greedy unless told otherwise."""

    def __init__(
        self,
        model: str = "smollm2-135m-instruct",
        *,
        gguf_file: str | None = None,
        adapter_dir: str | Path | None = None,
        max_new_tokens: int = 96,
        batch_size: int = 4,
        temperature: float = 0.0,
        stop_after_action: bool = True,
        assistant_prefix: str | None = None,
        force_action_line: bool = False,
        name: str | None = None,
    ) -> None:
        self.model_name = model
        self.gguf_file = gguf_file
        self.adapter_dir = Path(adapter_dir) if adapter_dir else None
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.temperature = temperature
        # Teacher and ReAct replies end with the "Action:" line; a general server must not cut there.
        self.stop_after_action = stop_after_action
        # Start the reply with e.g. "Reason:" so that a small model keeps to the two-line format.
        self.assistant_prefix = assistant_prefix
        self.force_action_line = force_action_line
        self.name = name or f"local:{model}"
        self._lm: Any = None
        self._tok: Any = None
        self._generators: dict[tuple[int, float], Any] = {}
        self._lock = threading.Lock()  # one generation at a time: the model is not thread-safe

    @classmethod
    def from_params(cls, p: LocalTeacherParams, **kw: Any) -> LocalChat:
        return cls(
            p.model, gguf_file=p.gguf_file, max_new_tokens=p.max_new_tokens, batch_size=p.batch_size, **kw
        )

    def __repr__(self) -> str:
        return f"LocalChat({self.model_name!r})"

    def identity(self) -> dict[str, Any]:
        adapter = None
        if self.adapter_dir is not None:
            # The adapter's weights file identifies it better than its path (paths are reused per iteration).
            w = self.adapter_dir / "adapter_model.safetensors"
            adapter = {
                "path": str(self.adapter_dir),
                "size": w.stat().st_size if w.exists() else None,
                "mtime_ns": w.stat().st_mtime_ns if w.exists() else None,
            }
        return {
            "backend": "local",
            "model": self.model_name,
            "gguf_file": self.gguf_file,
            "adapter": adapter,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "stop_after_action": self.stop_after_action,
            "assistant_prefix": self.assistant_prefix,
            "force_action_line": self.force_action_line,
        }

    # -- model ---------------------------------------------------------------------------
    def load(self) -> tuple[Any, Any]:
        if self._lm is None:
            from leap.students.models import load_student

            sp = StudentParams(
                model=self.model_name,
                gguf_file=self.gguf_file,
                max_new_tokens=self.max_new_tokens,
                batch_size=self.batch_size,
            )
            try:
                self._lm, self._tok = load_student(sp, self.adapter_dir)
            except Exception as e:
                raise BackendError(f"{self.name}: cannot load the model: {type(e).__name__}: {e}") from e
        return self._lm, self._tok

    def _generator(self, max_new_tokens: int, temperature: float) -> Any:
        key = (max_new_tokens, temperature)
        if key not in self._generators:
            lm, tok = self.load()
            self._generators[key] = _generator_class()(
                lm,
                tok,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                batch_size=self.batch_size,
                stop_after_action=self.stop_after_action,
            )
        return self._generators[key]

    def count_prompt_tokens(self, messages: ChatMessages) -> int:
        _, tok = self.load()
        try:
            ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        except Exception:  # no chat template: count the plain text
            return len(tok("\n".join(m["content"] for m in messages))["input_ids"])
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return len(ids[0]) if ids and isinstance(ids[0], list) else len(ids)

    def count_tokens(self, text: str) -> int:
        _, tok = self.load()
        return len(tok(text, add_special_tokens=False)["input_ids"])

    def generate(
        self,
        batch: list[ChatMessages],
        *,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
    ) -> list[ChatResult]:
        """Generate one reply per message list (raises on failure; used by `leap serve`)."""
        limit = max_new_tokens or self.max_new_tokens
        gen = self._generator(limit, self.temperature if temperature is None else temperature)
        prefix = self.assistant_prefix or ""
        texts, generated = self._continue(gen, batch, [prefix] * len(batch))
        if self.force_action_line:
            # A small model often stops after its reason: start an "Action:" line for it.
            redo = [i for i, t in enumerate(texts) if not HAS_ACTION_LINE.search(t)]
            if redo:
                starts = [f"{_first_line(texts[i])}\nAction:" for i in redo]
                more, n2 = self._continue(gen, [batch[i] for i in redo], starts)
                generated += n2
                for i, t in zip(redo, more, strict=True):
                    reason, _, action = t.partition("\nAction:")
                    texts[i] = f"{reason}\nAction: {_first_line(action)}"
        out = []
        for m, t in zip(batch, texts, strict=True):
            # Exact for one conversation; in a batch, re-tokenising the text (capped) is close enough.
            n = generated if len(batch) == 1 else min(self.count_tokens(t), 2 * limit)
            out.append(ChatResult(text=t, prompt_tokens=self.count_prompt_tokens(m), completion_tokens=n))
        return out

    def _continue(self, gen: Any, batch: list[ChatMessages], starts: list[str]) -> tuple[list[str], int]:
        """Generate after each ``start`` (an unfinished assistant turn); texts include the start."""
        convs = [
            [*c, {"role": "assistant", "content": s}] if s else c for c, s in zip(batch, starts, strict=True)
        ]
        with self._lock:
            before = gen.stats.generated_tokens
            texts = gen.generate(convs)
            generated = gen.stats.generated_tokens - before
        return [s + t for s, t in zip(starts, texts, strict=True)], generated

    def complete(
        self, batch: list[ChatMessages], stats: TeacherStats
    ) -> Iterator[tuple[int, ChatResult | TeacherError]]:
        self.load()  # a model that cannot load stops the stage (BackendError), not item by item
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start : start + self.batch_size]
            stats.add(calls=len(chunk), attempts=len(chunk))
            try:
                results: list[ChatResult | TeacherError] = list(self.generate(chunk))
            except Exception as e:  # e.g. out of memory on one long prompt: recorded per item
                results = [TeacherError(f"{self.name}: generation failed: {type(e).__name__}: {e}")] * len(
                    chunk
                )
            for k, res in enumerate(results):
                if isinstance(res, ChatResult):
                    stats.add(prompt_tokens=res.prompt_tokens, completion_tokens=res.completion_tokens)
                yield start + k, res


@functools.lru_cache(maxsize=1)
def _generator_class() -> type:
    from leap.students.generation import Generator

    class PrefillGenerator(Generator):
        """The student's Generator, continuing a final assistant message when there is one."""

        def render(self, conv: Any) -> str:
            msgs = [m.model_dump() if hasattr(m, "model_dump") else dict(m) for m in conv]
            if msgs and msgs[-1]["role"] == "assistant":
                return self.tokenizer.apply_chat_template(msgs, tokenize=False, continue_final_message=True)
            return super().render(conv)

    return PrefillGenerator


class LocalTeacher(ChatTeacher):
    """teacher.kind = local (default: the offline SmolLM2-135M-Instruct)."""

    def __init__(
        self,
        params: LocalTeacherParams,
        privilege_level: int,
        *,
        cache_dir: str | None,
        snap_threshold: float | None = SNAP_THRESHOLD,
        **chat_kw: Any,
    ) -> None:
        # Small local models keep to the agent's own format when the reply starts with "Reason:"
        # (the compact prompt of teacher.local.prompt asks for it).
        chat_kw.setdefault("assistant_prefix", "Reason:")
        chat_kw.setdefault("force_action_line", True)
        super().__init__(
            LocalChat.from_params(params, **chat_kw),
            privilege_level,
            cache_dir=cache_dir,
            prompt=params.prompt,
            snap_threshold=snap_threshold,
        )
