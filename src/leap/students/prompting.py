"""The student prompt: the whole episode as a multi-turn chat, and its tokens for training.

Its answer format and parser are in :mod:`leap.prompts.parsing`. Shared by the student, the ReAct
baseline and LLM teachers, so that all of them see the same student-visible context. The prompt is
one system message, then one user turn per observation and one assistant turn (``Reason: ... /
Action: ...``) per step. Only student-visible text is rendered: the task instruction, observations,
past reasons and actions, and (optionally) the current admissible actions — never
``ctx.privileged``, ``ctx.privileged_state`` or ``task.spec``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from leap import prompts
from leap.agent import StepContext
from leap.config import StudentParams
from leap.prompts.parsing import format_completion
from leap.records import Message, StepLabel, Task


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
    system = prompts.for_env(task.env, "student_system.j2", "default/student_system.j2")
    return prompts.render(system, task=view) + "\n\n" + prompts.render("format.j2")


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
    return prompts.render(
        "student.j2",
        instruction=instruction if first and instruction and instruction not in obs else "",
        observation=obs,
        admissible=admissible,
        # A small student loses the goal in a long episode: optionally state it again in every turn.
        restate=instruction if params.restate_task and not first else "",
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
        msgs.append(
            Message(
                role="user",
                content=observation_turn(
                    task, step.observation, first=k == 0, admissible_actions=None, params=params
                ),
            )
        )
        msgs.append(
            Message(
                role="assistant", content=format_completion(StepLabel(reason=step.reason, action=step.action))
            )
        )
    msgs.append(
        Message(
            role="user",
            content=observation_turn(
                task,
                ctx.observation,
                first=not history,
                admissible_actions=ctx.admissible_actions,
                params=params,
            ),
        )
    )
    return msgs


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
                    raise ValueError(
                        "the chat template does not render a conversation as a prefix of its continuation"
                    )
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


def chat_token_ids(
    tokenizer: Any, prompt: Sequence[Message], completion: Sequence[Message]
) -> tuple[list[int], list[int]]:
    """(input_ids, loss mask) of ``prompt + completion``, loss on the assistant turns of ``completion``."""
    seq = pack_conversation(tokenizer, [*prompt, *completion], train_from=len(prompt))
    return seq.input_ids, [int(x != -100) for x in seq.labels]
