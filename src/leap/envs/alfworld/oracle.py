"""The ALFWorld oracle teacher at privilege levels λ0..λ4.

Every level first rebuilds what the agent can know from the text (:mod:`belief`: the goal sentence,
the receptacles, what was seen where, what is held). Then:

- **λ0** reads nothing privileged (neither ``ctx.privileged`` nor ``ctx.privileged_state``). It
  explores with common-sense priors — receptacles that ``alfworld.gen.constants`` says can hold the
  object first (open surfaces before closed containers, the goal's own receptacle class last),
  opening closed ones — takes the object once seen, cleans/heats/cools it at the sink basin,
  microwave or fridge, places it (twice for "two" tasks) or carries it to a desk lamp and uses
  the lamp. Its reasons are built from visible facts only.
- **λ1** acts as λ0 except when exploring: among the unchecked receptacles that λ0's prior ranks
  equally plausible, it picks the one the privileged expert heads for (a lucky but realizable
  choice). Reasons are λ0's.
- **λ2** follows the privileged expert's action (``ctx.privileged["expert_action"]``) whenever it is
  admissible, else λ0's. Reasons stay realizable: a search step is justified by what the student
  could know ("fridge 1 is still unchecked"), never by where the object is.
- **λ3** acts as λ2; a search step may carry a hedged hint ("the apple is likely in fridge 1").
- **λ4** acts as λ2 and states the hidden fact outright, using the environment's secret phrase
  ("apple 1 is in fridge 1, so I go there.").

Reasons are one short sentence (<= 25 words), varied by a stable hash of (task, step, kind), so the
same state always gets the same reason. At λ0..λ2 a reason never contains a secret phrase nor the
expert's command verbatim (commands are paraphrased: "I head to", "I open it", "I use X to heat Y").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from leap.agent import StepContext
from leap.envs.alfworld.belief import (
    APPLIANCE,
    LAMP_HOLDERS,
    Belief,
    Goal,
    build_belief,
    cls_of,
    likely_receptacles,
    num_key,
    openable_classes,
    parse_goal,
    search_order,
    search_prior,
)
from leap.envs.alfworld.env import normalize_action
from leap.records import StepLabel

LOOK = "look_at_obj_in_light"
TWO = "pick_two_obj_and_place"


@dataclass
class Decision:
    action: str
    kind: str
    args: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- the visible (λ0) policy


def _explore(b: Belief, goal: Goal, looking_for: str, pick: str | None = None) -> Decision:
    if b.at and b.at in b.closed and not b.visited(b.at):
        return Decision(f"open {b.at}", "open_explore", {"recep": b.at, "what": looking_for})
    lamp = bool(goal.toggle) and looking_for == goal.toggle
    prefer = search_prior(goal, looking_for)
    groups = search_order(b, goal, looking_for)  # the order of env.alfworld.memory: ranked
    if not groups:
        return Decision("look", "generic")
    recep = pick if pick in groups[0] else groups[0][0]
    kind = "explore_lamp" if lamp else "explore"
    return Decision(
        f"go to {recep}", kind, {"recep": recep, "what": looking_for, "prior": str(cls_of(recep) in prefer)}
    )


def _fetch(b: Belief, goal: Goal, pick: str | None = None) -> Decision:
    known = b.known_objects(goal.obj)
    if goal.task_type in (TWO, "pick_and_place_simple"):  # already where it belongs: leave it
        known = [(o, r) for o, r in known if cls_of(r) != goal.recep]
    if known:
        here = [(o, r) for o, r in known if r == b.at]
        obj, recep = (here or sorted(known, key=lambda x: (num_key(x[1]), num_key(x[0]))))[0]
        if recep == b.at:
            return Decision(f"take {obj} from {recep}", "take", {"obj": obj, "recep": recep})
        return Decision(f"go to {recep}", "goto_known", {"obj": obj, "recep": recep})
    return _explore(b, goal, goal.obj, pick)


def _deliver(b: Belief, goal: Goal, held: str) -> Decision:
    parents = sorted((r for r in b.receptacles if cls_of(r) == goal.recep), key=num_key)
    if not parents:
        return Decision("look", "generic")
    target = b.at if b.at in parents else parents[0]
    if b.at != target:
        return Decision(f"go to {target}", "goto_parent", {"obj": held, "recep": target})
    if target in b.closed:
        return Decision(f"open {target}", "open_parent", {"obj": held, "recep": target})
    return Decision(f"move {held} to {target}", "put", {"obj": held, "recep": target})


def decide_visible(goal: Goal, b: Belief, pick: str | None = None) -> Decision:
    """λ0's choice. ``pick``: a receptacle to prefer among equally plausible unchecked ones (λ1)."""
    held = b.held
    if held and cls_of(held) != goal.obj:
        if b.at:
            return Decision(f"move {held} to {b.at}", "putback", {"obj": held, "recep": b.at})
        back = b.taken_from.get(held, "")
        return Decision(f"go to {back}", "goto_putback", {"obj": held, "recep": back})
    if goal.task_type == LOOK:
        if not held:
            return _fetch(b, goal, pick)
        lamps = sorted(b.lamps.items(), key=lambda x: (x[1] != b.at, num_key(x[0])))
        if lamps:
            lamp, recep = lamps[0]
            if recep == b.at:
                return Decision(f"use {lamp}", "use_lamp", {"lamp": lamp, "obj": held})
            return Decision(f"go to {recep}", "goto_lamp_known", {"lamp": lamp, "recep": recep, "obj": held})
        return _explore(b, goal, goal.toggle, pick)
    if held and goal.task_type in APPLIANCE:
        appliance, verb = APPLIANCE[goal.task_type]
        if verb not in b.processed.get(held, set()):
            apps = sorted((r for r in b.receptacles if cls_of(r) == appliance), key=num_key)
            if not apps:
                return Decision("look", "generic")
            app = b.at if b.at in apps else apps[0]
            if app == b.at:
                args = {"obj": held, "recep": app, "verb": verb}
                return Decision(f"{verb} {held} with {app}", "process", args)
            return Decision(f"go to {app}", "goto_appliance", {"obj": held, "recep": app, "verb": verb})
    if held:
        return _deliver(b, goal, held)
    return _fetch(b, goal, pick)


def make_admissible(d: Decision, goal: Goal, b: Belief, admissible: set[str]) -> Decision:
    """Keep ``d`` if the engine accepts it; receptacles sharing the agent's spot are examined instead."""
    if not admissible or d.action in admissible:
        return d
    if d.action.startswith("go to ") and f"examine {d.action[6:]}" in admissible:
        return Decision(f"examine {d.action[6:]}", d.kind, d.args)
    gos = (a for a in admissible if a.startswith("go to ") and not b.visited(a[6:]))
    unchecked = sorted(gos, key=num_key)
    if unchecked:
        recep = unchecked[0][len("go to ") :]
        prior = str(cls_of(recep) in likely_receptacles(goal.obj))
        return Decision(unchecked[0], "explore", {"recep": recep, "what": goal.obj, "prior": prior})
    return Decision("look", "generic")


# ---------------------------------------------------------------- following the privileged expert


def classify(action: str, goal: Goal, b: Belief) -> Decision:
    """Name the expert's action in terms of what the agent can see (decides how to explain it)."""
    held = b.held
    if action.startswith("go to "):
        recep = action[len("go to ") :]
        c = cls_of(recep)
        args = {"recep": recep, "what": goal.obj, "prior": str(c in likely_receptacles(goal.obj))}
        if held and cls_of(held) != goal.obj:
            return Decision(action, "goto_putback", {"obj": held, "recep": recep})
        if held:
            if goal.task_type in APPLIANCE and c == APPLIANCE[goal.task_type][0]:
                return Decision(
                    action,
                    "goto_appliance",
                    {"obj": held, "recep": recep, "verb": APPLIANCE[goal.task_type][1]},
                )
            if goal.task_type == LOOK:
                lamp = next((lp for lp, r in b.lamps.items() if r == recep), None)
                if lamp:
                    return Decision(action, "goto_lamp_known", {"lamp": lamp, "recep": recep, "obj": held})
                return Decision(
                    action, "explore_lamp", {**args, "what": goal.toggle, "prior": str(c in LAMP_HOLDERS)}
                )
            return Decision(action, "goto_parent", {"obj": held, "recep": recep})
        seen = [o for o, r in b.known_objects(goal.obj) if r == recep]
        if seen:
            return Decision(action, "goto_known", {"obj": seen[0], "recep": recep})
        return Decision(action, "explore", args)
    if action.startswith("open "):
        recep = action[len("open ") :]
        if held and cls_of(held) == goal.obj:
            return Decision(action, "open_parent", {"obj": held, "recep": recep})
        what = goal.toggle if goal.task_type == LOOK and held else goal.obj
        return Decision(action, "open_explore", {"recep": recep, "what": what})
    if action.startswith("take "):
        obj, _, recep = action[len("take ") :].partition(" from ")
        return Decision(action, "take", {"obj": obj, "recep": recep})
    if action.startswith("move "):
        obj, _, recep = action[len("move ") :].partition(" to ")
        kind = "put" if cls_of(obj) == goal.obj else "putback"
        return Decision(action, kind, {"obj": obj, "recep": recep})
    for verb in ("heat", "cool", "clean"):
        if action.startswith(verb + " "):
            obj, _, recep = action[len(verb) + 1 :].partition(" with ")
            return Decision(action, "process", {"obj": obj, "recep": recep, "verb": verb})
    if action.startswith("use "):
        return Decision(action, "use_lamp", {"lamp": action[4:], "obj": held or goal.obj})
    return Decision(action, "generic")


# ---------------------------------------------------------------- reasons

_TEMPLATES: dict[str, list[str]] = {
    "explore_prior": [
        "{A_what} is often kept in {a_rcls}, and I have not checked {recep} yet.",
        "I still need {a_what}; {recep} is a sensible place to look.",
        "{Rcls_pl} often hold {a_what}, so I check {recep} next.",
    ],
    "explore_plain": [
        "I have not found {a_what} yet, and {recep} is still unchecked.",
        "No {what} so far; I check {recep}, which I have not searched.",
    ],
    "explore_hint": [
        "The {what} is likely in {recep}, so I head there.",
        "{Recep} is the most likely place for the {what}; I check it.",
    ],
    "open_plain": [
        "{Recep} is closed; I open it to see what is inside.",
        "I cannot see inside {recep}, so I open it.",
    ],
    "open_hint": ["The {what} is likely inside {recep}, so I open it."],
    "goto_known": [
        "I saw {obj} in {recep} earlier, so I head back for it.",
        "{Obj} was in {recep} when I looked, so I return there.",
    ],
    "take": [
        "I found {obj} here, so I pick it up.",
        "{Obj} is right here; I take it.",
    ],
    "take_unprocessed": [
        "{Obj} is here but not {state} yet, so I take it to {verb} it first.",
        "{Obj} must be {state} before it goes to {recep}, so I pick it up.",
    ],
    "goto_appliance": [
        "I need to {verb} the {cls}, so I head to {recep}.",
        "Next I {verb} the {cls}; {recep} is the place for that.",
    ],
    "process": [
        "I use {recep} to {verb} {obj} as the task asks.",
        "Now I {verb} {obj} using {recep}.",
    ],
    "goto_parent": [
        "I have the {cls}; now I bring it to {recep}.",
        "With {obj} in hand, I head to {recep} to place it.",
    ],
    "goto_parent_done": [
        "The {cls} is {state} now, so I bring it to {recep}.",
        "{Obj} is {state}; I carry it to {recep}.",
    ],
    "open_parent": ["{Recep} is closed; I open it so I can put {obj} inside."],
    "put": [
        "I put {obj} in {recep} to finish the task.",
        "Placing {obj} in {recep} completes the goal.",
    ],
    "put_first": ["I put {obj} in {recep}; I still need a second {cls}."],
    "goto_lamp_known": ["I saw {lamp} in {recep}, so I take the {cls} there."],
    "explore_lamp_prior": [
        "I need a desklamp; {a_rcls} often has one, and {recep} is unchecked.",
        "To look at the {cls} I need a lamp; I check {recep}.",
    ],
    "explore_lamp_plain": ["I still need a lamp to look at the {cls}; {recep} is unchecked."],
    "explore_lamp_hint": ["A desklamp is likely in {recep}, so I head there with the {cls}."],
    "use_lamp": [
        "I turn on {lamp} to look at the {cls} under its light.",
        "Holding the {cls}, I switch on {lamp} to examine it.",
    ],
    "putback": ["{Obj} is not what I need, so I put it down here."],
    "goto_putback": ["{Obj} is not what I need; I head to {recep} to put it down."],
    "generic": ["I look around to get my bearings."],
}
_STATE = {"heat": "hot", "cool": "cool", "clean": "clean"}
_HINTS = {"explore": "explore_hint", "open_explore": "open_hint", "explore_lamp": "explore_lamp_hint"}


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _plural(word: str) -> str:
    if word.endswith("f"):
        return word[:-1] + "ves"
    return word + ("es" if word.endswith(("s", "sh", "ch", "x")) else "s")


def _pick(options: list[str], key: str) -> str:
    h = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    return options[h % len(options)]


def _fill(template: str, args: dict[str, str]) -> str:
    text = template.format(**args)
    return text[0].upper() + text[1:]


def _secret_about(recep: str, secrets: list[str]) -> str | None:
    """The environment's phrase naming an object hidden in ``recep`` (e.g. "apple 1 is in fridge 1")."""
    prep = " is in " if cls_of(recep) in openable_classes() else " is on "
    for s in secrets:
        head, sep, tail = s.rpartition(prep)
        if sep and tail == recep and head[-1:].isdigit():
            return s
    return None


def write_reason(d: Decision, level: int, goal: Goal, b: Belief, key: str, secrets: list[str]) -> str:
    a = dict(d.args)
    recep = a.get("recep", "")
    obj = a.get("obj", "")
    a.setdefault("cls", cls_of(obj) if obj else goal.obj)
    a.setdefault("what", goal.obj)
    rcls = cls_of(recep)
    a.update(
        rcls=rcls,
        Recep=recep,
        Rcls_pl=_plural(rcls),
        Obj=obj,
        a_rcls=_a(rcls),
        a_what=_a(a["what"]),
        A_what=_a(a["what"]),
    )
    kind = d.kind
    if kind in ("explore", "open_explore", "explore_lamp") and level >= 3:
        fact = _secret_about(recep, secrets)
        if fact and level >= 4:
            verb = "open it" if kind == "open_explore" else "go there"
            return _fill(f"{fact}, so I {verb}.", a)
        if fact:
            kind = _HINTS[kind]
    if kind == "explore":
        kind = "explore_prior" if a.get("prior") == "True" else "explore_plain"
    elif kind == "explore_lamp":
        kind = "explore_lamp_prior" if a.get("prior") == "True" else "explore_lamp_plain"
    elif kind == "open_explore":
        kind = "open_plain"
    elif kind == "goto_parent" and goal.task_type in APPLIANCE:
        a["state"] = _STATE[APPLIANCE[goal.task_type][1]]
        kind = "goto_parent_done"
    elif kind == "take" and goal.task_type in APPLIANCE and rcls == goal.recep:
        verb = APPLIANCE[goal.task_type][1]  # e.g. taking back an apple put in the garbagecan uncooled
        if verb not in b.processed.get(obj, set()):
            a.update(state=_STATE[verb], verb=verb)
            kind = "take_unprocessed"
    elif kind == "put" and goal.task_type == TWO:
        placed = sum(1 for o, r in b.placed if cls_of(o) == goal.obj and cls_of(r) == goal.recep)
        kind = "put_first" if placed == 0 else "put"
    return _fill(_pick(_TEMPLATES[kind], f"{key}:{kind}"), a)


# ---------------------------------------------------------------- the oracle


def _belief(ctx: StepContext) -> Belief:
    obs = [s.observation for s in ctx.history]
    acts = [normalize_action(s.action) for s in ctx.history]  # as the environment read them
    b = build_belief(obs, acts, ctx.observation)
    if not b.receptacles:  # history windowed away from the first observation: use the commands
        gos = [a[len("go to ") :] for a in ctx.admissible_actions or [] if a.startswith("go to ")]
        b.receptacles = sorted(set(gos) | ({b.at} if b.at else set()), key=num_key)
    return b


def alfworld_oracle(ctx: StepContext, student: StepLabel | None, level: int) -> StepLabel:
    del student  # the oracle writes the step it would take; it does not grade the student's
    goal = parse_goal(ctx.task.instruction, ctx.task.category)
    b = _belief(ctx)
    admissible = set(ctx.admissible_actions or [])
    key = f"{ctx.task.task_id}:{len(ctx.history)}"
    if level == 0:  # nothing privileged is read on this path
        d = make_admissible(decide_visible(goal, b), goal, b, admissible)
        return StepLabel(reason=write_reason(d, 0, goal, b, key, []), action=d.action)
    priv = ctx.privileged or {}
    expert = priv.get("expert_action")
    secrets = list(priv.get("secrets") or [])
    usable = isinstance(expert, str) and (not admissible or expert in admissible)
    if level == 1:
        pick = expert[len("go to ") :] if usable and expert.startswith("go to ") else None
        d = decide_visible(goal, b, pick)
    else:
        d = classify(expert, goal, b) if usable else decide_visible(goal, b)
    d = make_admissible(d, goal, b, admissible)
    return StepLabel(reason=write_reason(d, level, goal, b, key, secrets), action=d.action)
