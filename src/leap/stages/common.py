"""Helpers shared by stages: seeding, task/privileged-state loading, journals (no env, no model)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import TypeVar

import numpy as np

from leap import paths
from leap.config import Params
from leap.io import read_jsonl
from leap.records import PrivilegedState, Task

T = TypeVar("T")


def seed_everything(seed: int, *, torch: bool = False) -> None:
    """Seed Python's, NumPy's and (for stages that may run a model) torch's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if torch:  # importing torch costs seconds: only stages that may run a model pay it
        import torch as _torch

        _torch.manual_seed(seed)


def sample_in_order(items: list[T], k: int | None, salt: str) -> list[T]:
    """``k`` of ``items`` drawn at random (seeded by ``salt``), kept in their order; None or k >= len:
    all. Split files group their tasks by type, so the first k would hold one or two types only."""
    if k is None or k >= len(items):
        return list(items)
    picked = set(random.Random(salt).sample(range(len(items)), k))
    return [x for i, x in enumerate(items) if i in picked]


def load_tasks(split: str) -> list[Task]:
    return read_jsonl(paths.tasks(split), Task)


def load_privileged(split: str = "train") -> dict[str, PrivilegedState]:
    return {p.task_id: p for p in read_jsonl(paths.privileged(split), PrivilegedState)}


def inputs_key(params: Params, *deps: Path) -> str:
    """Fingerprint of the params and the dependency files (size + mtime; recursive for dirs)."""
    h = hashlib.sha256(params.fingerprint().encode())
    for d in deps:
        files = sorted(p for p in d.rglob("*") if p.is_file()) if d.is_dir() else [d]
        for f in files:
            if f.exists():
                st = f.stat()
                h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def finish_journal(out: Path) -> None:
    for j in paths.stale_journals(out):
        j.unlink()
