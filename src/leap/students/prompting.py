"""The student prompt and the parsing of its two-line answer.

Shared by the student, the ReAct baseline and LLM teachers, so that all of them see the
same student-visible context and answer in the same ``Reason: ... / Action: ...`` format.
The prompt is the whole episode as a multi-turn chat (system, then one user turn per observation,
one assistant turn per step). Only student-visible text is rendered: the task instruction,
observations, past reasons and actions, and (optionally) the current admissible actions — never ``ctx.privileged``,
``ctx.privileged_state`` or ``task.spec``.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jinja2
from rapidfuzz import fuzz, process, utils

from leap.config import StudentParams
from leap.records import Message, Step, StepLabel, Task
from leap.teachers.base import StepContext

REPAIR_THRESHOLD = 80.0  # rapidfuzz ratio (0..100) an admissible action needs to replace an invalid one


# ---------------------------------------------------------------- templates


def _load_package_template(name: str) -> str | None:
    ref = importlib.resources.files("leap") / "prompts"
    for part in name.split("/"):
        ref = ref / part
    try:
        return ref.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


@functools.lru_cache(maxsize=1)
def jinja_env() -> jinja2.Environment:
    """Templates under ``leap/prompts`` (read through importlib.resources); undefined names raise."""
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(_load_package_template),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        autoescape=False,
    )


def render(name: str, **variables: object) -> str:
    return jinja_env().get_template(name).render(**variables).strip()


def template_for(env: str, name: str) -> str:
    """``<env>/<name>`` when the environment has one, else ``default/<name>``."""
    candidate = f"{env}/{name}"
    return candidate if _load_package_template(candidate) is not None else f"default/{name}"


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


def system_prompt(task: Task) -> str:
    view = TaskView.of(task)
    return render(template_for(task.env, "student_system.j2"), task=view) + "\n\n" + render("format.j2")


def observation_turn(
    task: Task,
    observation: str,
    *,
    first: bool,
    admissible_actions: Sequence[str] | None,
    params: StudentParams,
) -> str:
    """One user turn: the observation (the first one with the task, unless it already states it)."""
    obs = truncate(observation, params.max_observation_chars)
    instruction = task.instruction.strip()
    admissible = list(admissible_actions) if (params.show_admissible and admissible_actions) else []
    return render(
        "student.j2",
        instruction=instruction if first and instruction and instruction not in obs else "",
        observation=obs,
        admissible=admissible,
    )


def build_messages(ctx: StepContext, params: StudentParams) -> list[Message]:
    """The whole episode as a chat: system, then one user turn per observation and one assistant turn
    (reason + action) per step taken. Each step only appends to the previous step's conversation,
    so a generation engine can keep the episode's KV cache and prefill only the new turn."""
    task, history = ctx.task, ctx.history
    msgs = [Message(role="system", content=system_prompt(task))]
    for k, step in enumerate(history):
        # Past turns never list admissible actions: what was admissible then is not needed now, and a
        # turn must render the same at every later step (so the cached prefix stays valid).
        msgs.append(Message(role="user", content=observation_turn(
            task, step.observation, first=k == 0, admissible_actions=None, params=params)))
        msgs.append(Message(role="assistant", content=format_completion(StepLabel(reason=step.reason,
                                                                                  action=step.action))))
    msgs.append(Message(role="user", content=observation_turn(
        task, ctx.observation, first=not history, admissible_actions=ctx.admissible_actions, params=params)))
    return msgs


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


# ---------------------------------------------------------------- tokens for training


@dataclass
class PackedSequence:
    """A conversation with alternative assistant turns ("branches") packed into one sequence.

    ``segment`` is 0 on the trunk (the episode as it happened) and k on the k-th branch: a token
    attends to the trunk before it and to its own branch, never to another branch; ``position_ids``
    continue the trunk's positions inside a branch. ``labels`` is -100 where there is no loss.
    """

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    segment: list[int]


def pack_conversation(
    tokenizer: Any,
    trunk: Sequence[Message],
    *,
    train_from: int | None = None,
    branches: Sequence[tuple[int, Message]] = (),
) -> PackedSequence:
    """Tokenize ``trunk`` (rendered with the chat template, tokenized whole as at inference) with loss on
    its assistant turns from message ``train_from`` on (None: none), plus ``branches``: (k, assistant
    message) = another answer to the conversation ``trunk[:k]``, trained on.

    A demonstration is a trunk trained on every assistant turn; the corrections of one student
    trajectory are branches off the student's own turns (its history), so all of them cost one
    pass over the trajectory instead of one pass per corrected step.
    """
    msgs = [m.model_dump() for m in trunk]

    def render(ms: list[dict[str, str]], gen: bool) -> str:
        return tokenizer.apply_chat_template(ms, tokenize=False, add_generation_prompt=gen)

    # A trunk that ends with an observation is followed by its (branched) answer: render the header too.
    text = render(msgs, msgs[-1]["role"] != "assistant")
    spans: list[tuple[int, int]] = []  # trunk characters with loss
    if train_from is not None:
        for k in range(train_from, len(msgs)):
            if msgs[k]["role"] == "assistant":
                head, body = render(msgs[:k], True), render(msgs[: k + 1], False)
                if not (text.startswith(head) and text.startswith(body)):
                    raise ValueError("the chat template does not render a conversation as a prefix of its continuation")
                spans.append((len(head), len(head) + len(body[len(head) :].rstrip())))
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
    trained = [any(a < e and b > s for s, e in spans) for a, b in offsets]
    # Where each branch leaves the trunk: the first token after its conversation's assistant header.
    cuts = []
    for k, msg in sorted(branches, key=lambda b: b[0]):
        head = render(msgs[:k], True)
        if not text.startswith(head):
            raise ValueError(f"branch at message {k} does not continue the trunk")
        full = render([*msgs[:k], msg.model_dump()], False)
        body = tokenizer(full[len(head) :].rstrip(), add_special_tokens=False)["input_ids"]
        at = next((t for t, (a, _) in enumerate(offsets) if a >= len(head)), len(ids))
        cuts.append((at, list(body)))
    out = PackedSequence([], [], [], [])
    prev = 0
    for b, (at, body) in enumerate([*cuts, (len(ids), [])]):
        for t in range(prev, at):
            out.input_ids.append(ids[t])
            out.labels.append(ids[t] if trained[t] else -100)
            out.position_ids.append(t)
            out.segment.append(0)
        for j, tok in enumerate(body):
            out.input_ids.append(tok)
            out.labels.append(tok)
            out.position_ids.append(at + j)
            out.segment.append(b + 1)
        prev = at
    return out


def chat_token_ids(tokenizer: Any, prompt: Sequence[Message], completion: Sequence[Message]) -> tuple[list[int], list[int]]:
    """(input_ids, loss mask) of ``prompt + completion``, loss on the assistant turns of ``completion``."""
    seq = pack_conversation(tokenizer, [*prompt, *completion], train_from=len(prompt))
    return seq.input_ids, [int(x != -100) for x in seq.labels]
