"""Prompts are byte-for-byte what they were: refactors of the prompt layer must not change them.

A prompt change that is meant is recorded with ``python -m tests.prompt_cases --write``."""

from __future__ import annotations

import json

from tests.prompt_cases import PINNED, cases, digest


def test_every_rendered_prompt_matches_its_pin() -> None:
    pinned = json.loads(PINNED.read_text())
    got = {}
    changed = []
    for name, make in cases():
        messages = make()
        got[name] = digest(messages)
        if pinned.get(name) != got[name]:
            changed.append((name, messages))
    assert set(got) == set(pinned), f"cases added/removed: {sorted(set(got) ^ set(pinned))[:10]}"
    assert not changed, f"{len(changed)} prompt(s) changed; first: {changed[0][0]}:\n" + "\n---\n".join(
        f"[{m.role}]\n{m.content}" for m in changed[0][1]
    )
