"""A teacher behind any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, `leap serve`, ...).

Requests run in a thread pool bounded by ``concurrency``. The openai client retries what is worth
retrying (408/409/429/5xx, timeouts, connection errors) ``max_retries`` times with its exponential
backoff, honouring Retry-After; every item that still fails comes back as a TeacherError. On top of
it: a circuit breaker (an unreachable endpoint is not asked again for the rest of the batch) and
endpoint quirks learnt from a 400 (no ``response_format``, ``max_completion_tokens``). The API key is
read from the environment variable *named* in the params, lives only inside the client, and is
scrubbed from every message this module produces.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import openai

from leap.agent import TeacherError
from leap.config import OpenAITeacherParams
from leap.prompts.parsing import SNAP_THRESHOLD
from leap.teachers.accounting import Prices, TeacherStats
from leap.teachers.chat import ChatMessages, ChatResult, ChatTeacher

log = logging.getLogger(__name__)

_KEYLIKE = re.compile(r"(sk-[A-Za-z0-9_\-*.]{4,}|Bearer\s+\S+)")


class TeacherConfigError(ValueError):
    """The teacher cannot be built (e.g. its API key variable is unset)."""


class Redactor:
    """Removes the API key (and anything key-shaped) from text bound for logs and errors."""

    def __init__(self, secret: str | None) -> None:
        self._secret = secret if secret and len(secret) >= 4 else None

    def exact(self, text: str) -> str:
        """Only the key itself (model output may legitimately hold key-shaped text)."""
        return text.replace(self._secret, "[redacted]") if self._secret else text

    def __call__(self, text: str) -> str:
        return _KEYLIKE.sub("[redacted]", self.exact(text))

    def __repr__(self) -> str:
        return "Redactor(***)"


def _attempts(e: openai.APIError) -> int:
    """Requests the client sent for a failed call: it numbers its retries in a request header."""
    response = getattr(e, "response", None)
    request = response.request if response is not None else getattr(e, "request", None)
    try:
        return int(request.headers.get("x-stainless-retry-count", 0)) + 1
    except (AttributeError, TypeError, ValueError):
        return 1


class OpenAIChat:
    """Chat completions from an OpenAI-compatible endpoint."""

    def __init__(
        self,
        params: OpenAITeacherParams,
        *,
        json_mode: bool = True,
        circuit_breaker: int = 4,
    ) -> None:
        key = os.environ.get(params.api_key_env)
        if not key:
            if params.base_url is None:
                raise TeacherConfigError(
                    f"environment variable {params.api_key_env} is not set: it must hold the API key for "
                    f"model '{params.model}' (teacher.openai.api_key_env names the variable)"
                )
            key = "EMPTY"  # local OpenAI-compatible servers (vLLM, `leap serve`) ignore the key
        self.params = params
        self.name = f"openai:{params.model}"
        self._redact = Redactor(key)
        self._client = openai.OpenAI(
            api_key=key, base_url=params.base_url, timeout=params.timeout_s, max_retries=params.max_retries
        )
        self.base_url = str(self._client.base_url)
        self.json_mode = json_mode
        self.circuit_breaker = circuit_breaker
        # Endpoint quirks learnt from 400 replies (e.g. no response_format): per client, thread-safe.
        self._use_json_mode = json_mode
        self._token_param = "max_tokens"
        self._lock = threading.Lock()
        self._consecutive_down = 0

    def __repr__(self) -> str:
        return f"OpenAIChat(model={self.params.model!r}, base_url={self.base_url!r})"

    def redact(self, text: str) -> str:
        return self._redact(text)

    def identity(self) -> dict[str, Any]:
        p = self.params
        return {
            "backend": "openai",
            "base_url": self.base_url,
            "model": p.model,
            "temperature": p.temperature,
            "max_tokens": p.max_tokens,
            "json_mode": self.json_mode,
        }

    def complete(
        self, batch: list[ChatMessages], stats: TeacherStats
    ) -> Iterator[tuple[int, ChatResult | TeacherError]]:
        with self._lock:
            self._consecutive_down = 0  # a new batch gives a restarted endpoint a fresh chance
        workers = max(1, min(self.params.concurrency, len(batch)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="teacher") as pool:
            futures = {pool.submit(self._one, msgs, stats): i for i, msgs in enumerate(batch)}
            for fut in as_completed(futures):
                yield futures[fut], fut.result()

    # -- one request -------------------------------------------------------------------------
    def _describe(self, e: BaseException) -> str:
        status = getattr(e, "status_code", None)
        head = f"{type(e).__name__}" + (f" (HTTP {status})" if status else "")
        msg = " ".join(str(e).split())[:300]
        return self._redact(f"{head}: {msg}" if msg else head)

    def _kwargs(self, messages: ChatMessages) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "model": self.params.model,
            "messages": messages,
            "temperature": self.params.temperature,
            self._token_param: self.params.max_tokens,
        }
        if self._use_json_mode:
            kw["response_format"] = {"type": "json_object"}
        return kw

    def _adapt(self, e: openai.BadRequestError) -> bool:
        """Learn an endpoint quirk from a 400; True if the request is worth sending again.

        Several threads may hit the same quirk at once: each of them resends."""
        text = str(e).lower()
        with self._lock:
            if "response_format" in text or "json_object" in text:
                if self._use_json_mode:
                    self._use_json_mode = False
                    log.info(
                        "%s: endpoint rejects response_format; asking for JSON in the prompt only", self.name
                    )
                return True
            if "max_completion_tokens" in text:
                self._token_param = "max_completion_tokens"
                return True
        return False

    def _one(self, messages: ChatMessages, stats: TeacherStats) -> ChatResult | TeacherError:
        with self._lock:
            down = self._consecutive_down
        if down >= self.circuit_breaker:
            return TeacherError(
                f"{self.name}: skipped: endpoint {self.base_url} unreachable "
                f"({down} requests in a row failed to connect)"
            )
        stats.add(calls=1)
        adaptations = 0
        while True:
            try:
                raw = self._client.chat.completions.with_raw_response.create(**self._kwargs(messages))
            except openai.BadRequestError as e:  # not retried by the client: maybe an endpoint quirk
                stats.add(attempts=1)
                if adaptations < 2 and self._adapt(e):
                    adaptations += 1
                    continue
                return TeacherError(f"{self.name}: request rejected: {self._describe(e)}")
            except openai.APIError as e:
                tries = _attempts(e)
                stats.add(attempts=tries, retries=tries - 1)
                if isinstance(e, openai.APIConnectionError):  # includes timeouts
                    with self._lock:
                        self._consecutive_down += 1
                if tries > 1 or isinstance(e, openai.APIConnectionError):
                    return TeacherError(f"{self.name}: failed after {tries} attempt(s): {self._describe(e)}")
                return TeacherError(f"{self.name}: request failed: {self._describe(e)}")
            except Exception as e:  # e.g. a body the SDK cannot decode
                stats.add(attempts=1)
                return TeacherError(f"{self.name}: malformed response: {self._describe(e)}")
            stats.add(attempts=raw.retries_taken + 1, retries=raw.retries_taken)
            with self._lock:
                self._consecutive_down = 0
            try:
                resp = raw.parse()
            except Exception as e:
                return TeacherError(f"{self.name}: malformed response: {self._describe(e)}")
            return self._result(resp, stats)

    def _result(self, resp: Any, stats: TeacherStats) -> ChatResult | TeacherError:
        try:
            content = resp.choices[0].message.content
        except (AttributeError, IndexError, TypeError, KeyError):
            return TeacherError(f"{self.name}: malformed response: no choices[0].message.content")
        if not isinstance(content, str):
            return TeacherError(
                f"{self.name}: malformed response: message content is {type(content).__name__}"
            )
        content = self._redact.exact(content)  # an endpoint echoing the key must not put it in data files
        usage = getattr(resp, "usage", None)
        pt = int(getattr(usage, "prompt_tokens", 0) or 0)
        ct = int(getattr(usage, "completion_tokens", 0) or 0)
        stats.add(prompt_tokens=pt, completion_tokens=ct)
        return ChatResult(text=content, prompt_tokens=pt, completion_tokens=ct)


class OpenAITeacher(ChatTeacher):
    """teacher.kind = openai."""

    def __init__(
        self,
        params: OpenAITeacherParams,
        privilege_level: int,
        *,
        cache_dir: str | None,
        snap_threshold: float | None = SNAP_THRESHOLD,
        **backend_kw: Any,
    ) -> None:
        stats = TeacherStats(prices=Prices(params.price_per_1k_input, params.price_per_1k_output))
        super().__init__(
            OpenAIChat(params, **backend_kw),
            privilege_level,
            cache_dir=cache_dir,
            prompt=params.prompt,
            stats=stats,
            snap_threshold=snap_threshold,
        )
