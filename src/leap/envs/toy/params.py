"""params.yaml section `env.toy`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ToyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_boxes: int = Field(default=6, ge=2, le=8)
    cue_rate: float = Field(
        default=0.5, ge=0.0, le=1.0, description="share of rooms where a smell gives the key's box away"
    )
    n_train: int = Field(default=12, ge=1)
    n_valid: int = Field(default=4, ge=0)
    n_test: int = Field(default=4, ge=0)
    n_test_ood: int = Field(default=4, ge=0)
