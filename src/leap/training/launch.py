"""The train stage under a launcher (``train.launcher: accelerate``).

The stage writes a job file (the training set, student and train params, output directory) and runs
``accelerate launch [--config_file CFG] [--num_processes N] -m leap.training.launch JOB``: every
process trains its share of each batch (DDP; FSDP where the config says so), the main process saves
the adapter and writes the metrics beside the job file, and the stage reads them back. The effective
batch stays ``batch_size x grad_accum`` (each process takes its share of the accumulation steps).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from leap.config import StudentParams, TrainParams
from leap.io import read_jsonl, write_json, write_jsonl
from leap.records import TrainExample

REPO_CONFIGS = Path(__file__).resolve().parents[3] / "accelerate"


def default_config(cuda: bool) -> Path:
    """accelerate/ddp.yaml (GPUs) or accelerate/cpu-ddp.yaml (CPU processes over gloo)."""
    return REPO_CONFIGS / ("ddp.yaml" if cuda else "cpu-ddp.yaml")


def launch_command(job: Path, config: Path, num_processes: int | None) -> list[str]:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
    if num_processes is not None:
        cmd += ["--num_processes", str(num_processes)]
    return [*cmd, "-m", "leap.training.launch", str(job)]


def launch(
    examples: list[TrainExample],
    student: StudentParams,
    train: TrainParams,
    out_dir: Path,
    *,
    init_adapter: Path | None,
    config: str | None,
    num_processes: int | None,
) -> dict[str, Any]:
    """Train on ``examples`` under ``accelerate launch``; returns the main process's metrics."""
    with tempfile.TemporaryDirectory(prefix="leap-launch-") as work:
        train_set = Path(work) / "train.jsonl"
        write_jsonl(train_set, examples)
        return _launch(train_set, student, train, out_dir, init_adapter, Path(work), config, num_processes)


def _launch(
    train_set: Path,
    student: StudentParams,
    train: TrainParams,
    out_dir: Path,
    init_adapter: Path | None,
    work_dir: Path,
    config: str | None,
    num_processes: int | None,
) -> dict[str, Any]:
    import torch

    job = work_dir / "train_job.json"
    metrics_file = work_dir / "train_metrics.json"
    metrics_file.unlink(missing_ok=True)
    write_json(
        job,
        {
            "train_set": str(Path(train_set).resolve()),
            "student": student.model_dump(mode="json"),
            "train": train.model_dump(mode="json"),
            "out_dir": str(Path(out_dir).resolve()),
            "init_adapter": str(Path(init_adapter).resolve()) if init_adapter else None,
            "metrics": str(metrics_file.resolve()),
        },
    )
    cfg = Path(config) if config else default_config(torch.cuda.is_available())
    cmd = launch_command(job, cfg, num_processes)
    res = subprocess.run(cmd, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"}, check=False)
    if res.returncode != 0 or not metrics_file.is_file():
        raise RuntimeError(f"`{' '.join(cmd)}` failed (exit code {res.returncode})")
    return dict(json.loads(metrics_file.read_text()))


def main(job_file: str) -> None:
    from leap.training.trainer import train_adapter

    job = json.loads(Path(job_file).read_text())
    examples = read_jsonl(Path(job["train_set"]), TrainExample)
    metrics = train_adapter(
        examples,
        StudentParams.model_validate(job["student"]),
        TrainParams.model_validate(job["train"]),
        out_dir=Path(job["out_dir"]),
        init_adapter=Path(job["init_adapter"]) if job["init_adapter"] else None,
        progress=False,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        metrics["processes"] = int(os.environ.get("WORLD_SIZE", "1"))
        write_json(Path(job["metrics"]), metrics)


if __name__ == "__main__":
    main(sys.argv[1])
