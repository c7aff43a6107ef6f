"""params.yaml validation: clear errors naming file, line and key path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from leap.cli import app
from leap.config import ConfigError, Params, load_params

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_yaml_is_valid() -> None:
    p = load_params(REPO / "params.yaml")
    assert p.env.name == "alfworld"
    assert p.iteration_numbers[0] == 0 and len(p.iteration_numbers) >= 3  # BC + >= 2 LEAP iterations


@pytest.mark.parametrize("exp", sorted((REPO / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_every_experiment_definition_is_valid(exp: Path) -> None:
    load_params(REPO / "params.yaml", exp)


def _write(tmp_path: Path, text: str, name: str = "params.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_unknown_key_names_file_line_and_path(tmp_path: Path) -> None:
    p = _write(tmp_path, "seed: 1\nstudent:\n  model: x\n  lora:\n    rank: 8\n")
    with pytest.raises(ConfigError) as e:
        load_params(p)
    msg = str(e.value)
    assert f"{p}:5" in msg and "student.lora.rank" in msg and "Extra inputs are not permitted" in msg


def test_wrong_type_and_impossible_value(tmp_path: Path) -> None:
    p = _write(tmp_path, "env:\n  horizon: 0\ntrain:\n  learning_rate: fast\n")
    with pytest.raises(ConfigError) as e:
        load_params(p)
    msg = str(e.value)
    assert f"{p}:2: env.horizon" in msg and "greater than or equal to 1" in msg
    assert f"{p}:4: train.learning_rate" in msg and "'fast'" in msg


def test_iterations_must_be_consecutive(tmp_path: Path) -> None:
    p = _write(tmp_path, "loop:\n  iterations: {'1': 0, '3': 1}\n")
    with pytest.raises(ConfigError, match=r"loop\.iterations.*consecutive"):
        load_params(p)


def test_select_split_must_be_evaluated(tmp_path: Path) -> None:
    p = _write(tmp_path, "env:\n  eval_splits: [test]\n")
    with pytest.raises(ConfigError, match="select_split"):
        load_params(p)


def test_api_key_is_refused_as_a_param(tmp_path: Path) -> None:
    p = _write(tmp_path, "teacher:\n  openai:\n    api_key_env: sk-abc123\n")
    with pytest.raises(ConfigError, match="NAME of an environment variable"):
        load_params(p)


def test_invalid_yaml_reports_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "seed: 1\nenv: [unclosed\n")
    with pytest.raises(ConfigError, match=rf"{p}:\d+: invalid YAML"):
        load_params(p)


def test_experiment_override_wins_and_errors_name_the_experiment(tmp_path: Path) -> None:
    base = _write(tmp_path, "env:\n  horizon: 10\nloop:\n  iterations: {'1': 0, '2': 1}\n")
    exp = _write(
        tmp_path, "description: short\nenv:\n  horizon: 5\nloop:\n  iterations: {'1': 0}\n", "exp.yaml"
    )
    p = load_params(base, exp)
    assert p.env.horizon == 5
    assert p.loop.iterations == {1: 0}  # replaced whole, not merged
    bad = _write(tmp_path, "env:\n  horizon: -1\n", "bad.yaml")
    with pytest.raises(ConfigError, match=rf"{bad}:2: env.horizon"):
        load_params(base, bad)


def test_stage_refuses_bad_params_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, yaml.safe_dump({"env": {"name": "toy", "horizon": "many"}}))
    res = CliRunner().invoke(app, ["prepare"])
    assert res.exit_code == 2
    assert "env.horizon" in res.output and "params.yaml:" in res.output
    assert not (tmp_path / "data").exists() and not (tmp_path / "mlflow.db").exists()


def test_fingerprint_changes_with_any_knob() -> None:
    a, b = Params(), Params.model_validate({"teacher": {"privilege_level": 3}})
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == Params().fingerprint()


def _dvc_param_keys() -> set[str]:
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    keys = set()
    for stage in dvc["stages"].values():
        body = stage.get("do", stage)
        keys |= {k for k in body.get("params", []) if isinstance(k, str)}
    return keys


def test_every_stage_but_the_report_keeps_dvcs_run_cache() -> None:
    """One plain out with `cache: false` turns DVC's run cache off for its stage (uncached metrics and
    plots do not): every study variant would then evaluate BC and run the baseline again."""
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    for name, stage in dvc["stages"].items():
        body = stage.get("do", stage)
        uncached = [
            next(iter(o))
            for o in body.get("outs", [])
            if isinstance(o, dict) and next(iter(o.values())).get("cache") is False
        ]
        if name != "report":  # its plots as files: cheap to redo, and kept in git
            assert not uncached, f"dvc.yaml stage {name}: uncached outs {uncached} disable its run cache"


@pytest.mark.parametrize("env_name", ["alfworld", "intercode", "webshop", "toy"])
def test_params_yaml_has_every_key_dvc_tracks(env_name: str) -> None:
    """DVC reads tracked params from params.yaml itself: a missing key fails `dvc repro`."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for key in sorted(_dvc_param_keys()):
        for i in raw["loop"]["iterations"] if "${key}" in key else [None]:
            node = raw
            for part in key.replace("${env.name}", env_name).replace("${key}", str(i)).split("."):
                assert isinstance(node, dict) and part in node, f"params.yaml lacks '{key}' (env {env_name})"
                node = node[part]


def test_integer_iteration_keys_are_refused(tmp_path: Path) -> None:
    p = _write(tmp_path, "seed: 0\nloop:\n  iterations: {1: 0, 2: 1}\n")
    with pytest.raises(ConfigError, match=rf"{p}:3: loop.iterations: quote"):
        load_params(p)


def test_dvc_generates_every_iteration_stage_from_params_yaml() -> None:
    """`dvc stage list` on the repo: foreach must expand loop.iterations into real stages."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "dvc", "stage", "list"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    stages = {line.split()[0] for line in out.splitlines() if line.strip()}
    iters = load_params(REPO / "params.yaml").loop.iterations
    for i in iters:
        for s in ("rollout", "correct", "aggregate", "train", "evaluate"):
            assert f"{s}@{i}" in stages, f"dvc.yaml generated no {s}@{i}: {sorted(stages)}"


def test_a_bad_value_is_blamed_on_its_own_file(tmp_path: Path) -> None:
    """An experiment that sets another key of the same section does not take the blame."""
    base = _write(tmp_path, "seed: 0\nstudent:\n  model: m\n  max_new_tokens: many\n")
    exp = _write(tmp_path, "description: x\nstudent:\n  model: other\n", "exp.yaml")
    with pytest.raises(ConfigError) as e:
        load_params(base, exp)
    assert f"{base}:4: student.max_new_tokens" in str(e.value) and "exp.yaml" not in str(e.value)
    # ... and the experiment is blamed for its own bad value, even inside a section params.yaml has.
    bad = _write(tmp_path, "student:\n  temperature: -1\n", "bad.yaml")
    with pytest.raises(ConfigError, match=rf"{bad}:2: student.temperature"):
        load_params(_write(tmp_path, "student:\n  model: m\n"), bad)


def test_repo_experiment_with_a_bad_params_yaml_value(tmp_path: Path) -> None:
    """The issue's case: experiments/webshop.yaml sets student keys; the bad one is in params.yaml."""
    text = re.sub(
        r"(?m)^  max_new_tokens: .*$", "  max_new_tokens: forty", (REPO / "params.yaml").read_text(), count=1
    )
    assert "  max_new_tokens: forty" in text
    base = _write(tmp_path, text)
    line = text.splitlines().index("  max_new_tokens: forty") + 1
    with pytest.raises(ConfigError) as e:
        load_params(base, REPO / "experiments/webshop.yaml")
    assert f"{base}:{line}: student.max_new_tokens" in str(e.value)


def test_dvc_tracks_no_section_of_a_particular_environment() -> None:
    """A params.yaml holds the sections of the environments it uses, not every one: dvc.yaml may
    track the selected environment's section (env.${env.name}), never a named one."""
    from leap.envs import registered

    named = sorted(k for k in _dvc_param_keys() if k.split(".")[:2][-1] in registered())
    assert named == []


def test_iterations_take_their_own_epochs_and_learning_rate() -> None:
    from leap.config import TrainParams
    from leap.stages.train import iteration_train_params

    train = TrainParams(epochs=2, learning_rate=2e-3, iteration_epochs=1, iteration_learning_rate=5e-4)
    assert iteration_train_params(train, 0) == train  # BC keeps its own
    it = iteration_train_params(train, 1)
    assert (it.epochs, it.learning_rate) == (1, 5e-4)
    unset = TrainParams(epochs=2, learning_rate=2e-3)
    assert iteration_train_params(unset, 2) == unset  # null: the BC values
