"""Teachers and ReAct policies backed by a chat model (an OpenAI-compatible endpoint or a local HF model).

A :class:`ChatBackend` turns message lists into text; :class:`ChatTeacher` renders the correction
and annotation prompts, serves repeats from the on-disk cache, parses and validates the replies
and records every failure as a TeacherError. :class:`ReActPolicy` drives the same backend with
the student's own prompt and no privileged state (the "student vs its teacher" baseline).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from leap.agent import PolicyOutput, StepContext, TeacherError, strip_privileged
from leap.config import TeacherPromptParams
from leap.prompts.parsing import (
    SNAP_THRESHOLD,
    ReplyError,
    parse_completion,
    parse_reason,
    parse_reply,
    snap_action,
)
from leap.records import StepLabel
from leap.teachers.accounting import TeacherStats
from leap.teachers.cache import ResponseCache, cache_key
from leap.teachers.prompting import annotation_messages, as_dicts, correction_messages

log = logging.getLogger(__name__)
T = TypeVar("T")
ChatMessages = list[dict[str, str]]


class BackendError(RuntimeError):
    """The backend cannot work at all (e.g. the model does not load): raised, not recorded per item."""


@dataclass
class ChatResult:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


class ChatBackend(Protocol):
    name: str  # e.g. "openai:gpt-4o", "local:smollm2-135m-instruct"

    def identity(self) -> dict[str, Any]:
        """Everything besides the messages that determines a reply (cache key; never secrets)."""
        ...

    def complete(
        self, batch: list[ChatMessages], stats: TeacherStats
    ) -> Iterator[tuple[int, ChatResult | TeacherError]]:
        """Answer each message list; yield (index, result) as they finish, failures as TeacherError."""
        ...

    # Optional: ``redact(text) -> text`` scrubs secrets from error messages built outside the backend.


class ChatRunner:
    """Cache lookup, de-duplication, backend calls and parsing for a batch of requests."""

    def __init__(self, backend: ChatBackend, cache: ResponseCache, stats: TeacherStats) -> None:
        self.backend = backend
        self.cache = cache
        self.stats = stats
        self._redact: Callable[[str], str] = getattr(backend, "redact", lambda text: text)

    def run(
        self, requests: list[ChatMessages | TeacherError], parse: Callable[[str], T]
    ) -> list[T | TeacherError]:
        t0 = time.monotonic()
        out: list[T | TeacherError | None] = [None] * len(requests)
        pending: dict[str, list[int]] = {}
        payloads: dict[str, dict[str, Any]] = {}
        for i, msgs in enumerate(requests):
            if isinstance(msgs, TeacherError):
                out[i] = msgs
                continue
            payload = {**self.backend.identity(), "messages": msgs}
            key = cache_key(payload)
            hit = self.cache.get(key)
            if hit is not None and isinstance(hit.get("text"), str):
                self.stats.add(cache_hits=1)
                out[i] = self._parse(hit["text"], parse)
                continue
            self.stats.add(cache_misses=1)
            pending.setdefault(key, []).append(i)
            payloads[key] = payload
        keys = list(pending)
        if keys:
            batch = [payloads[k]["messages"] for k in keys]
            done: set[int] = set()
            try:
                for j, res in self.backend.complete(batch, self.stats):
                    done.add(j)
                    key = keys[j]
                    value = self._finish(key, payloads[key], res, parse)
                    for i in pending[key]:
                        out[i] = value
            except BackendError:
                raise
            except Exception as e:  # a backend bug must not lose the batch: the rest are recorded
                log.error("teacher backend %s failed: %s", self.backend.name, self._redact(repr(e)))
                for j, key in enumerate(keys):
                    if j not in done:
                        for i in pending[key]:
                            msg = f"{self.backend.name}: backend failed: {type(e).__name__}: {e}"
                            out[i] = TeacherError(self._redact(msg))
        results: list[T | TeacherError] = []
        for i, r in enumerate(out):
            if r is None:
                r = TeacherError(f"{self.backend.name}: no result for item {i}")
            results.append(r)
        self.stats.add(
            errors=sum(isinstance(r, TeacherError) for r in results), seconds=time.monotonic() - t0
        )
        return results

    def _parse(self, text: str, parse: Callable[[str], T]) -> T | TeacherError:
        try:
            return parse(text)
        except ReplyError as e:
            self.stats.add(parse_errors=1)
            return TeacherError(self._redact(f"{self.backend.name}: unparsable reply: {e}"))

    def _finish(
        self, key: str, payload: dict[str, Any], res: ChatResult | TeacherError, parse: Callable[[str], T]
    ) -> T | TeacherError:
        if isinstance(res, TeacherError):
            return res  # transport failures are not cached: a re-run asks again
        # Every reply is cached, usable or not, so an unchanged re-run makes no calls and gets the
        # same results (delete the cache directory to ask again).
        self.cache.put(key, res.to_json(), request=payload)
        return self._parse(res.text, parse)


class ChatTeacher:
    """A teacher that asks a chat model for corrections at a privilege level (see prompting)."""

    privileged = True

    def __init__(
        self,
        backend: ChatBackend,
        privilege_level: int,
        *,
        cache_dir: str | None,
        prompt: TeacherPromptParams | None = None,
        stats: TeacherStats | None = None,
        snap_threshold: float | None = SNAP_THRESHOLD,
    ) -> None:
        if not 0 <= privilege_level <= 4:
            raise ValueError(f"privilege_level must be 0..4, got {privilege_level}")
        self.backend = backend
        self.privilege_level = privilege_level
        self.teacher_id = backend.name
        self.prompt = prompt or TeacherPromptParams()
        self.snap_threshold = snap_threshold  # None: keep the teacher's actions as written
        self._stats = stats or TeacherStats()
        self.runner = ChatRunner(backend, ResponseCache(cache_dir), self._stats)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.teacher_id!r}, level={self.privilege_level})"

    def correct(self, items: list[tuple[StepContext, StepLabel | None]]) -> list[StepLabel | TeacherError]:
        requests: list[ChatMessages | TeacherError] = []
        for ctx, student in items:
            try:
                requests.append(
                    as_dicts(correction_messages(ctx, student, self.privilege_level, self.prompt))
                )
            except Exception as e:  # a template error names the variable; recorded per item
                requests.append(
                    TeacherError(f"{self.teacher_id}: prompt rendering failed: {type(e).__name__}: {e}")
                )
        results = self.runner.run(requests, parse_reply)
        if self.snap_threshold is not None:
            for i, ((ctx, _), res) in enumerate(zip(items, results, strict=True)):
                if not isinstance(res, StepLabel):
                    continue
                if fixed := snap_action(res.action, ctx.admissible_actions, self.snap_threshold):
                    results[i] = StepLabel(reason=res.reason, action=fixed)
                    self._stats.add(snapped_actions=1)
        return results

    def annotate(self, items: list[tuple[StepContext, str]]) -> list[str | TeacherError]:
        """Write the reason for each (context, demonstrated action)."""
        requests: list[ChatMessages | TeacherError] = []
        for ctx, action in items:
            try:
                requests.append(as_dicts(annotation_messages(ctx, action, self.prompt)))
            except Exception as e:
                requests.append(
                    TeacherError(f"{self.teacher_id}: prompt rendering failed: {type(e).__name__}: {e}")
                )
        return self.runner.run(requests, parse_reason)

    def stats(self) -> dict[str, float]:
        return self._stats.as_dict()


class ReActPolicy:
    """The teacher's model acting alone with the student's prompt and no privileged state."""

    privileged = False

    def __init__(
        self,
        backend: ChatBackend,
        student_params: Any,
        *,
        cache_dir: str | None,
        stats: TeacherStats | None = None,
        snap_threshold: float | None = SNAP_THRESHOLD,
    ) -> None:
        self.backend = backend
        self.student_params = student_params
        self.snap_threshold = snap_threshold
        self.policy_id = f"react:{backend.name}"
        self._stats = stats or TeacherStats()
        self.runner = ChatRunner(backend, ResponseCache(cache_dir), self._stats)

    def __repr__(self) -> str:
        return f"ReActPolicy({self.policy_id!r})"

    def act(self, contexts: list[StepContext]) -> list[PolicyOutput]:
        from leap.students.prompting import build_messages

        requests: list[ChatMessages | TeacherError] = [
            as_dicts(build_messages(strip_privileged(c), self.student_params)) for c in contexts
        ]
        outs: list[PolicyOutput] = []
        results = self.runner.run(requests, lambda text: (text, parse_completion(text)))
        for ctx, res in zip(contexts, results, strict=True):
            if isinstance(res, TeacherError):
                outs.append(
                    PolicyOutput(
                        reason="", action="", raw_output=str(res), parse_ok=False, meta={"error": str(res)}
                    )
                )
                continue
            text, (reason, action, ok) = res
            meta: dict[str, Any] = {}
            snap = ok and self.snap_threshold is not None
            fixed = snap_action(action, ctx.admissible_actions, self.snap_threshold) if snap else None
            if fixed is not None:
                meta, action = {"repaired": True, "original_action": action}, fixed
            outs.append(PolicyOutput(reason=reason, action=action, raw_output=text, parse_ok=ok, meta=meta))
        return outs

    def stats(self) -> dict[str, float]:
        return self._stats.as_dict()
