"""What an agent can know from the text alone: the goal, and the room as observed so far.

Rebuilt from scratch from the observation/action history on every call (deterministic, no hidden
state), and used by the oracle at every level: it is the only knowledge the λ0 oracle has, and
it decides which facts higher levels may mention without revealing anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

from leap.envs.alfworld.params import TASK_TYPES

# goal templates of alfworld.gen.goal_library, most specific first
_GOALS = [
    ("pick_clean_then_place_in_recep", r"put a clean (\w+) (?:in|on) (\w+)"),
    ("pick_clean_then_place_in_recep", r"clean (?:some|a|the) (\w+) and put it (?:in|on) (\w+)"),
    ("pick_heat_then_place_in_recep", r"put a hot (\w+) (?:in|on) (\w+)"),
    ("pick_heat_then_place_in_recep", r"heat (?:some|a|the) (\w+) and put it (?:in|on) (\w+)"),
    ("pick_cool_then_place_in_recep", r"put a cool (\w+) (?:in|on) (\w+)"),
    ("pick_cool_then_place_in_recep", r"cool (?:some|a|the) (\w+) and put it (?:in|on) (\w+)"),
    ("pick_two_obj_and_place", r"put two (\w+) (?:in|on) (\w+)"),
    ("pick_two_obj_and_place", r"find two (\w+) and put them (?:in|on) (\w+)"),
    ("look_at_obj_in_light", r"look at (?:the |a |some )?(\w+) under the (\w+)"),
    ("look_at_obj_in_light", r"examine the (\w+) with the (\w+)"),
    ("pick_and_place_simple", r"put (?:a|some|the) (\w+) (?:in|on) (\w+)"),
]
APPLIANCE = {
    "pick_clean_then_place_in_recep": ("sinkbasin", "clean"),
    "pick_heat_then_place_in_recep": ("microwave", "heat"),
    "pick_cool_then_place_in_recep": ("fridge", "cool"),
}
LAMP_HOLDERS = ("desk", "sidetable", "dresser", "shelf", "nightstand")
_CONTENTS = re.compile(r"(?:On the (.+?), you see|The (.+?) is open\. In it, you see) (.*?)\.(?:\s|$)")
# The optional memory line the environment may append to an observation (env.alfworld.memory): what
# the agent has looked into so far, from what it was shown. Nothing in it is hidden.
MEMORY_PREFIXES = {
    "checked": "Checked so far: ",
    "unchecked": "Not checked yet: ",
    "ranked": "Not checked yet, likeliest first: ",
    "ranked_seen": "Not checked yet, likeliest first: ",  # + where what the task needs was seen
    "ranked_held": "Not checked yet, likeliest first: ",  # + what the agent holds
}
# kinds in search order, shown from the first observation
RANKED = frozenset({"ranked", "ranked_seen", "ranked_held"})


def memory_line(b: Belief, kind: str, goal: Goal | None = None) -> str:
    """``checked``: the receptacles whose contents the agent has seen, in the order it first saw them;
    ``unchecked``: the room's receptacles whose contents it has not seen yet (closed ones stay until
    opened); ``ranked``: the same, in the order common sense would search them for what ``goal``
    still needs (:func:`search_order`); ``ranked_seen``: ``ranked`` and :func:`seen_clause`;
    ``ranked_held``: ``ranked`` and what the agent holds. "" where there is nothing to say."""
    if kind == "checked":
        return MEMORY_PREFIXES[kind] + ", ".join(b.contents) + "." if b.contents else ""
    if kind in ("unchecked", *RANKED):
        if kind in RANKED and goal is not None:
            rest = [r for group in search_order(b, goal) for r in group]
        else:
            rest = [r for r in b.receptacles if not b.visited(r)]
        line = MEMORY_PREFIXES[kind] + (", ".join(rest) if rest else "nothing") + "."
        if kind == "ranked_held":
            # what it holds, from its own "You pick up"/"You move" lines: a small student loses track
            # and writes "I put the pot in ..." while holding a tomato
            return f"{line} Holding: {b.held or 'nothing'}."
        return line + (seen_clause(b, goal) if kind == "ranked_seen" and goal is not None else "")
    return ""


def seen_clause(b: Belief, goal: Goal) -> str:
    """ " Seen: laptop 1 at desk 1." — where the agent has seen what the goal still needs (the object,
    or the lamp once a look-at task's object is held), leaving out what it already delivered to the
    goal's receptacle. Only shown text: the history holds it too, but a small student loses it there
    (two-object tasks: it forgets the second laptop on the desk it checked and searches elsewhere)."""
    what = looking_for(b, goal)
    if b.held and cls_of(b.held) == what and goal.task_type != "pick_two_obj_and_place":
        return ""  # it holds what it needs; other copies would only distract
    found = [f"{o} at {r}" for o, r in b.known_objects(what) if not goal.recep or cls_of(r) != goal.recep]
    return f" Seen: {', '.join(found)}." if found else ""


def num_key(name: str) -> tuple[str, int]:
    """ "drawer 10" sorts after "drawer 2"."""
    cls, _, num = name.rpartition(" ")
    return (cls, int(num)) if num.isdigit() else (name, 0)


def explore_groups(b: Belief, avoid: str, prefer: frozenset[str]) -> list[list[str]]:
    """Unchecked receptacles, grouped by how plausible the prior finds them (best group first): classes
    in ``prefer`` before the others, open surfaces before closed containers, ``avoid`` (the goal's own
    receptacle class) last; by name within a group."""
    cands = sorted((r for r in b.receptacles if not b.visited(r)), key=num_key)
    groups: dict[tuple[bool, bool, bool], list[str]] = {}
    for r in cands:
        c = cls_of(r)
        groups.setdefault((c == avoid, c not in prefer, c in openable_classes()), []).append(r)
    return [groups[k] for k in sorted(groups)]


def looking_for(b: Belief, goal: Goal) -> str:
    """What a search would be for now: the lamp once a look-at task's object is held, else the object."""
    if goal.task_type == "look_at_obj_in_light" and goal.toggle and b.held and cls_of(b.held) == goal.obj:
        return goal.toggle
    return goal.obj


def search_order(b: Belief, goal: Goal, what: str | None = None) -> list[list[str]]:
    """:func:`explore_groups` for ``what`` (default: what the goal still needs, :func:`looking_for`):
    the λ0 oracle searches in this order, and the ``ranked`` memory line lists it."""
    what = looking_for(b, goal) if what is None else what
    return explore_groups(b, goal.recep, search_prior(goal, what))


def search_prior(goal: Goal, what: str) -> frozenset[str]:
    """Receptacle classes a search for ``what`` tries first (lamp holders for the goal's lamp)."""
    return frozenset(LAMP_HOLDERS) if goal.toggle and what == goal.toggle else likely_receptacles(what)


def strip_memory(text: str) -> str:
    """The observation without the environment's memory line (the engine's own text)."""
    for prefix in MEMORY_PREFIXES.values():
        head, sep, tail = text.rpartition("\n" + prefix)
        if sep and "\n" not in tail:
            return head
    return text


@dataclass(frozen=True)
class Goal:
    task_type: str
    obj: str  # lower-case class, e.g. "apple"
    recep: str = ""  # receptacle class for placing tasks
    toggle: str = ""  # lamp class for look_at tasks


def parse_goal(instruction: str, category: str | None = None) -> Goal:
    """The goal from its sentence (alfworld's templates); ``category`` helps with free-form goals."""
    text = instruction.lower().strip().rstrip(".")
    text = text.split("your task is to:")[-1].strip()
    for task_type, pattern in _GOALS:
        m = re.search(pattern, text)
        if m:
            a, b = m.group(1), m.group(2)
            if task_type == "look_at_obj_in_light":
                return Goal(task_type, a, toggle=b)
            return Goal(task_type, _singular(a), recep=b)
    # free-form (human-written) goals: the category and the first known class names in the text
    words = re.findall(r"[a-z]+", text)
    known = [w for w in words if _singular(w) in _object_classes()]
    task_type = category if category in TASK_TYPES else "pick_and_place_simple"
    obj = _singular(known[0]) if known else (words[-1] if words else "")
    receps = [w for w in words if w in _receptacle_classes()]
    if task_type == "look_at_obj_in_light":
        return Goal(task_type, obj, toggle="desklamp")
    return Goal(task_type, obj, recep=receps[-1] if receps else "")


def _singular(word: str) -> str:
    if word in _object_classes() or not word.endswith("s"):
        return word
    return word[:-1] if word[:-1] in _object_classes() else word


@cache
def _object_classes() -> frozenset[str]:
    import alfworld.gen.constants as c

    return frozenset(o.lower() for o in c.OBJECTS)


@cache
def _receptacle_classes() -> frozenset[str]:
    import alfworld.gen.constants as c

    return frozenset(r.lower() for r in c.RECEPTACLES)


@cache
def likely_receptacles(obj: str) -> frozenset[str]:
    """Receptacle classes that commonly hold ``obj`` (alfworld.gen.constants), lower case."""
    import alfworld.gen.constants as c

    return frozenset(
        r.lower() for r, objs in c.VAL_RECEPTACLE_OBJECTS.items() if obj in {o.lower() for o in objs}
    )


@cache
def openable_classes() -> frozenset[str]:
    import alfworld.gen.constants as c

    return frozenset(o.lower() for o in c.OPENABLE_CLASS_LIST)


def cls_of(name: str) -> str:
    """ "apple 1" -> "apple"."""
    return name.rsplit(" ", 1)[0] if name[-1:].isdigit() else name


def _items(listing: str) -> list[str]:
    listing = listing.strip().rstrip(".")
    if listing in ("", "nothing"):
        return []
    out = []
    for part in listing.split(", "):
        part = re.sub(r"^(?:and )?(?:a|an|some) ", "", part.strip())
        if part:
            out.append(part)
    return out


@dataclass
class Belief:
    receptacles: list[str] = field(default_factory=list)
    at: str | None = None
    contents: dict[str, list[str]] = field(default_factory=dict)  # last seen contents
    closed: set[str] = field(default_factory=set)  # seen closed, not opened since
    opened: set[str] = field(default_factory=set)
    held: str | None = None
    processed: dict[str, set[str]] = field(default_factory=dict)  # object -> {"clean", "heat", "cool"}
    placed: list[tuple[str, str]] = field(default_factory=list)  # (object, receptacle) the agent put down
    taken_from: dict[str, str] = field(default_factory=dict)
    lamps: dict[str, str] = field(default_factory=dict)  # lamp -> receptacle where seen
    used_lamp: bool = False
    steps: int = 0

    def visited(self, recep: str) -> bool:
        return recep in self.contents

    def known_objects(self, cls: str) -> list[tuple[str, str]]:
        return [(o, r) for r, objs in self.contents.items() for o in objs if cls_of(o) == cls]

    def observe(self, obs: str) -> None:
        obs = strip_memory(obs)
        if "you see" in obs and "Looking quickly around you" in obs:
            m = re.search(r"Looking quickly around you, you see (.*?)\.(?:\n|$)", obs)
            if m:
                self.receptacles = _items(m.group(1))
        for m in _CONTENTS.finditer(obs):
            recep = m.group(1) or m.group(2)
            self.contents[recep] = _items(m.group(3))
            self.closed.discard(recep)
            if m.group(2):
                self.opened.add(recep)
            for o in self.contents[recep]:
                if cls_of(o) in ("desklamp", "floorlamp"):
                    self.lamps[o] = recep
        for m in re.finditer(r"The (.+?) is closed\.", obs):
            if m.group(1) not in self.opened:
                self.closed.add(m.group(1))

    def apply(self, action: str, result: str) -> None:
        """Update with an action and the observation it produced."""
        self.steps += 1
        result = strip_memory(result)
        if result.strip() == "Nothing happens.":
            return
        if action.startswith("go to "):
            self.at = action[len("go to ") :]
        elif action.startswith("examine ") and re.match(r"(On the|The) ", result):
            self.at = action[len("examine ") :]  # receptacles sharing a spot are examined, not gone to
        m = re.match(r"You pick up the (.+?) from the (.+?)\.", result)
        if m:
            obj, recep = m.groups()
            self.held = obj
            self.taken_from[obj] = recep
            if obj in self.contents.get(recep, []):
                self.contents[recep].remove(obj)
        m = re.match(r"You move the (.+?) to the (.+?)\.", result)
        if m:
            obj, recep = m.groups()
            self.held = None
            self.contents.setdefault(recep, []).append(obj)
            self.placed.append((obj, recep))
        m = re.match(r"You (heat|cool|clean) the (.+?) using the (.+?)\.", result)
        if m:
            self.processed.setdefault(m.group(2), set()).add(m.group(1))
        if result.startswith("You turn on the "):
            self.used_lamp = True
        if result.startswith("You close the "):
            recep = result[len("You close the ") :].rstrip(".")
            self.opened.discard(recep)
            self.closed.add(recep)
        self.observe(result)


def build_belief(history_obs: list[str], history_actions: list[str], observation: str) -> Belief:
    """Belief after the history (each step: observation seen, then action) and the current observation."""
    b = Belief()
    if history_obs:
        b.observe(history_obs[0])
        results = [*history_obs[1:], observation]
        for action, result in zip(history_actions, results, strict=True):
            b.apply(action, result)
    else:
        b.observe(observation)
    return b
