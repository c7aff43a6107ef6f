"""Test helpers: a scripted OpenAI-compatible server on 127.0.0.1 and step contexts per environment."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from leap.agent import StepContext
from leap.records import PrivilegedState, Step, Task


@dataclass
class Reply:
    status: int = 200
    body: dict[str, Any] | str | None = None  # None: a chat completion with `content`
    content: str = '{"reason": "I have not looked in the fridge yet.", "action": "go to fridge 1"}'
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    die: bool = False  # drop the connection and shut the server down


def completion(content: str, prompt_tokens: int = 100, completion_tokens: int = 20) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": "fake-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class FakeOpenAI:
    """Answers POST /v1/chat/completions from ``responder(body, n)`` (n = 0-based request count)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.responder: Callable[[dict[str, Any], int], Reply] = lambda body, n: Reply()
        self.port = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *replies: Reply, then: Reply | None = None) -> None:
        """Answer the next requests with ``replies`` in order, then with ``then`` (default: success)."""
        seq = list(replies)
        start = len(self.requests)
        self.responder = lambda body, n: seq[n - start] if n - start < len(seq) else (then or Reply())

    def start(self) -> FakeOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                body = json.loads(raw or b"{}")
                with fake._lock:
                    n = len(fake.requests)
                    fake.requests.append(body)
                    fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                reply = fake.responder(body, n)
                if reply.die:
                    self.close_connection = True
                    self.connection.close()
                    threading.Thread(target=fake.stop, daemon=True).start()
                    return
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.body is None:
                    payload = json.dumps(completion(reply.content)).encode()
                    ctype = "application/json"
                elif isinstance(reply.body, str):
                    payload, ctype = reply.body.encode(), "text/plain"
                else:
                    payload, ctype = json.dumps(reply.body).encode(), "application/json"
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", ctype)
                    self.send_header("content-length", str(len(payload)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out first
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()


# ---------------------------------------------------------------- contexts


def alfworld_ctx(secrets: list[str] | None = None, step_secrets: bool = True) -> StepContext:
    task = Task(
        task_id="alf-1",
        env="alfworld",
        split="train",
        category="pick_and_place_simple",
        instruction="Your task is to: put some apple in the microwave.",
        spec={"game": "hidden/path/game.tw-pddl"},
    )
    secrets = secrets if secrets is not None else ["apple 1 is in fridge 1"]
    ps = PrivilegedState(
        task_id="alf-1",
        env="alfworld",
        facts={"object_locations": {"apple 1": "fridge 1"}},
        plan=["go to fridge 1", "open fridge 1", "take apple 1 from fridge 1", "go to microwave 1"],
        secrets=secrets,
    )
    history = [
        Step(
            observation="You are in the middle of a room. You see a countertop 1, a fridge 1, a microwave 1.",
            reason="I should look around.",
            action="go to countertop 1",
        )
    ]
    return StepContext(
        task=task,
        history=history,
        observation="On the countertop 1, you see a knife 1.",
        admissible_actions=["go to fridge 1", "go to microwave 1", "take knife 1 from countertop 1", "look"],
        privileged={"expert_action": "go to fridge 1", **({"secrets": secrets} if step_secrets else {})},
        privileged_state=ps,
    )


def intercode_ctx(gold: str = "find /testbed -type f -name '*.txt' | xargs wc -l") -> StepContext:
    task = Task(
        task_id="ic-1",
        env="intercode",
        split="train",
        category="nl2bash_fs_1",
        instruction="Count the lines of every .txt file under /testbed.",
    )
    ps = PrivilegedState(task_id="ic-1", env="intercode", facts={"gold": gold}, secrets=[gold])
    return StepContext(task=task, history=[], observation="", privileged_state=ps)


def webshop_ctx() -> StepContext:
    task = Task(
        task_id="ws-1",
        env="webshop",
        split="train",
        category="fashion",
        instruction="i need a men's short sleeve t-shirt in blue, size large, price lower than 30.00 dollars",
    )
    title = "Hanes Men's ComfortSoft Short Sleeve T-Shirt Tagless Cotton Crewneck"
    ps = PrivilegedState(
        task_id="ws-1",
        env="webshop",
        facts={"asin": "B07HRFSNL4", "title": title},
        secrets=["B07HRFSNL4", title],
    )
    return StepContext(task=task, history=[], observation="[Search]", privileged_state=ps)
