"""`leap serve --student`: the student behind an OpenAI-compatible completions API, with LoRA
adapters addressed by model name (what `vllm serve BASE --enable-lora --lora-modules NAME=PATH` does).

- ``GET /v1/models``: the base model and every loaded adapter; ``GET /health``.
- ``POST /v1/completions``: ``prompt`` as token ids (or text), ``model`` the base or an adapter's
  name. The optional ``leap`` field (``{"actions": [...], "banned": [...]}``) constrains the action to
  the admissible commands, through the same KV-cached engine and token trie as the in-process student
  (:class:`leap.students.engine.Engine`): the same request gets the same greedy answer.
- ``POST /v1/load_lora_adapter`` (``{"lora_name", "lora_path"}``) and ``/v1/unload_lora_adapter``, as
  vLLM's runtime LoRA API.

Requests are async: concurrent ones (many episodes in flight) are gathered into one engine call per
model (:class:`leap.batching.Batcher`). One base model is held in memory; each adapter is a PEFT
adapter on it, switched per batch, and each served name keeps its own engine (its own KV cache).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi import Request as HttpRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from leap.batching import Batcher
from leap.config import StudentParams
from leap.students.engine import Completion, Engine, Request
from leap.students.policy import student_engine

log = logging.getLogger(__name__)


class LeapGuide(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actions: list[str] | None = None
    banned: list[str] = Field(default_factory=list)


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # top_p, seed, stop, ... are accepted and ignored
    model: str
    prompt: list[int] | str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    n: int = 1
    stream: bool = False
    leap: LeapGuide | None = None


class LoadAdapter(BaseModel):
    model_config = ConfigDict(extra="ignore")
    lora_name: str
    lora_path: str | None = None


@dataclass
class _Job:
    model: str
    temperature: float
    request: Request


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": {"message": message, "type": kind, "code": status}}
    )


class StudentServer:
    """The base student and its adapters, generating batches of requests (one model at a time)."""

    def __init__(
        self,
        params: StudentParams,
        adapters: dict[str, Path | str] | None = None,
        *,
        served_name: str | None = None,
        window_s: float = 0.02,
        seed: int | None = None,
    ) -> None:
        from leap.students.models import load_base_model, load_tokenizer

        self.params = params
        self.base_name = served_name or params.model
        self.seed = seed
        self.base = load_base_model(
            params.model, params.gguf_file, quantization=params.quantization, dtype=params.dtype
        )
        self.base.eval()
        self.tokenizer = load_tokenizer(params.model, params.gguf_file)
        self.peft: Any = None  # the PeftModel once an adapter is loaded (adapters are injected in place)
        self.adapters: dict[str, str] = {}
        self.engines: dict[str, Engine] = {self.base_name: self._engine()}
        self._lock = threading.Lock()  # one generation (one active adapter) at a time
        for name, path in (adapters or {}).items():
            self.load_adapter(name, path)
        self.batcher: Batcher[_Job, Completion] = Batcher(
            self._run,
            max_batch=params.batch_size,
            window_s=window_s,
            key=lambda j: (j.model, j.temperature),
            name="leap-student-server",
        )

    def _engine(self) -> Engine:
        return student_engine(self.base, self.tokenizer, self.params, seed=self.seed)

    @property
    def models(self) -> list[str]:
        return [self.base_name, *self.adapters]

    def load_adapter(self, name: str, path: Path | str) -> None:
        from peft import PeftModel

        from leap.students.models import StudentLoadError, is_adapter_dir

        if name == self.base_name:
            raise ValueError(f"{name!r} is the base model's name")
        if not is_adapter_dir(Path(path)):
            raise StudentLoadError(f"{path} is not a PEFT adapter (no adapter_config.json)")
        with self._lock:
            if name in self.adapters:
                raise ValueError(f"adapter {name!r} is already loaded")
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(
                    self.base, str(path), adapter_name=name, is_trainable=False
                )
            else:
                self.peft.load_adapter(str(path), adapter_name=name, is_trainable=False)
            self.peft.eval()
            self.adapters[name] = str(path)
            self.engines[name] = self._engine()
            # Injecting LoRA layers changed the modules every engine runs: no cached KV is stale (an
            # adapter starts at zero effect only when freshly initialised), but start clean anyway.
            for engine in self.engines.values():
                engine.reset()

    def unload_adapter(self, name: str) -> None:
        with self._lock:
            if name not in self.adapters:
                raise KeyError(name)
            self.peft.delete_adapter(name)
            del self.adapters[name], self.engines[name]

    def _run(self, jobs: list[_Job]) -> list[Completion]:
        name, temperature = jobs[0].model, jobs[0].temperature
        with self._lock:
            engine = self.engines[name]
            engine.temperature = temperature
            if self.peft is None:
                scope: Any = contextlib.nullcontext()
            elif name == self.base_name:
                scope = self.peft.disable_adapter()
            else:
                self.peft.set_adapter(name)
                scope = contextlib.nullcontext()
            with scope:
                return engine.generate([j.request for j in jobs])

    def close(self) -> None:
        self.batcher.close()


def create_student_app(server: StudentServer, *, api_key: str | None = None) -> FastAPI:
    import hmac

    app = FastAPI(title="leap serve --student", docs_url=None, redoc_url=None)
    created = int(time.time())

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: HttpRequest, exc: RequestValidationError) -> JSONResponse:
        return _error(400, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))

    @app.middleware("http")
    async def _auth(request: HttpRequest, call_next: Any) -> Any:
        if api_key is not None and request.url.path != "/health":
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), api_key.encode()):
                return _error(401, "invalid or missing API key", "authentication_error")
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        data = [
            {"id": server.base_name, "object": "model", "created": created, "owned_by": "leap", "root": None}
        ]
        data += [
            {
                "id": n,
                "object": "model",
                "created": created,
                "owned_by": "leap",
                "root": p,
                "parent": server.base_name,
            }
            for n, p in server.adapters.items()
        ]
        return {"object": "list", "data": data}

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest) -> Any:
        if req.model not in server.engines:
            return _error(404, f"The model `{req.model}` does not exist.", "NotFoundError")
        if req.stream or req.n != 1:
            return _error(400, "leap serve answers n=1, non-streaming requests")
        ids = req.prompt if isinstance(req.prompt, list) else server.engines[req.model].encode(req.prompt)
        guide = req.leap or LeapGuide()
        temperature = server.params.temperature if req.temperature is None else req.temperature
        job = _Job(req.model, temperature, Request(ids, actions=guide.actions, banned=guide.banned))
        try:
            c = await asyncio.wrap_future(server.batcher.submit(job))
        except Exception as e:
            log.exception("generation failed")
            return _error(500, f"generation failed: {type(e).__name__}: {e}", "server_error")
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": req.model,
            "choices": [{"index": 0, "text": c.text, "finish_reason": "stop", "logprobs": None}],
            "usage": {
                "prompt_tokens": len(ids),
                "completion_tokens": len(c.token_ids),
                "total_tokens": len(ids) + len(c.token_ids),
                "prompt_tokens_details": {"cached_tokens": c.cached},
            },
        }

    @app.post("/v1/load_lora_adapter")
    async def load_lora_adapter(body: LoadAdapter) -> Any:
        if body.lora_path is None:
            return _error(400, "lora_path is required")
        try:
            await asyncio.to_thread(server.load_adapter, body.lora_name, body.lora_path)
        except (ValueError, OSError) as e:
            return _error(400, str(e))
        except Exception as e:
            return _error(400, f"{type(e).__name__}: {e}")
        return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' added successfully.")

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora_adapter(body: LoadAdapter) -> Any:
        try:
            await asyncio.to_thread(server.unload_adapter, body.lora_name)
        except KeyError:
            return _error(404, f"The lora adapter '{body.lora_name}' cannot be found.", "NotFoundError")
        return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' removed successfully.")

    return app
