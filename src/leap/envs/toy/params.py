"""params.yaml section `env.toy`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ToyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_boxes: int = Field(default=6, ge=2, le=8)
    cue_accuracy: float = Field(
        default=0.7, ge=0.0, le=1.0, description="how often the smell at the start points to the key's box"
    )
    n_train: int = Field(default=12, ge=1)
    n_valid: int = Field(default=4, ge=0)
    n_test: int = Field(default=4, ge=0)
    n_test_ood: int = Field(default=4, ge=0)
