"""The student prompt and the parsing of its two-line answer.

Shared by the student, the ReAct baseline and LLM teachers, so that all of them see the
same student-visible context and answer in the same ``Reason: ... / Action: ...`` format.
Only student-visible text is rendered: the task instruction, observations, past reasons
and actions, and (optionally) the admissible actions — never ``ctx.privileged``,
``ctx.privileged_state`` or ``task.spec``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz, process, utils

from leap import prompts
from leap.agent import StepContext
from leap.config import StudentParams
from leap.records import Message, Step, StepLabel, Task

REPAIR_THRESHOLD = 80.0  # rapidfuzz ratio (0..100) an admissible action needs to replace an invalid one


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


def format_completion(label: StepLabel) -> str:
    return f"Reason: {label.reason.strip()}\nAction: {label.action.strip()}"


# ---------------------------------------------------------------- parsing

_MARK = r"[\s>*#_`~\-]*"  # markdown around a field name: "**Action:**", "- action:", "### Action"
_ACTION_LINE = re.compile(rf"^{_MARK}action{_MARK}\s*[:：]\s*(?P<rest>.*)$", re.IGNORECASE)
_ACTION_ANY = re.compile(r"\baction\s*[*_`]*\s*[:：]\s*(?P<rest>.*)", re.IGNORECASE)
_REASON = re.compile(
    rf"^{_MARK}(?:reason|reasoning|thought|think|rationale){_MARK}\s*[:：]\s*(?P<rest>.*)$", re.IGNORECASE
)
# Another field or a special token starting on the action line: what follows is junk.
_TRAILING = re.compile(
    r"\s*(?:<\|[^|]*\|>|</?s>|\b(?:observation|reason|thought|action)\s*[:：]).*$", re.IGNORECASE
)
_FENCE = re.compile(r"```(?:[\w+-]*\n)?(?P<body>.*?)(?:```|$)", re.DOTALL)


def _clean(text: str) -> str:
    text = text.strip()
    # Strip symmetric wrappers a model likes to add: **go to x**, `ls -la`, "open drawer 1".
    for _ in range(3):
        m = re.fullmatch(r"(\*\*|__|`+|\"|'|\*)(.+?)\1", text, flags=re.DOTALL)
        if not m:
            break
        text = m.group(2).strip()
    return text.strip()


def _action_from(rest: str, following: list[str]) -> str:
    rest = re.sub(r"^(\*\*|__)", "", rest.strip()).strip()  # the closing "**" of "**Action:**"
    rest = re.sub(r"^(?:action\s*[:：]\s*)+", "", rest, flags=re.IGNORECASE)  # "Action: Action: look"
    if rest.startswith("```") or (not rest and following and following[0].strip().startswith("```")):
        block = rest + "\n" + "\n".join(following) if rest else "\n".join(following)
        m = _FENCE.search(block)
        return _clean(m.group("body")) if m else ""
    if not rest:  # "Action:" alone on its line: take the next non-empty line
        rest = next((ln.strip() for ln in following if ln.strip()), "")
        if _REASON.match(rest) or _ACTION_LINE.match(rest):
            return ""
    rest = _TRAILING.sub("", rest)
    return _clean(rest)


def parse_completion(text: str) -> tuple[str, str, bool]:
    """(reason, action, ok) from a model's answer; ok is False when no action is found.

    Tolerates case, markdown, extra whitespace, a missing reason, several lines and
    trailing junk. The first ``Action:`` line wins; an ``Action:`` inside a sentence is
    used only when no line starts with one.
    """
    text = (text or "").replace("\r\n", "\n")
    lines = text.split("\n")
    action = ""
    head = lines  # the lines before the action: where the reason is
    found = False
    for i, line in enumerate(lines):
        m = _ACTION_LINE.match(line)
        if m:
            action = _action_from(m.group("rest"), lines[i + 1 :])
            head, found = lines[:i], True
            break
    if not found:
        m = _ACTION_ANY.search(text)
        if m:
            first, _, after = m.group("rest").partition("\n")
            action = _action_from(first, after.split("\n"))
            head, found = text[: m.start()].split("\n"), True  # the reason may precede it on its line
    reason = ""
    for i, line in enumerate(head):
        m = _REASON.match(line)
        if m:
            reason = " ".join(p.strip() for p in [m.group("rest"), *head[i + 1 :]] if p.strip())
            break
    else:
        if found:  # no "Reason:" label: the text before the action is the reason
            reason = " ".join(ln.strip() for ln in head if ln.strip())
    reason = _clean(re.sub(r"^(\*\*|__)", "", reason.strip()))
    return reason, action, bool(action)


def repair_action(
    action: str, admissible: Sequence[str] | None, threshold: float = REPAIR_THRESHOLD
) -> tuple[str, bool]:
    """Map ``action`` to the closest admissible action when it is not one; (action, repaired).

    Unknown admissible actions (None/empty), an exact match, an empty action, or no
    candidate scoring at least ``threshold`` (rapidfuzz ratio on normalised text) leave
    the action unchanged.
    """
    if not action or not admissible or action in admissible:
        return action, False
    best = process.extractOne(
        action, list(admissible), scorer=fuzz.ratio, processor=utils.default_process, score_cutoff=threshold
    )
    if best is None:
        return action, False
    return best[0], True
