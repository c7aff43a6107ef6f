"""params.yaml section `env.alfworld`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

TASK_TYPES = (
    "pick_and_place_simple",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "look_at_obj_in_light",
    "pick_two_obj_and_place",
)


class AlfworldParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_dir: str | None = Field(
        default=None,
        description="games in the official ALFWorld layout (e.g. $ALFWORLD_DATA); null: generate them",
    )
    memory: Literal["none", "checked", "unchecked", "ranked", "ranked_seen", "ranked_held"] = Field(
        default="none",
        description="append a line to every observation after the first, from what the agent was shown "
        "(a summary of its own history): 'checked' lists the receptacles it has looked into, 'unchecked' "
        "those it has not; 'ranked' (also on the first observation) lists those in the order common "
        "sense would search them for what the task still needs (the λ0 oracle's order); 'ranked_seen' adds "
        "where the agent has seen what the task still needs (e.g. the second laptop of a two-object task); "
        "'ranked_held' adds what the agent holds",
    )
    games_dir: str = Field(default="data/prepared/alfworld_games", description="where `prepare` writes games")
    task_types: list[str] = Field(default_factory=lambda: list(TASK_TYPES))
    n_train: int = Field(default=18, ge=1)
    n_valid: int = Field(default=6, ge=0)
    n_test: int = Field(default=6, ge=0, description="in-distribution evaluation games (seen scenes)")
    n_test_ood: int = Field(default=6, ge=0, description="out-of-distribution games (held-out scenes)")
    # Generator knobs: small rooms keep observations (and so prompts) short for a CPU student.
    max_receptacles: int = Field(default=10, ge=3, le=40, description="receptacles per generated game")
    n_distractors: int = Field(default=4, ge=0, le=20, description="non-target objects per generated game")
    max_plan_length: int = Field(default=15, ge=2, description="longest expert plan of a generated game")
    check_handcoded_expert: bool = Field(
        default=True, description="keep a generated game only if alfworld's handcoded expert also wins it"
    )
    max_handcoded_steps: int = Field(default=50, ge=1, description="step budget of that check")

    @field_validator("task_types")
    @classmethod
    def _known_types(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(TASK_TYPES))
        if unknown or not v:
            raise ValueError(f"unknown or empty task_types {unknown}; choose from {list(TASK_TYPES)}")
        return v
