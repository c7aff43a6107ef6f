"""Environment oracles as a teacher.

Each environment registers an oracle function (``register(..., oracle=...)``) that, given a step
context (with the privileged state) and a privilege level, writes a reason and an action. The
level sets how the privileged facts may be used:

- λ0: not at all: sensible behaviour from what the student can see;
- λ1..λ3: increasingly, to choose actions, with reasons the student could have given;
- λ4: freely, and the reason may state the facts outright.
"""

from __future__ import annotations

from leap.agent import PRIVILEGE_LEVELS, FunctionTeacher, StepContext, TeacherError
from leap.envs.base import EnvError
from leap.envs.base import oracle as env_oracle
from leap.records import StepLabel


class OracleTeacher:
    """Dispatches each item to the oracle of its task's environment."""

    def __init__(self, privilege_level: int) -> None:
        if privilege_level not in PRIVILEGE_LEVELS:
            raise ValueError(f"privilege_level must be 0..4, got {privilege_level}")
        self.privilege_level = privilege_level
        self.teacher_id = "oracle"

    def correct(self, items: list[tuple[StepContext, StepLabel | None]]) -> list[StepLabel | TeacherError]:
        out: list[StepLabel | TeacherError] = []
        for ctx, student in items:
            try:
                teacher = FunctionTeacher(env_oracle(ctx.task.env), self.privilege_level, self.teacher_id)
            except EnvError as e:
                out.append(TeacherError(f"no oracle for environment '{ctx.task.env}': {e}"))
                continue
            out.extend(teacher.correct([(ctx, student)]))
        return out
