"""dvc.yaml drives the loop: `dvc repro` runs every stage once, a second `dvc repro` runs
none, and changing one parameter re-runs only the stages that depend on it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.test_pipeline import write_toy_params

REPO = Path(__file__).resolve().parents[1]


def run_cmd(cmd: list[str], cwd: Path, timeout: float = 900) -> str:
    """Run a CLI command (dvc, leap) in ``cwd`` with this venv on PATH; its output, or a failed assert."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db",
    }
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{cmd} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout + res.stderr


def _ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("dvc_repo")
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    # Stages depend on the code under src/: a copy keeps the test off the real checkout.
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))
    write_toy_params(root / "params.yaml", tiny_model_dir)
    run_cmd(["git", "init", "-q"], root)
    run_cmd([sys.executable, "-m", "dvc", "init", "-q"], root)
    run_cmd([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], root)
    return root


@pytest.mark.slow
def test_repro_runs_all_then_nothing_then_only_what_changed(dvc_repo: Path) -> None:
    dvc = [sys.executable, "-m", "dvc"]
    first = _ran(run_cmd([*dvc, "repro"], dvc_repo))
    assert {
        "prepare",
        "demos",
        "train_bc",
        "evaluate_bc",
        "rollout@1",
        "correct@1",
        "aggregate@1",
        "train@1",
        "evaluate@1",
        "baseline",
        "report",
    } <= first

    assert _ran(run_cmd([*dvc, "repro"], dvc_repo)) == set()  # nothing changed: nothing re-runs

    def changed_by(edit: dict) -> set[str]:
        params = yaml.safe_load((dvc_repo / "params.yaml").read_text())
        for dotted, value in edit.items():
            *path, key = dotted.split(".")
            node = params
            for part in path:
                node = node[part]
            node[key] = value
        (dvc_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        status = run_cmd([*dvc, "status"], dvc_repo)
        return {
            line.strip().rstrip(":") for line in status.splitlines() if line and not line.startswith("\t")
        }

    changed = changed_by({"teacher.privilege_level": 4})
    assert "correct@1" in changed
    assert (
        not {"prepare", "demos", "train_bc", "evaluate_bc", "rollout@1", "aggregate@1", "baseline"} & changed
    )
    # A further iteration re-runs none of the first one's stages (each tracks its own loop entry).
    changed = changed_by({"loop.iterations": {"1": 0, "2": 1}})
    assert {"rollout@2", "correct@2", "train@2", "report"} <= changed
    assert not {"rollout@1", "aggregate@1", "train@1", "evaluate@1"} & changed

    # A workspace without BC's evaluation (as a queued study variant starts) gets it back from DVC's
    # cache instead of running it: its outputs are all cached (see the note atop dvc.yaml).
    for out in ("data/iter_0/eval.jsonl", "metrics/outcomes/iter_0.json", "metrics/iter_0.json"):
        (dvc_repo / out).unlink()
    assert "evaluate_bc" not in _ran(run_cmd([*dvc, "repro", "evaluate_bc"], dvc_repo))
    assert (dvc_repo / "metrics/iter_0.json").exists()
