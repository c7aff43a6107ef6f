"""`leap serve`: a local HF model behind an OpenAI-compatible chat-completions API.

POST /v1/chat/completions (non-streaming, n=1) and GET /v1/models, with token usage, so any
OpenAI client — including the `openai` teacher (teacher.openai.base_url: http://127.0.0.1:8000/v1)
— can use a local model. Binds loopback by default; requests are answered one at a time.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import threading
import time
import uuid
from typing import Annotated, Any, Literal

import typer
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from leap.teachers.local import LocalChat

log = logging.getLogger(__name__)


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # OpenAI content parts: keep the text ones
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # accept and ignore top_p, seed, response_format, ...
    model: str
    messages: list[ChatMessageIn] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int = 1
    stream: bool = False


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": {"message": message, "type": kind, "code": None}}
    )


def create_app(
    chat: LocalChat, served_name: str, *, max_tokens_limit: int = 1024, api_key: str | None = None
) -> FastAPI:
    """The ASGI app; ``api_key`` (optional) is then required as a Bearer token."""
    app = FastAPI(title="leap serve", docs_url=None, redoc_url=None)
    created = int(time.time())

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        msg = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return _error(400, msg)

    @app.middleware("http")
    async def _auth(request: Request, call_next: Any) -> Any:
        if api_key is not None:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), api_key.encode()):
                return _error(401, "invalid or missing API key", "authentication_error")
        return await call_next(request)

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": served_name, "object": "model", "created": created, "owned_by": "leap"}],
        }

    @app.post("/v1/chat/completions")
    def chat_completions(req: ChatRequest) -> Any:  # sync: FastAPI runs it in a worker thread
        if req.model != served_name:
            return _error(
                404,
                f"model {req.model!r} is not served here; available: [{served_name!r}]",
                "not_found_error",
            )
        if req.stream:
            return _error(400, "stream=true is not supported by leap serve")
        if req.n != 1:
            return _error(400, "only n=1 is supported by leap serve")
        messages = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in req.messages
        ]
        max_new = min(req.max_completion_tokens or req.max_tokens or chat.max_new_tokens, max_tokens_limit)
        try:
            res = chat.generate([messages], max_new_tokens=max_new, temperature=req.temperature or 0.0)[0]
        except Exception as e:
            log.exception("generation failed")
            return _error(500, f"generation failed: {type(e).__name__}: {e}", "server_error")
        finish = "length" if res.completion_tokens >= max_new else "stop"
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": served_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": res.text},
                    "finish_reason": finish,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": res.prompt_tokens,
                "completion_tokens": res.completion_tokens,
                "total_tokens": res.prompt_tokens + res.completion_tokens,
            },
        }

    return app


class BackgroundServer:
    """Run an ASGI app with uvicorn in a thread (tests, notebooks); ``port=0`` picks a free port."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        )
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not main thread
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="leap-serve")
        self.host = host
        self.port = port

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.host}:{self.port} did not start")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    model: Annotated[
        str, typer.Argument(help="'smollm2-135m-instruct' (offline), a local path or a cached HF id")
    ] = "smollm2-135m-instruct",
    host: Annotated[
        str, typer.Option(help="bind address (loopback by default; anything else exposes the model)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    adapter: Annotated[str | None, typer.Option(help="a PEFT adapter directory (e.g. models/iter_2)")] = None,
    gguf_file: Annotated[str | None, typer.Option(help="GGUF file inside MODEL, if any")] = None,
    served_name: Annotated[str | None, typer.Option(help="model id clients ask for (default: MODEL)")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="default completion length")] = 256,
    batch_size: Annotated[int, typer.Option(help="generation batch size")] = 4,
    api_key_env: Annotated[
        str | None,
        typer.Option(
            help="NAME of an env var whose value clients must send as Bearer token (recommended off loopback)"
        ),
    ] = None,
    student: Annotated[
        bool,
        typer.Option(
            "--student",
            help="serve MODEL as the student (POST /v1/completions with token-id prompts and the student's "
            "constrained actions; LoRA adapters by name), for student.backend: openai",
        ),
    ] = False,
    lora_modules: Annotated[
        list[str] | None,
        typer.Option(help="--student: NAME=PATH of an adapter served as model NAME (repeatable, as vLLM's)"),
    ] = None,
    student_config: Annotated[
        str | None, typer.Option(help="--student: the student section as JSON (params.yaml's student)")
    ] = None,
    batch_window_ms: Annotated[
        float, typer.Option(help="--student: how long a request waits for others to batch with")
    ] = 20.0,
) -> None:
    """Serve a local HF model over an OpenAI-compatible API."""
    import uvicorn

    key = None
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise typer.BadParameter(
                f"environment variable {api_key_env} is not set", param_hint="--api-key-env"
            )
    if student or student_config:
        _serve_student(
            model,
            host,
            port,
            gguf_file,
            served_name,
            student_config,
            lora_modules or [],
            batch_window_ms,
            key,
        )
        return
    if not _is_loopback(host):
        log.warning(
            "binding %s: the model is reachable from the network%s",
            host,
            "" if key else " without authentication (consider --api-key-env)",
        )
    chat = LocalChat(
        model,
        gguf_file=gguf_file,
        adapter_dir=adapter,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        stop_after_action=False,
    )
    chat.load()  # fail before binding if the model cannot load
    name = served_name or model
    typer.echo(f"serving {name!r} at http://{host}:{port}/v1 (OpenAI-compatible; Ctrl-C stops)")
    uvicorn.run(create_app(chat, name, api_key=key), host=host, port=port, log_level="info")


def _serve_student(
    model: str,
    host: str,
    port: int,
    gguf_file: str | None,
    served_name: str | None,
    student_config: str | None,
    lora_modules: list[str],
    batch_window_ms: float,
    api_key: str | None,
) -> None:
    import json

    import uvicorn

    from leap.config import StudentParams
    from leap.students.serve import StudentServer, create_student_app

    cfg = json.loads(student_config) if student_config else {"model": model, "gguf_file": gguf_file}
    params = StudentParams.model_validate(cfg)
    adapters: dict[str, str] = {}
    for spec in lora_modules:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise typer.BadParameter(f"{spec!r}: expected NAME=PATH", param_hint="--lora-modules")
        adapters[name] = path
    if not _is_loopback(host):
        log.warning("binding %s: the student is reachable from the network", host)
    server = StudentServer(params, adapters, served_name=served_name, window_s=batch_window_ms / 1000)
    typer.echo(f"serving the student {server.models} at http://{host}:{port}/v1 (Ctrl-C stops)")
    uvicorn.run(create_student_app(server, api_key=api_key), host=host, port=port, log_level="warning")
