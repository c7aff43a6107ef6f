"""`leap study` end to end with DVC's real queue, on the toy environment with a tiny student: every
variant runs as a queued experiment, the table and plot are written, and a second call queues
nothing (slow: a few minutes per variant on a 2-core CPU)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_dvc_pipeline import run_cmd
from tests.test_pipeline import write_toy_params

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path) -> str:
    return run_cmd(cmd, cwd, timeout=3600)


@pytest.mark.slow
def test_update_study_runs_queued_and_a_second_call_reruns_nothing(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "experiments/studies", root / "experiments/studies")
    write_toy_params(root / "params.yaml", tiny_model_dir)
    (root / ".gitignore").write_text("mlflow.db\nmlartifacts/\n.exp/\n")
    _run(["git", "init", "-q"], root)
    _run([sys.executable, "-m", "dvc", "init", "-q"], root)
    _run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], root)
    _run(["git", "add", "-A"], root)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], root)
    leap = [sys.executable, "-m", "leap", "study", "update", "--with", "experiments/studies/toy.yaml"]
    first = _run([*leap, "--beta", "0.2"], root)
    assert first.count(": queued (") == 3
    result = json.loads((root / "reports/studies/update.json").read_text())
    assert [r["variant"] for r in result["variants"]] == ["sft", "dpo", "kto"] and result["missing"] == []
    for r in result["variants"]:
        assert 0.0 <= r["splits"]["valid"]["success_rate"] <= 1.0
        assert r["realize"]["1"]["n"] > 0  # realizability of iteration 1's corrections
    assert (root / "reports/update_methods.png").stat().st_size > 5000
    second = _run([*leap, "--beta", "0.2"], root)
    assert second.count("finished (not queued again)") == 3 and ": queued (" not in second
    status = subprocess.run(
        [sys.executable, "-m", "dvc", "queue", "status"], cwd=root, capture_output=True, text=True
    ).stdout
    assert status.count("Success") == 3
