"""The answer format every agent writes, and the one parser and snapper for it.

An answer is ``Reason: ...`` then ``Action: ...`` (:func:`format_completion`). The student, the
ReAct baseline and LLM teachers all answer in it and are read by :func:`parse_completion`, which
tolerates what models add (markdown, fences, a missing reason, trailing fields); the regex family
for the ``Action:`` label (also used to stop generation once an action line is complete) is here.
Teachers asked for JSON ({"reason", "action"}) are read by :func:`parse_reply`, which takes JSON
(bare, fenced or inside prose) or else the two-line format, and validates the result.
:func:`snap_action` maps an action that is almost an admissible one onto it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from rapidfuzz import fuzz, process, utils

from leap.records import StepLabel

SNAP_THRESHOLD = 80.0  # default of env.snap_threshold (rapidfuzz ratio, 0..100)

# ---------------------------------------------------------------- the two-line format

_MARK = r"[\s>*#_`~\-]*"  # markdown around a field name: "**Action:**", "- action:", "### Action"
ACTION_LABEL = rf"{_MARK}action{_MARK}\s*[:：]"  # "Action:" at the start of a line, however decorated
_ACTION_LINE = re.compile(rf"^{ACTION_LABEL}\s*(?P<rest>.*)$", re.IGNORECASE)
# A line starting with the label (anywhere in a text), and one that is complete (an action, then \n).
HAS_ACTION_LINE = re.compile(rf"(?im)^{ACTION_LABEL}")
ACTION_LINE_DONE = re.compile(rf"(?im)^{ACTION_LABEL}[^\n]*\S[^\n]*\n")
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


def format_completion(label: StepLabel) -> str:
    return f"Reason: {label.reason.strip()}\nAction: {label.action.strip()}"


def snap_action(
    action: str, admissible: Sequence[str] | None, threshold: float = SNAP_THRESHOLD
) -> str | None:
    """The admissible action ``action`` evidently means (case, spacing, punctuation, a missing
    number), or None when it is admissible already, empty, or nothing scores ``threshold``.

    The score is rapidfuzz's ratio on normalised text (0..100). A small model sometimes lists
    several actions ("examine desk 1, go to bed 1"): the first one is tried too."""
    if not action or not admissible or action in admissible:
        return None
    for candidate in dict.fromkeys((action, action.split(",")[0])):
        best = process.extractOne(
            candidate,
            list(admissible),
            scorer=fuzz.ratio,
            processor=utils.default_process,
            score_cutoff=threshold,
        )
        if best:
            return best[0]
    return None


# ---------------------------------------------------------------- teacher replies (JSON or the two lines)


class ReplyError(ValueError):
    """The reply holds no usable reason and action."""


class TeacherReply(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    reason: str
    action: str

    @field_validator("action")
    @classmethod
    def _one_line_action(cls, v: str) -> str:
        v = v.strip().strip("`").strip()
        if not v:
            raise ValueError("empty action")
        if "\n" in v:
            raise ValueError("the action must be a single line")
        if _PLACEHOLDER.fullmatch(v):
            raise ValueError(f"the action is the prompt's placeholder {v!r}")
        return v

    @field_validator("reason", mode="before")
    @classmethod
    def _reason_text(cls, v: object) -> object:
        return " ".join(str(x) for x in v) if isinstance(v, list) else v

    @field_validator("reason")
    @classmethod
    def _not_placeholder(cls, v: str) -> str:
        if _PLACEHOLDER.fullmatch(v):
            raise ValueError(f"the reason is the prompt's placeholder {v!r}")
        return v


_PLACEHOLDER = re.compile(r"<[^<>]*>")  # "<one action>" copied from the answer format


def _json_candidates(text: str) -> list[str]:
    out: list[str] = []
    for fence in re.finditer(r"```(?:json)?\s*(.*?)```", text, re.DOTALL | re.IGNORECASE):
        out.append(fence.group(1))
    start = text.find("{")
    end = text.rfind("}")
    if 0 <= start < end:
        out.append(text[start : end + 1])
    return out


def _from_json(text: str) -> TeacherReply | None:
    for cand in _json_candidates(text):
        try:
            data = json.loads(cand)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            data = {str(k).lower(): v for k, v in data.items()}
            if "reason" not in data:
                for alt in ("reasoning", "thought", "rationale"):
                    if alt in data:
                        data["reason"] = data[alt]
                        break
            try:
                return TeacherReply.model_validate(data)
            except ValidationError as e:
                raise ReplyError(f"JSON reply does not validate: {_errors(e)}") from None
    return None


def _from_text(text: str) -> TeacherReply | None:
    reason, action, ok = parse_completion(text)
    if not ok:
        return None
    try:
        return TeacherReply(reason=reason, action=action)
    except ValidationError as e:
        raise ReplyError(f"reply does not validate: {_errors(e)}") from None


def _errors(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, x['loc'])) or 'reply'}: {x['msg']}" for x in e.errors())


def parse_reply(text: str) -> StepLabel:
    """Reason and action from a reply; raises ReplyError quoting the start of a bad reply."""
    if not text or not text.strip():
        raise ReplyError("empty reply")
    reply = _from_json(text) or _from_text(text)
    if reply is None:
        snippet = text.strip().replace("\n", " ")[:160]
        raise ReplyError(f"no JSON object and no 'Action:' line in reply: {snippet!r}")
    return StepLabel(reason=reply.reason, action=reply.action)


def parse_reason(text: str) -> str:
    """The reason of an annotation reply (the action, if any, is ignored)."""
    try:
        return parse_reply(text).reason
    except ReplyError:
        m = re.search(r"reason\s*[:：]\s*(.+)", text, re.IGNORECASE | re.DOTALL)
        if m and m.group(1).strip():
            return " ".join(m.group(1).split())
        raise
