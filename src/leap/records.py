"""Typed records that pass between stages (the pipeline's lingua franca).

Every file between stages is JSONL of these models. Each record carries
``schema_version`` so that old files fail loudly rather than silently mis-parse.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

SCHEMA_VERSION = 1

Split = str  # "train", "valid", "test" (in-distribution eval) or "test_ood"; envs may add more


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: Literal[1] = SCHEMA_VERSION


class Task(Record):
    """One episode specification. ``instruction`` is what the student may see;
    ``spec`` tells the environment how to load the task and is never shown to the student."""

    task_id: str
    env: str
    split: Split
    category: str = Field(description="task type, used for per-category metrics")
    instruction: str = ""
    spec: dict[str, Any] = Field(default_factory=dict)


class PrivilegedState(Record):
    """Hidden facts available only at train time, for the teacher only."""

    task_id: str
    env: str
    facts: dict[str, Any] = Field(default_factory=dict)
    plan: list[str] = Field(default_factory=list, description="an optimal action sequence from reset")
    secrets: list[str] = Field(
        default_factory=list,
        description="strings whose appearance in a reason reveals privileged facts (leak check)",
    )


class StepLabel(BaseModel):
    """A reason and an action: what a policy or a teacher writes for one step."""

    model_config = ConfigDict(extra="forbid")
    reason: str
    action: str


class Step(Record):
    """One agent step: what it saw, what it thought and what it did."""

    observation: str = Field(description="the observation the policy saw before acting")
    reason: str
    action: str = Field(description="the action sent to the environment")
    raw_output: str | None = Field(default=None, description="the model's unparsed text, if any")
    admissible_actions: list[str] | None = None
    privileged: dict[str, Any] | None = Field(
        default=None, description="teacher-only snapshot at this step (e.g. the expert's next action)"
    )
    parse_ok: bool = True
    valid: bool = Field(default=True, description="the environment accepted the action")
    reward: float = 0.0


class Trajectory(Record):
    task_id: str
    env: str
    split: Split
    category: str
    instruction: str
    policy: str = Field(description="who acted, e.g. 'student:iter_1' or 'oracle:l0'")
    iteration: int | None = None
    steps: list[Step] = Field(default_factory=list)
    final_observation: str = ""
    success: bool = False
    reward: float = 0.0
    score_components: dict[str, float] = Field(default_factory=dict)
    terminated: bool = False
    truncated: bool = False
    error: str | None = Field(default=None, description="an environment or policy failure, recorded")

    @model_validator(mode="before")
    @classmethod
    def _drop_derived(cls, data: Any) -> Any:
        # Derived counts are written for readers of the JSONL; they are recomputed on load.
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if k not in _TRAJ_DERIVED}
        return data

    def task(self) -> Task:
        """The task this trajectory played, as far as records keep it (no ``spec``)."""
        return Task(
            task_id=self.task_id,
            env=self.env,
            split=self.split,
            category=self.category,
            instruction=self.instruction,
        )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def num_actions(self) -> int:
        return len(self.steps)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def num_invalid(self) -> int:
        return sum(not s.valid for s in self.steps)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def num_parse_errors(self) -> int:
        return sum(not s.parse_ok for s in self.steps)


_TRAJ_DERIVED = {"num_actions", "num_invalid", "num_parse_errors"}


class Correction(Record):
    """A teacher's relabelling of one student step, with everything needed to train on it."""

    task_id: str
    env: str
    category: str
    instruction: str
    iteration: int
    step_index: int
    history: list[Step] = Field(description="the student's steps before this one")
    observation: str
    admissible_actions: list[str] | None = None
    student: StepLabel
    teacher: StepLabel | None = Field(default=None, description="None when the teacher failed (see error)")
    privilege_level: int
    teacher_id: str
    leaked: bool = False
    leak_terms: list[str] = Field(default_factory=list)
    error: str | None = None

    def task(self) -> Task:
        """The corrected task (corrections are made on training rollouts; no ``spec``)."""
        return Task(
            task_id=self.task_id,
            env=self.env,
            split="train",
            category=self.category,
            instruction=self.instruction,
        )


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


class TrainExample(Record):
    """One training example in TRL's conversational prompt-completion format.

    The loss is on the assistant messages of ``completion``: one for a correction, every step of
    the episode for a demonstration (its completion holds the later observations as user turns).
    ``rejected`` (the student's own step) is set for corrections, so DPO and KTO can prefer the
    teacher's step over the student's.
    """

    prompt: list[Message]
    completion: list[Message]
    rejected: list[Message] | None = None
    source: Literal["demo", "correction"]
    task_id: str
    iteration: int
    step_index: int


class CategoryMetrics(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int
    success_rate: float
    avg_actions: float
    avg_reward: float


class EvalResult(Record):
    """Aggregate metrics of one policy on one split."""

    policy: str
    iteration: int | None
    split: Split
    n: int
    success_rate: float
    success_ci: tuple[float, float] = Field(default=(0.0, 1.0), description="95% Wilson interval")
    avg_actions: float
    avg_actions_solved: float | None = Field(default=None, description="mean actions on solved episodes")
    avg_reward: float
    invalid_action_rate: float = 0.0
    repeat_rate: float = Field(
        default=0.0, description="steps that repeat the previous action after it changed nothing (latching)"
    )
    cycle_rate: float = Field(
        default=0.0,
        description="steps that choose an action already chosen in the same situation (the same "
        "observation after the same previous action): oscillation and latching",
    )
    parse_error_rate: float = 0.0
    score_components: dict[str, float] = Field(default_factory=dict)
    by_category: dict[str, CategoryMetrics] = Field(default_factory=dict)
