"""params.yaml section `env.intercode`.

Splits (over the 300 tasks in icalfa's order: fs_1 tasks 0-152, fs_2 153-201, fs_3 202-258,
fs_4 259-281, fs_5 282-299):

- the first ``n_train`` tasks form the training pool, the rest the held-out pool (paper split);
- ``valid_from: train``: ``n_valid`` tasks are carved out of the training pool (train keeps the
  others); ``valid_from: rest``: they are carved out of the held-out pool (test keeps the others);
- ``test``: ``n_test`` tasks of what is left of the held-out pool (null: all of it).

A carve-out of k tasks from a pool of n takes evenly spaced positions (``round((j + 0.5) * n / k)``),
so it is deterministic, independent of the seed, and spreads over the families in the pool.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class IntercodeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_train: int = Field(default=200, ge=0, description="the first tasks are for training (paper split)")
    n_valid: int = Field(default=20, ge=0)
    valid_from: Literal["train", "rest"] = Field(
        default="train", description="carve the valid tasks from the training pool or from the held-out rest"
    )
    n_test: int | None = Field(default=None, ge=0, description="null: all remaining tasks")
    root_dir: str | None = Field(
        default=None,
        description="where the sandbox root file systems live; "
        "null: $LEAP_INTERCODE_ROOT or ~/.cache/leap/intercode",
    )
    debian_mirror: str = Field(default="http://deb.debian.org/debian", description="for `build-root`")
    debian_suite: str = Field(default="bookworm", description="used by `build-root` only")
    command_timeout_s: float = Field(default=10.0, gt=0, description="per command (InterCode: 10 s)")
    max_output_bytes: int = Field(default=65536, ge=256, description="command output kept (the rest is cut)")
    memory_limit_mb: int = Field(default=1024, ge=64, description="per command (memory cgroup)")
    pids_limit: int = Field(default=256, ge=16, description="processes + threads per command (pids cgroup)")
    file_size_limit_mb: int = Field(default=64, ge=1, description="RLIMIT_FSIZE: largest file written")
    scratch_mb: int = Field(default=256, ge=16, description="size of an episode's writable layer (a tmpfs)")
    score_every_step: bool = Field(
        default=True,
        description="compute info['score'] (the score if submitted now) after every command; "
        "false: only at submit / the horizon",
    )
