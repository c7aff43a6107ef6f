"""The student prompt (its answer format and parser are in :mod:`leap.prompts.parsing`).

Shared by the student, the ReAct baseline and LLM teachers, so that all of them see the
same student-visible context and answer in the same ``Reason: ... / Action: ...`` format.
Only student-visible text is rendered: the task instruction, observations, past reasons
and actions, and (optionally) the admissible actions — never ``ctx.privileged``,
``ctx.privileged_state`` or ``task.spec``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from leap import prompts
from leap.agent import StepContext
from leap.config import StudentParams
from leap.records import Message, Step, Task


@dataclass(frozen=True)
class TaskView:
    """The part of a Task a student may see (templates get this, never the Task with its spec)."""

    env: str
    category: str
    instruction: str

    @classmethod
    def of(cls, task: Task) -> TaskView:
        return cls(env=task.env, category=task.category, instruction=task.instruction)


# ---------------------------------------------------------------- prompt building


def truncate(text: str, limit: int) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 4)].rstrip() + " ..."


@dataclass(frozen=True)
class _HistoryItem:
    number: int
    observation: str
    reason: str
    action: str


def system_prompt(task: Task) -> str:
    view = TaskView.of(task)
    system = prompts.for_env(task.env, "student_system.j2", "default/student_system.j2")
    return prompts.render(system, task=view) + "\n\n" + prompts.render("format.j2")


def user_prompt(
    task: Task,
    history: Sequence[Step],
    observation: str,
    admissible_actions: Sequence[str] | None,
    params: StudentParams,
) -> str:
    window = params.history_window
    shown = list(history)[-window:] if window > 0 else []
    first = len(history) - len(shown)
    lim = params.max_observation_chars
    items = [
        _HistoryItem(first + k + 1, truncate(s.observation, lim), s.reason.strip(), s.action.strip())
        for k, s in enumerate(shown)
    ]
    admissible = list(admissible_actions) if (params.show_admissible and admissible_actions) else []
    # The first observation describes the scene (e.g. every receptacle in the room): keep it
    # even when it has left the window, so the student still knows where it could look.
    start = truncate(history[0].observation, lim) if first > 0 else ""
    # Steps that left the window still say where the agent has been (ALFWorld: which receptacles
    # it already searched); the actions alone are short enough to keep many.
    k = min(first, params.earlier_actions)
    earlier = [s.action.strip() for s in history[first - k : first]] if k else []
    return prompts.render(
        "student.j2",
        instruction=task.instruction.strip(),
        start=start,
        history=items,
        omitted=first,
        earlier_actions=earlier,
        observation=truncate(observation, lim),
        admissible=admissible,
    )


def build_messages(ctx: StepContext, params: StudentParams) -> list[Message]:
    """System + user messages for one decision (bounded by the history window)."""
    return [
        Message(role="system", content=system_prompt(ctx.task)),
        Message(
            role="user",
            content=user_prompt(ctx.task, ctx.history, ctx.observation, ctx.admissible_actions, params),
        ),
    ]
