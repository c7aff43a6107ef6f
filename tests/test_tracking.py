"""Credentials never reach MLflow params."""

from __future__ import annotations

from pathlib import Path

import pytest

from leap.config import Params, flatten
from leap.tracking import redact_params


def test_redaction_keeps_ordinary_params_and_drops_credentials() -> None:
    flat = flatten(Params().model_dump(mode="json"))
    out = redact_params(flat)
    assert out == flat  # defaults hold no secret: nothing is redacted (max_new_tokens etc. survive)
    leaked = {
        **flat,
        "teacher.openai.base_url": "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789",
        "extra.hf_token": "hf_abc",
        "x.api_key": "whatever",
    }
    red = redact_params(leaked)
    assert red["teacher.openai.base_url"] == "<redacted>"
    assert red["extra.hf_token"] == "<redacted>" and red["x.api_key"] == "<redacted>"
    assert red["teacher.openai.api_key_env"] == "OPENAI_API_KEY"
    assert red["student.max_new_tokens"] == flat["student.max_new_tokens"]


def test_experiments_are_of_the_training_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """New experiments are created with it; one made before (untagged) gets it; a user's choice stays."""
    import mlflow

    from leap import tracking

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    old = client.create_experiment("old")
    client.create_experiment("chosen", tags={"mlflow.experimentKind": "genai_development"})
    for name in ("new", "old", "chosen"):
        tracking.get_pipeline_run(Params.model_validate({"tracking": {"experiment": name}}))
    kinds = {e.name: e.tags.get("mlflow.experimentKind") for e in client.search_experiments()}
    assert kinds["new"] == kinds["old"] == "custom_model_development"
    assert kinds["chosen"] == "genai_development" and client.get_experiment(old).name == "old"
