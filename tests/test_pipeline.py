"""The whole LEAP loop (BC + 1 iteration) on the toy environment with a tiny random student:
every stage's output exists and is valid, and MLflow holds the learning curve.

The stages run in this process, one `leap <stage>` command after the other (what `run-all` runs,
each in its own process, and dvc.yaml too); `run-all` itself is checked without running them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from leap.cli import app, pipeline_steps
from leap.config import Params, load_params
from leap.io import read_jsonl
from leap.records import Correction, TrainExample, Trajectory


def write_toy_params(path: Path, model_dir: Path, **extra: dict) -> None:
    params = {
        "env": {"name": "toy", "horizon": 4},
        "student": {"model": str(model_dir), "max_new_tokens": 12, "batch_size": 6},
        "train": {"epochs": 1, "batch_size": 8},
        "loop": {"iterations": {1: 0}},
        "tracking": {"experiment": "toy-pipeline"},
    }
    for k, v in extra.items():
        params.setdefault(k, {}).update(v)
    # DVC reads the params it tracks from the file itself: write every key, resolved.
    full = Params.model_validate(params).model_dump(mode="json")
    path.write_text(yaml.safe_dump(full, sort_keys=False))


def run_stages(root: Path, *extra: str) -> None:
    """Every stage of the loop, in order, as `leap <stage>` commands in ``root`` (in this process)."""
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
    try:
        for step in pipeline_steps(load_params(root / "params.yaml")):
            res = CliRunner().invoke(app, [*extra, *step], catch_exceptions=False)
            assert res.exit_code == 0, f"leap {' '.join(step)}:\n{res.output}"
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("toy_run")
    write_toy_params(root / "params.yaml", tiny_model_dir)
    run_stages(root)
    return root


def test_run_all_runs_every_stage_in_its_own_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path
) -> None:
    write_toy_params(tmp_path / "params.yaml", tiny_model_dir, loop={"iterations": {1: 0, 2: 1}})
    monkeypatch.chdir(tmp_path)
    calls: list[list[str]] = []
    monkeypatch.setattr("subprocess.call", lambda cmd: calls.append(cmd) or 0)
    res = CliRunner().invoke(app, ["run-all"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert all(c[:3] == [sys.executable, "-m", "leap"] for c in calls)
    stages = [" ".join(c[5:]) for c in calls]
    assert stages[:6] == ["prepare", "demos", "aggregate -i 0", "train -i 0", "evaluate -i 0", "baseline"]
    per_iteration = ("rollout", "correct", "realize", "aggregate", "train", "evaluate")
    assert stages[6:12] == [f"{s} -i 1" for s in per_iteration]
    assert stages[-1] == "report" and len(stages) == 19
    monkeypatch.setattr("subprocess.call", lambda cmd: 3 if "train" in cmd else 0)
    res = CliRunner().invoke(app, ["run-all"])
    assert res.exit_code == 3 and "leap train -i 0` failed (exit 3)" in res.output


def test_every_stage_wrote_its_outputs(toy_run: Path) -> None:
    r = toy_run
    demos = read_jsonl(r / "data/iter_0/demos.jsonl", Trajectory)
    assert demos and all(t.success for t in demos)
    rollouts = read_jsonl(r / "data/iter_1/rollouts.jsonl", Trajectory)
    assert len(rollouts) == 12 and all(t.policy == "student:iter_0" for t in rollouts)
    corrs = read_jsonl(r / "data/iter_1/corrections.jsonl", Correction)
    failed_steps = sum(t.num_actions for t in rollouts if not t.success)
    assert len(corrs) == failed_steps > 0  # a random student fails: every step is relabelled
    assert all(c.teacher is not None and c.privilege_level == 2 for c in corrs)
    # Realizability of corrections 1 under student 0, before training on them.
    real = json.loads((r / "metrics/stages/realize_1.json").read_text())
    assert real["realize/n"] == len(corrs)
    same = sum(c.teacher.action.strip() == c.student.action.strip() for c in corrs)  # type: ignore[union-attr]
    assert real["realize/action_match_rate"] == pytest.approx(same / len(corrs))
    for k in ("teacher_logprob_per_token", "student_logprob_per_token", "teacher_action_logprob_per_token"):
        assert -30.0 < real[f"realize/{k}"] < 0.0, k
    assert sum(v["n"] for v in real["by_category"].values()) == len(corrs)
    train0 = read_jsonl(r / "data/iter_0/train.jsonl", TrainExample)
    train1 = read_jsonl(r / "data/iter_1/train.jsonl", TrainExample)
    assert len(train1) == len(train0) + len(corrs)  # DAgger aggregation keeps all earlier data
    assert {e.source for e in train1} == {"demo", "correction"}
    for i in (0, 1):
        assert (r / f"models/iter_{i}/adapter_config.json").exists()
        metrics = json.loads((r / f"metrics/iter_{i}.json").read_text())
        assert set(metrics) == {"valid", "test", "test_ood"}
    summary = json.loads((r / "reports/summary.json").read_text())
    assert summary["best_iteration"] in (0, 1)
    assert "oracle:l0" in summary["baselines"]
    pooled = summary["comparisons"]["test+test_ood"]["iter_1_vs_bc"]  # the held-out splits together
    assert pooled["n"] == summary["comparisons"]["test"]["iter_1_vs_bc"]["n"] * 2
    assert (r / "reports/learning_curve.png").stat().st_size > 1000
    assert not list(r.glob("data/**/.*.journal")), "journals are removed once a stage finishes"


def test_training_prompts_never_contain_privileged_facts(toy_run: Path) -> None:
    for ex in read_jsonl(toy_run / "data/iter_1/train.jsonl", TrainExample):
        prompt = " ".join(m.content for m in ex.prompt)
        assert "key is in box" not in prompt and "expert_action" not in prompt


def test_mlflow_has_learning_curves_and_nested_stage_runs(toy_run: Path) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{toy_run}/mlflow.db")
    exp = client.get_experiment_by_name("toy-pipeline")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on the runs
    runs = client.search_runs([exp.experiment_id])
    pipeline = [r for r in runs if r.data.tags.get("leap.kind") == "pipeline"]
    assert len(pipeline) == 1
    p = pipeline[0]
    params = load_params(toy_run / "params.yaml")
    assert p.data.tags["leap.pipeline"] == params.fingerprint()
    assert p.data.params["teacher.privilege_level"] == "2"
    hist = client.get_metric_history(p.info.run_id, "test_ood/success_rate")
    assert sorted({m.step for m in hist}) == [0, 1]
    real = client.get_metric_history(p.info.run_id, "realize/teacher_logprob_per_token")
    assert [m.step for m in real] == [1]  # per iteration, before that iteration's training
    assert "realize/action_match_rate" in p.data.metrics
    assert "baseline/oracle_l0/valid/success_rate" in p.data.metrics
    assert "test_and_test_ood/diff_vs_bc" in p.data.metrics  # the pooled split, named as MLflow allows
    stages = {r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id}
    assert {
        "prepare",
        "demos@0",
        "train@0",
        "rollout@1",
        "correct@1",
        "realize@1",
        "train@1",
        "evaluate@1",
        "report",
    } <= stages
    arts = [a.path for a in client.list_artifacts(p.info.run_id, "reports")]
    assert "reports/learning_curve.png" in arts


def test_rerunning_a_stage_reproduces_its_output(toy_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Oracle stages are deterministic: a re-run (e.g. after an interruption) gives the same file."""
    monkeypatch.chdir(toy_run)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{toy_run}/mlflow.db")
    before = (toy_run / "data/iter_1/corrections.jsonl").read_bytes()
    res = CliRunner().invoke(app, ["correct", "-i", "1"], catch_exceptions=False)
    assert res.exit_code == 0
    assert (toy_run / "data/iter_1/corrections.jsonl").read_bytes() == before


def test_correct_retries_failed_items_but_not_finished_ones(tmp_path: Path) -> None:
    from leap.agent import StepContext, TeacherError
    from leap.envs.toy import ToyTasks
    from leap.io import JsonlAppender
    from leap.records import StepLabel
    from leap.stages.correct import correct_all
    from leap.teachers.oracle import OracleTeacher

    task = ToyTasks(0).tasks("train")[0]
    items = [
        (t, StepContext(task, [], f"obs {t}", ["open box 1"]), StepLabel(reason="r", action="x"))
        for t in range(3)
    ]

    class Flaky(OracleTeacher):
        def __init__(self, level: int) -> None:
            super().__init__(level)
            self.calls: list[int] = []

        def correct(self, batch):
            self.calls.append(len(batch))
            return [TeacherError("HTTP 503") for _ in batch]

    journal = JsonlAppender(tmp_path / "j", Correction)
    first = correct_all(Flaky(2), items, 1, journal)
    assert all(c.error == "HTTP 503" for c in first)
    ok_teacher = OracleTeacher(2)
    second = correct_all(ok_teacher, items, 1, journal)
    assert all(c.error is None and c.teacher is not None for c in second)
    spy = Flaky(2)
    third = correct_all(spy, items, 1, journal)  # everything finished: no teacher call at all
    assert spy.calls == [] and [c.teacher for c in third] == [c.teacher for c in second]


def test_the_constrained_expert_runs_in_the_correct_stage_with_a_local_teacher(
    toy_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """teacher.eta with the student's own (tiny) model as a local teacher: the correct stage samples
    candidates from both levels, weights them and draws each correction from them."""
    import shutil

    root = tmp_path / "run"
    shutil.copytree(toy_run, root)
    exp = {"teacher": {"kind": "local", "eta": 1.0, "constrained": {"samples": 2}}}
    exp["teacher"]["local"] = {"model": "student", "max_new_tokens": 8}
    (root / "eta.yaml").write_text(yaml.safe_dump(exp))
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
    res = CliRunner().invoke(app, ["-e", "eta.yaml", "correct", "-i", "1"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    corrs = read_jsonl(root / "data/iter_1/corrections.jsonl", Correction)
    assert corrs and all(c.teacher_id.endswith("+constrained(eta=1)") for c in corrs)
    ok = [c for c in corrs if c.teacher is not None]
    assert ok, "no correction was drawn"
    m = json.loads((root / "metrics/stages/correct_1.json").read_text())
    assert m["teacher/constrained_items"] == len(ok)
    assert m["teacher/constrained_eta"] == 1.0
    assert 1.0 <= m["teacher/constrained_mean_ess"] <= 4.0  # 2 + 2 candidates per item
    rates = m["teacher/constrained_privileged_choice_rate"] + m["teacher/constrained_plain_choice_rate"]
    assert rates == pytest.approx(1.0)
    # Every drawn correction is one of the sampled candidates: in the student's two-line format.
    assert all(c.teacher.action for c in ok)  # type: ignore[union-attr]


def test_report_resyncs_realizability_to_mlflow(toy_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A realize stage DVC restored from its run cache logs nothing: the report logs its metrics file."""
    import mlflow

    monkeypatch.chdir(toy_run)
    fresh = f"sqlite:///{toy_run}/fresh.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh)
    res = CliRunner().invoke(app, ["report"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    client = mlflow.MlflowClient(tracking_uri=fresh)
    exp = client.get_experiment_by_name("toy-pipeline")
    (p,) = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("leap.kind") == "pipeline"]
    hist = client.get_metric_history(p.info.run_id, "realize/action_match_rate")
    real = json.loads((toy_run / "metrics/stages/realize_1.json").read_text())
    assert [(m.step, m.value) for m in hist] == [(1, pytest.approx(real["realize/action_match_rate"]))]
