"""Where each stage reads and writes (the data layout of dvc.yaml, in one place)."""

from __future__ import annotations

from pathlib import Path

DATA = Path("data")
MODELS = Path("models")
METRICS = Path("metrics")
REPORTS = Path("reports")


PREPARED = DATA / "prepared"  # one DVC output: tasks, privileged states and env assets (e.g. games)


def tasks(split: str) -> Path:
    return PREPARED / "tasks" / f"{split}.jsonl"


def privileged(split: str = "train") -> Path:
    return PREPARED / "privileged" / f"{split}.jsonl"


def iter_dir(i: int) -> Path:
    return DATA / f"iter_{i}"


def demos() -> Path:
    return iter_dir(0) / "demos.jsonl"


def rollouts(i: int) -> Path:
    return iter_dir(i) / "rollouts.jsonl"


def corrections(i: int) -> Path:
    return iter_dir(i) / "corrections.jsonl"


def train_set(i: int) -> Path:
    return iter_dir(i) / "train.jsonl"


def eval_trajs(i: int) -> Path:
    return iter_dir(i) / "eval.jsonl"


def model(i: int) -> Path:
    return MODELS / f"iter_{i}"


def eval_metrics(i: int) -> Path:
    return METRICS / f"iter_{i}.json"


def stage_metrics(stage: str, i: int) -> Path:
    return METRICS / "stages" / f"{stage}_{i}.json"


def baseline_trajs() -> Path:
    return DATA / "baseline" / "eval.jsonl"


def baseline_metrics() -> Path:
    return METRICS / "baseline.json"


def outcomes(name: str) -> Path:
    """Per-episode success of one policy ({split: {task id: solved}}; name = "iter_<i>" or "baseline"),
    which the report pairs across policies (the same tasks for every one)."""
    return METRICS / "outcomes" / f"{name}.json"


def journal(path: Path, key: str) -> Path:
    """Resume journal kept beside an output while its stage runs. ``key`` fingerprints the
    stage's inputs, so a journal left by a run on other inputs is never resumed."""
    return path.with_name(f".{path.name}.{key}.journal")


def stale_journals(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.*.journal"))
