"""The InterCode-Bash oracle teacher (registered as the "intercode" oracle).

- λ0: never looks at the gold command. It runs one generic command built from the query (a path
  it names, a few keywords: count / find / size / show) and then submits: a weak baseline.
- λ1..λ3: runs the gold command (``cd / && <gold>`` if the episode's cwd is not /, since gold
  commands are meant to run at /), then submits once the gold command was the last one run. The
  reason never quotes the gold command: λ1 says only that one command answers the request, λ2
  restates the request (which the student sees), λ3 adds which programs do the work (a hint).
- λ4: states the reference command in the reason.
"""

from __future__ import annotations

import re

from leap.agent import StepContext
from leap.records import StepLabel

SUBMIT = "submit"
_PATH = re.compile(r"(?<![\w.])(/[\w.+-]+(?:/[\w.+-]+)*/?)")
_EXT = re.compile(r"(?<![\w/])\*?\.([A-Za-z][A-Za-z0-9]{0,5})\b")
_SEGMENT = re.compile(r"\|\||&&|[|;]|\$\(|`|-exec(?:dir)?\s")


def _gold(ctx: StepContext) -> str | None:
    if ctx.privileged_state is not None and ctx.privileged_state.facts.get("gold"):
        return str(ctx.privileged_state.facts["gold"])
    if ctx.privileged and ctx.privileged.get("gold"):
        return str(ctx.privileged["gold"])
    return None


def _goal(query: str, limit: int = 160) -> str:
    q = " ".join(query.split()).rstrip(".")
    q = q[:limit].rsplit(" ", 1)[0] + " ..." if len(q) > limit else q
    return q[:1].lower() + q[1:]


def programs(command: str) -> list[str]:
    """The programs a command line runs, in order, without repeats (e.g. ['find', 'xargs', 'wc'])."""
    out: list[str] = []
    for seg in _SEGMENT.split(command):
        words = [w for w in seg.strip().split() if "=" not in w.split("/")[0]]
        if words:
            name = words[0].strip("'\"(){}")
            if re.fullmatch(r"[a-z][\w.+-]*", name) and name not in out:
                out.append(name)
    return out


def generic_command(query: str) -> str:
    """λ0: a sensible first command from the query alone."""
    q = query.lower()
    paths = [p.rstrip(".") for p in _PATH.findall(query)]
    where = paths[0] if paths else "."
    ext = _EXT.search(query)
    name = f" -name '*.{ext.group(1)}'" if ext else ""
    is_file = bool(paths) and "." in where.rsplit("/", 1)[-1]
    if is_file and any(w in q for w in ("content", "print", "show", "display", "line", "read")):
        return f"cat {where}"
    if any(w in q for w in ("count", "number of", "how many")):
        return f"find {where}{name} -type f | wc -l"
    if any(w in q for w in ("size", "disk usage", "space")):
        return f"du -sh {where}"
    if any(w in q for w in ("find", "search", "locate")) or ("files" in q and not q.startswith("list")):
        return f"find {where}{name} -type f"
    return f"ls -la {where}"


def _level0(ctx: StepContext) -> StepLabel:
    if ctx.history:
        return StepLabel(
            reason="I have run a command for the request and seen its output, so I submit this as my answer.",
            action=SUBMIT,
        )
    cmd = generic_command(ctx.task.instruction)
    return StepLabel(
        reason=f"The task is to {_goal(ctx.task.instruction)}. I start with a standard command "
        "for this and look at what it prints.",
        action=cmd,
    )


def oracle(ctx: StepContext, student: StepLabel | None, level: int) -> StepLabel:
    gold = _gold(ctx)
    if level == 0 or gold is None:
        return _level0(ctx)
    cwd = (ctx.privileged or {}).get("cwd", "/")
    run_gold = gold if cwd == "/" else f"cd / && {gold}"
    last = ctx.history[-1].action.strip() if ctx.history else None
    if last in (gold.strip(), f"cd / && {gold}".strip()):
        if level >= 4:
            reason = f"I ran the reference command `{gold}` and it did what the request asks, so I submit."
        else:
            reason = "The last command did what the request asks and its output answers it, so I submit."
        return StepLabel(reason=reason, action=SUBMIT)
    back = " I work from / since the request's paths are given from there." if run_gold != gold else ""
    goal = _goal(ctx.task.instruction)
    if level == 1:
        reason = "One command can do what the request asks; I run it and check its output."
    elif level == 2:
        reason = f"The task is to {goal}. I can do this in a single command and then check the output."
    elif level == 3:
        tools = programs(gold)
        uses = ", ".join(f"`{t}`" for t in tools[:4])
        reason = (
            f"The task is to {goal}. The right tool{'s' if len(tools) > 1 else ''} for this "
            f"{'are' if len(tools) > 1 else 'is'} {uses}, so I run a command built on "
            f"{'them' if len(tools) > 1 else 'it'}."
        )
    else:
        reason = f"The reference solution for this task is `{gold}`, so I run exactly that."
    return StepLabel(reason=reason + back, action=run_gold)
