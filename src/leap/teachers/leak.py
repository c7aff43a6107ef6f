"""Leak check: does a reason state privileged facts the student could not know?

Secrets come from ``ctx.privileged["secrets"]`` (per step: facts not yet observed) or else the task's
``PrivilegedState.secrets``. A secret leaks when the reason contains it (case, whitespace and
punctuation ignored); a relational secret such as ALFWorld's "apple 1 is in fridge 1" also leaks when
one clause of the reason names both the object type and the receptacle type without hedging
("the apple is in the fridge", "I'll take the apple from fridge 1"), while exploration or hedged
wording ("I'll check the fridge; apples may be there") does not, nor does a clause about another
instance ("I heat mug 1 in microwave 1" when "mug 2 is in microwave 1" is hidden). A long secret
(a gold command, a product title) also leaks when the reason quotes it nearly verbatim or names
most of its words that the instruction and observations do not. A secret that already appears in
what the student has seen (instruction, observations) is not privileged any more and never leaks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rapidfuzz import fuzz

from leap.agent import StepContext, Teacher, TeacherError
from leap.records import Correction, StepLabel

_NON_WORD = re.compile(r"[^a-z0-9]+")
_CLAUSE_SPLIT = re.compile(r"[.!?;:,\n()]+|\b(?:so|but|because|then|since|and then|while|whereas)\b")
_RELATION = re.compile(
    r"^(?:the |a |an )?(?P<obj>[a-z][a-z ]*?)(?: (?P<obj_num>\d+))? (?:is|are|was|lies|sits) "
    r"(?:located |placed |kept |stored )?(?:in|on|inside|at|under) (?:the )?"
    r"(?P<rec>[a-z][a-z ]*?)(?: (?P<rec_num>\d+))?$"
)
# Wording that marks a guess or a search rather than a statement of a hidden fact.
_HEDGE_WORDS = (
    "might may could maybe perhaps possibly probably likely usually often typically commonly sometimes "
    "check checking search searching explore exploring find finding looking try if whether not no "
    "haven t isn wasn guess suspect expect think believe"
)
_HEDGES = frozenset(_HEDGE_WORDS.split())
_HEDGE_PHRASES = ("look for", "looking for", "look in", "not yet")
# ALFWorld type names (one word) -> words people use for them.
_ALIASES: dict[str, tuple[str, ...]] = {
    "sinkbasin": ("sink",),
    "bathtubbasin": ("bathtub", "tub"),
    "countertop": ("counter",),
    "diningtable": ("table",),
    "coffeetable": ("table",),
    "sidetable": ("table",),
    "garbagecan": ("trashcan", "bin", "garbage"),
    "stoveburner": ("stove", "burner"),
    "tvstand": ("tv",),
    "fridge": ("refrigerator",),
}
_STOP_WORDS = "the a an and or of for with to in on by from at is are this that it its x"
_STOP = frozenset(_STOP_WORDS.split())
LONG_SECRET_CHARS = 20


def normalize(text: str) -> str:
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def _singular(word: str) -> list[str]:
    out = [word]
    if len(word) > 3 and word.endswith("ves"):
        out += [word[:-3] + "f", word[:-3] + "fe"]
    if len(word) > 3 and word.endswith("es"):
        out.append(word[:-2])
    if len(word) > 2 and word.endswith("s"):
        out.append(word[:-1])
    return out


@dataclass(frozen=True)
class _Fact:
    """A relational secret: object type (and instance) in/on receptacle type (and instance)."""

    obj: str
    obj_num: str | None
    rec: str
    rec_num: str | None

    @classmethod
    def parse(cls, secret_n: str) -> _Fact | None:
        m = _RELATION.match(secret_n)
        if not m or len(m["obj"].split()) > 3 or len(m["rec"].split()) > 3:
            return None  # not an object/receptacle pair (e.g. a product title that says "is on sale")
        return cls(m["obj"].replace(" ", ""), m["obj_num"], m["rec"].replace(" ", ""), m["rec_num"])


def _names(type_name: str) -> set[str]:
    return {type_name, *_ALIASES.get(type_name, ())}


def _mentions(toks: list[str], names: set[str]) -> list[str | None]:
    """The instance number after each mention of a type in ``names`` (None: no number given).

    Mentions may be compounds ("alarm clock" -> "alarmclock") or plurals ("apples")."""
    out: list[str | None] = []
    for n in (1, 2, 3):
        for i in range(len(toks) - n + 1):
            if names.intersection(_singular("".join(toks[i : i + n]))):
                nxt = toks[i + n] if i + n < len(toks) else ""
                out.append(nxt if nxt.isdigit() else None)
    return out


def _clauses(reason: str) -> list[str]:
    return [c for c in (normalize(p) for p in _CLAUSE_SPLIT.split(reason.lower()) if p) if c]


def _hedged(toks: list[str], clause: str) -> bool:
    return bool(_HEDGES.intersection(toks)) or any(p in clause for p in _HEDGE_PHRASES)


def _other_instance(mentions: list[str | None], hidden: set[str]) -> bool:
    """Every mention names an instance, and none of the hidden ones (e.g. "mug 1" when "mug 2" is hidden)."""
    return bool(hidden) and all(m is not None for m in mentions) and not hidden.intersection(mentions)


def _relation_leak(fact: _Fact, facts: list[_Fact], clauses: list[str]) -> bool:
    # Instances of this object type hidden at this receptacle type, from every phrasing of the secrets.
    hidden = {f.obj_num for f in facts if (f.obj, f.rec) == (fact.obj, fact.rec) and f.obj_num}
    recs = {fact.rec_num} if fact.rec_num else set()
    for clause in clauses:
        toks = clause.split()
        objs = _mentions(toks, _names(fact.obj))
        places = _mentions(toks, _names(fact.rec))
        if not objs or not places or _hedged(toks, clause):
            continue
        if _other_instance(objs, hidden) or _other_instance(places, recs):
            continue
        return True
    return False


def _content_tokens(text_n: str) -> set[str]:
    return {t for t in text_n.split() if len(t) >= 3 and t not in _STOP}


def _long_leak(secret_n: str, reason_n: str, visible_n: str) -> bool:
    if len(secret_n) < LONG_SECRET_CHARS:
        return False
    if len(reason_n) >= len(secret_n) and fuzz.partial_ratio(secret_n, reason_n) >= 90:
        return True
    private = _content_tokens(secret_n) - _content_tokens(visible_n)
    if len(private) >= 3:
        named = private & _content_tokens(reason_n)
        return len(named) / len(private) >= 0.8
    return False


def distinct_facts(secrets: list[str]) -> list[str]:
    """One phrasing per hidden fact ("apple 1 is in fridge 1", not also "apple is on fridge 1"...)."""
    parsed = [(s, _Fact.parse(normalize(s))) for s in secrets]
    numbered = {(f.obj, f.rec, f.rec_num) for _, f in parsed if f is not None and f.obj_num}
    seen: set[object] = set()
    out: list[str] = []
    for s, f in parsed:
        if f is None:
            key: object = normalize(s)
        elif f.obj_num is None and (f.obj, f.rec, f.rec_num) in numbered:
            continue  # the numbered phrasing says more
        else:
            key = (f.obj, f.obj_num, f.rec, f.rec_num)
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out


def unobserved_secrets(ctx: StepContext) -> list[str]:
    """The privileged facts the student has not observed at this step (per-step list first)."""
    step = ctx.privileged or {}
    if isinstance(step.get("secrets"), list):
        return [str(s) for s in step["secrets"]]
    return list(ctx.privileged_state.secrets) if ctx.privileged_state else []


def find_leaks(reason: str, ctx: StepContext) -> list[str]:
    """The privileged facts (secrets, as given) that ``reason`` states outright; [] when none."""
    reason_n = normalize(reason)
    if not reason_n:
        return []
    padded = f" {reason_n} "
    clauses = _clauses(reason)
    # What the student has seen is not privileged (e.g. a product title on a results page).
    visible_n = normalize(
        " ".join([ctx.task.instruction, *(s.observation for s in ctx.history), ctx.observation])
    )
    visible_padded = f" {visible_n} "
    secrets = [(secret, normalize(secret)) for secret in unobserved_secrets(ctx)]
    secrets = [(secret, s) for secret, s in secrets if f" {s} " not in visible_padded]
    facts = {s: _Fact.parse(s) for _, s in secrets}
    known = [f for f in facts.values() if f is not None]
    leaks: list[str] = []
    for secret, s in secrets:
        if len(s) < 3 or secret in leaks:
            continue
        fact = facts[s]
        if (
            f" {s} " in padded
            or (fact is not None and _relation_leak(fact, known, clauses))
            or (fact is None and _long_leak(s, reason_n, visible_n))
        ):
            leaks.append(secret)
    return leaks


# ---------------------------------------------------------------- leak rates per privilege level

LeakSample = Correction | tuple[int, str, StepContext]


def leak_rates(samples: Iterable[LeakSample]) -> dict[int, float]:
    """Fraction of reasons that leak, per privilege level.

    A sample is a Correction (its ``leaked`` flag, set by the correct stage; failed ones are
    skipped) or a ``(level, reason, ctx)`` tuple checked here.
    """
    counts: dict[int, list[int]] = {}
    for s in samples:
        if isinstance(s, Correction):
            if s.teacher is None:
                continue
            level, leaked = s.privilege_level, s.leaked
        else:
            level, reason, ctx = s
            leaked = bool(find_leaks(reason, ctx))
        c = counts.setdefault(level, [0, 0])
        c[0] += int(leaked)
        c[1] += 1
    return {lvl: round(k / n, 4) for lvl, (k, n) in sorted(counts.items())}


def measure_leak_rates(
    make_teacher: Callable[[int], Teacher],
    contexts: Sequence[StepContext],
    levels: Iterable[int] = range(5),
    students: Sequence[StepLabel | None] | None = None,
) -> dict[int, dict[str, Any]]:
    """Run a teacher at each privilege level on the same steps and report how often it leaks.

    E.g. ``measure_leak_rates(OracleTeacher, contexts_from_trajectory(t, ps))`` on a few ALFWorld
    trajectories. Returns {level: {"rate", "leaked", "n", "errors", "examples"}}.
    """
    students = list(students) if students is not None else [None] * len(contexts)
    report: dict[int, dict[str, Any]] = {}
    for level in levels:
        teacher = make_teacher(level)
        results = teacher.correct(list(zip(contexts, students, strict=True)))
        leaked, n, errors, examples = 0, 0, 0, []
        for ctx, res in zip(contexts, results, strict=True):
            if isinstance(res, TeacherError):
                errors += 1
                continue
            n += 1
            terms = find_leaks(res.reason, ctx)
            if terms:
                leaked += 1
                if len(examples) < 3:
                    examples.append({"reason": res.reason, "leaks": terms})
        report[level] = {
            "rate": round(leaked / n, 4) if n else None,
            "leaked": leaked,
            "n": n,
            "errors": errors,
            "examples": examples,
        }
    return report
