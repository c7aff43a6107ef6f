"""The agent vocabulary shared by every layer: step contexts, policies, teachers, oracles.

A *policy* writes a reason and an action for a step from what it is allowed to see.
A *teacher* relabels a student's step; it may read the privileged state. Both work
on batches so that LLM-backed implementations can generate or call in parallel. An
*oracle* is an environment's own privileged teacher, one function registered with the
environment (``leap.envs.base.register(..., oracle=...)``).

This module imports nothing of the project but :mod:`leap.records`, so environments,
students and teachers can all speak it without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from leap.records import PrivilegedState, Step, StepLabel, Task, Trajectory

PRIVILEGE_LEVELS = range(0, 5)  # λ0 (no privileged facts) .. λ4 (may state them freely)


@dataclass
class StepContext:
    """Everything known at one decision point of an episode."""

    task: Task
    history: list[Step]
    observation: str
    admissible_actions: list[str] | None = None
    # Teacher-only: the per-step snapshot from info["privileged"] and the task's hidden facts.
    privileged: dict[str, Any] | None = None
    privileged_state: PrivilegedState | None = None


@dataclass
class PolicyOutput:
    reason: str
    action: str
    raw_output: str | None = None
    parse_ok: bool = True
    meta: dict[str, Any] = field(default_factory=dict)


class PolicyUnavailable(RuntimeError):
    """A policy cannot answer at all (its inference server is down, or does not serve its model): the
    episode runner stops the stage (finished episodes stay journaled for the re-run) instead of
    recording every step as failed."""


class TeacherError(RuntimeError):
    """A teacher could not produce a correction (API error, timeout, unparsable reply)."""


@runtime_checkable
class Policy(Protocol):
    policy_id: str
    privileged: bool  # True: it reads ctx.privileged / ctx.privileged_state (teachers only)

    def act(self, contexts: list[StepContext]) -> list[PolicyOutput]: ...


@runtime_checkable
class Teacher(Protocol):
    teacher_id: str
    privilege_level: int

    def correct(self, items: list[tuple[StepContext, StepLabel | None]]) -> list[StepLabel | TeacherError]:
        """Relabel each (context, student step). ``student`` may be None (write a step from
        scratch: demonstrations, teacher-as-policy). Failures come back as TeacherError
        values, never raised, so one bad item does not lose the batch."""
        ...


class TeacherPolicy:
    """Use a teacher as a policy (demonstrations, the teacher-alone baseline)."""

    def __init__(self, teacher: Teacher, *, privileged: bool = True) -> None:
        self.teacher = teacher
        self.privileged = privileged
        self.policy_id = f"{teacher.teacher_id}:l{teacher.privilege_level}"

    def act(self, contexts: list[StepContext]) -> list[PolicyOutput]:
        if not self.privileged:
            contexts = [strip_privileged(c) for c in contexts]
        outs: list[PolicyOutput] = []
        for res in self.teacher.correct([(c, None) for c in contexts]):
            if isinstance(res, TeacherError):
                outs.append(PolicyOutput(reason="", action="", raw_output=str(res), parse_ok=False))
            else:
                outs.append(PolicyOutput(reason=res.reason, action=res.action))
        return outs


def strip_privileged(ctx: StepContext) -> StepContext:
    """The context without its teacher-only parts (what a student or a λ0 policy may see)."""
    return StepContext(
        task=ctx.task,
        history=ctx.history,
        observation=ctx.observation,
        admissible_actions=ctx.admissible_actions,
    )


def cycle_actions(history: list[Step], observation: str) -> list[str]:
    """Actions already chosen in this same situation: at an earlier step that saw ``observation``
    right after the same action as the last one. Choosing one again in a deterministic environment
    repeats a cycle (go to A, go to B, go to A, go to B, ...: a small greedy student's oscillation;
    with the same action twice in a row, its latching)."""
    if not history:
        return []
    last = history[-1].action
    return [
        history[s].action
        for s in range(1, len(history))
        if history[s].observation == observation and history[s - 1].action == last
    ]


# An environment's oracle: (context with the privileged state, the student's step or None, level) -> step.
OracleFn = Callable[[StepContext, StepLabel | None, int], StepLabel]


class FunctionTeacher:
    """A teacher from an oracle function (one environment's oracle at one privilege level)."""

    def __init__(self, oracle: OracleFn, privilege_level: int, teacher_id: str = "oracle") -> None:
        if privilege_level not in PRIVILEGE_LEVELS:
            raise ValueError(f"privilege_level must be 0..4, got {privilege_level}")
        self.oracle = oracle
        self.privilege_level = privilege_level
        self.teacher_id = teacher_id

    def correct(self, items: list[tuple[StepContext, StepLabel | None]]) -> list[StepLabel | TeacherError]:
        out: list[StepLabel | TeacherError] = []
        for ctx, student in items:
            try:
                out.append(self.oracle(ctx, student, self.privilege_level))
            except Exception as e:  # an oracle bug must not lose the batch; it is recorded
                out.append(TeacherError(f"oracle failed: {type(e).__name__}: {e}"))
        return out


class ReplayPolicy:
    """Plays recorded action sequences (a dataset's expert actions), one per task, with no reason.

    A task without a sequence, or one whose sequence has ended, gets an empty action (the runner
    counts it as unparsable and the episode goes on to its horizon)."""

    privileged = False

    def __init__(self, plans: dict[str, list[str]], policy_id: str = "dataset") -> None:
        self.plans = plans
        self.policy_id = policy_id

    def act(self, contexts: list[StepContext]) -> list[PolicyOutput]:
        out = []
        for ctx in contexts:
            plan = self.plans.get(ctx.task.task_id, [])
            t = len(ctx.history)
            action = plan[t] if t < len(plan) else ""
            out.append(PolicyOutput(reason="", action=action, parse_ok=bool(action)))
        return out


def contexts_from_trajectory(
    traj: Trajectory, privileged_state: PrivilegedState | None = None, task: Task | None = None
) -> list[StepContext]:
    """One StepContext per step of a recorded trajectory (with its per-step privileged snapshot)."""
    task = task or traj.task()
    return [
        StepContext(
            task=task,
            history=traj.steps[:k],
            observation=step.observation,
            admissible_actions=step.admissible_actions,
            privileged=step.privileged,
            privileged_state=privileged_state,
        )
        for k, step in enumerate(traj.steps)
    ]
