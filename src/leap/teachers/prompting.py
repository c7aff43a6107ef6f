"""Render the teacher's Jinja prompts (correction at a privilege level, reason annotation).

``teacher/correct.j2`` and ``teacher/annotate.j2`` are shared; an environment may extend them in
its own templates as ``teacher_correct.j2`` / ``annotate.j2`` (its description and privileged-state
rendering). Rendered by the one prompt layer (:mod:`leap.prompts`); a missing variable is an error.
"""

from __future__ import annotations

import re
from typing import Any

import jinja2

from leap import prompts
from leap.agent import StepContext
from leap.config import TeacherPromptParams
from leap.records import Message, StepLabel
from leap.teachers.leak import distinct_facts, unobserved_secrets

_BLANKS = re.compile(r"\n\s*\n(\s*\n)+")


def _template(env_name: str, name: str, fallback: str) -> jinja2.Template:
    return prompts.get_template(prompts.for_env(env_name, name, fallback))


def _common_vars(ctx: StepContext, opts: TeacherPromptParams) -> dict[str, Any]:
    return {
        "instruction": ctx.task.instruction,
        "history": ctx.history,
        "observation": ctx.observation,
        "admissible_actions": ctx.admissible_actions or [],
        "output_format": opts.output_format,
        "history_window": opts.history_window,
        "max_observation_chars": opts.max_observation_chars,
        "max_admissible": opts.max_admissible,
    }


def _tidy(text: str) -> str:
    return _BLANKS.sub("\n\n", text).strip()


def _render_pair(template: Any, variables: dict[str, Any]) -> list[Message]:
    system = _tidy(template.render(part="system", **variables))
    user = _tidy(template.render(part="user", **variables))
    return [Message(role="system", content=system), Message(role="user", content=user)]


def correction_messages(
    ctx: StepContext, student: StepLabel | None, level: int, opts: TeacherPromptParams | None = None
) -> list[Message]:
    """System + user messages asking for a (better) reason and action at privilege level ``level``."""
    if not 0 <= level <= 4:
        raise ValueError(f"privilege level must be 0..4, got {level}")
    opts = opts or TeacherPromptParams()
    ps = ctx.privileged_state
    step_info = {k: v for k, v in (ctx.privileged or {}).items() if k != "secrets"}
    variables = _common_vars(ctx, opts) | {
        "env": ctx.task.env,
        "level": level,
        "student": student,
        # λ0 must not use privileged facts: the simplest guarantee is not to show them.
        "facts": (ps.facts if ps else {}) if level > 0 else {},
        "plan": (ps.plan if ps else []) if level > 0 else [],
        "step_info": step_info if level > 0 else {},
        "unobserved": distinct_facts(unobserved_secrets(ctx)) if level > 0 else [],
    }
    if opts.style == "compact":
        template = _template(ctx.task.env, "teacher_correct_compact.j2", "teacher/correct_compact.j2")
    else:
        template = _template(ctx.task.env, "teacher_correct.j2", "teacher/correct.j2")
    return _render_pair(template, variables)


def annotation_messages(
    ctx: StepContext, action: str, opts: TeacherPromptParams | None = None
) -> list[Message]:
    """System + user messages asking for the reason behind a demonstration's ``action``."""
    opts = opts or TeacherPromptParams()
    variables = _common_vars(ctx, opts) | {"action": action}
    return _render_pair(_template(ctx.task.env, "annotate.j2", "teacher/annotate.j2"), variables)


def as_dicts(messages: list[Message] | list[dict[str, str]]) -> list[dict[str, str]]:
    return [
        m.model_dump() if isinstance(m, Message) else {"role": m["role"], "content": m["content"]}
        for m in messages
    ]
