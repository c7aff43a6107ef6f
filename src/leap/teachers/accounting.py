"""Teacher statistics: calls, cache hits, errors, tokens and cost (logged to MLflow by the stages)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from leap.agent import StepContext, Teacher, TeacherError
from leap.records import StepLabel


@dataclass
class Prices:
    """USD per 1,000 tokens; None: no price table, so no cost is reported."""

    input_per_1k: float | None = None
    output_per_1k: float | None = None

    @property
    def configured(self) -> bool:
        return self.input_per_1k is not None or self.output_per_1k is not None

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens / 1000) * (self.input_per_1k or 0.0) + (completion_tokens / 1000) * (
            self.output_per_1k or 0.0
        )


@dataclass
class TeacherStats:
    """Counters shared by the worker threads of one teacher (all updates take the lock).

    calls: requests sent to the model (cache misses, each counted once however many attempts);
    attempts/retries: transport-level tries; errors: items returned as TeacherError (API failures
    and unparsable replies, the latter also counted in parse_errors).
    """

    prices: Prices = field(default_factory=Prices)
    calls: int = 0
    attempts: int = 0
    retries: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    errors: int = 0
    parse_errors: int = 0
    snapped_actions: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **deltas: float) -> None:
        with self._lock:
            for k, v in deltas.items():
                setattr(self, k, getattr(self, k) + v)

    def as_dict(self) -> dict[str, float]:
        with self._lock:
            out: dict[str, float] = {
                k: getattr(self, k)
                for k in (
                    "calls",
                    "attempts",
                    "retries",
                    "cache_hits",
                    "cache_misses",
                    "errors",
                    "parse_errors",
                    "snapped_actions",
                    "prompt_tokens",
                    "completion_tokens",
                )
            }
            out["seconds"] = round(self.seconds, 3)
            if self.prices.configured:
                out["cost_usd"] = round(self.prices.cost(self.prompt_tokens, self.completion_tokens), 6)
        return out


class CountingTeacher:
    """Adds ``stats()`` to a teacher that has none (e.g. the oracle): calls and errors per item."""

    def __init__(self, teacher: Teacher) -> None:
        self.inner = teacher
        self.teacher_id = teacher.teacher_id
        self.privilege_level = teacher.privilege_level
        self._stats = TeacherStats()

    def correct(self, items: list[tuple[StepContext, StepLabel | None]]) -> list[StepLabel | TeacherError]:
        out = self.inner.correct(items)
        self._stats.add(calls=len(items), errors=sum(isinstance(r, TeacherError) for r in out))
        return out

    def stats(self) -> dict[str, float]:
        return self._stats.as_dict()

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)
