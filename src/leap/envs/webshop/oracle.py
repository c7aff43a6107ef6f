"""The WebShop oracle teacher (the `oracle` of the webshop registration).

It rebuilds what the student sees from the observation, the admissible actions and the
history (:func:`leap.envs.webshop.view.parse_view`), reads the hidden goal from the
privileged state (or the step's ``info["privileged"]``) and decides with
:func:`leap.envs.webshop.policy.decide`. With no privileged facts available it acts as λ0.
"""

from __future__ import annotations

from leap.agent import StepContext
from leap.envs.webshop.policy import Target, decide
from leap.envs.webshop.view import parse_view
from leap.records import StepLabel


def _target(ctx: StepContext) -> Target | None:
    if ctx.privileged_state is not None:
        target = Target.from_facts(ctx.privileged_state.facts)
        if target is not None:
            return target
    return Target.from_facts(ctx.privileged)


def webshop_oracle(ctx: StepContext, student: StepLabel | None, level: int) -> StepLabel:
    view = parse_view(ctx.observation, ctx.admissible_actions, ctx.history)
    target = _target(ctx) if level >= 1 else None
    reason, action = decide(view, ctx.task.instruction, target, level)
    return StepLabel(reason=reason, action=action)
