"""Fixtures for the teacher tests (helpers live in teacher_fakes.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from teacher_fakes import FakeOpenAI, alfworld_ctx

from leap.agent import StepContext


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ctx_alfworld() -> StepContext:
    return alfworld_ctx()
