"""MLflow conventions, in one place.

- One MLflow experiment per experiment definition (``tracking.experiment``).
- One *pipeline run* per distinct params.yaml (tag ``leap.pipeline`` = params fingerprint), holding
  all params and the learning curves (metrics with ``step = iteration``), so ablations (privilege
  level, update method, teacher) sit side by side in the MLflow UI's run comparison.
- Each stage execution is a *nested* run under it (``train@1``, ``evaluate@2``...) with its own
  details (loss history, teacher token counts, ...).

DVC may skip stages whose inputs did not change, so the `report` stage re-syncs every
iteration's metrics into the pipeline run; logging is therefore idempotent per (key, step).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from leap.config import Params, flatten

log = logging.getLogger(__name__)

_SECRETISH = re.compile(r"(api[_-]?key|secret|password|(^|_)token)$", re.I)
_KEYLIKE = re.compile(r"^(sk-|hf_|ghp_)|^[A-Za-z0-9_\-]{32,}$")


def redact_params(flat: dict[str, Any]) -> dict[str, Any]:
    """Drop anything that looks like a credential. Params only hold env-var *names*, but a
    user may still paste a key somewhere by mistake: it must never reach MLflow."""
    out = {}
    for k, v in flat.items():
        looks_like_key = isinstance(v, str) and _KEYLIKE.search(v) and not k.endswith("api_key_env")
        secret_name = _SECRETISH.search(k.split(".")[-1]) and not k.endswith("_env")
        if looks_like_key or secret_name:
            out[k] = "<redacted>"
        else:
            out[k] = v
    return out


def _tracking_uri(params: Params) -> str:
    # The environment wins so that runs from another directory (make smoke, tests) can share
    # one store; it is not a param, so it never changes what DVC re-runs.
    uri = os.environ.get("MLFLOW_TRACKING_URI") or params.tracking.mlflow_uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///") :]).resolve())
    return uri


def _client(params: Params) -> Any:
    # MLflow's telemetry thread sets and deletes a variable of os.environ while the stage runs; a
    # library that copies os.environ meanwhile (fsspec, imported by the trainer) fails with a
    # KeyError (seen in a queued `leap train`). Offline and private: it is off unless asked for.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    mlflow.set_tracking_uri(_tracking_uri(params))
    return mlflow.MlflowClient()


# MLflow 3's UI opens an experiment by its kind: "custom_model_development" (machine learning) opens
# on the training runs; an untagged one is inferred, and opened on the (empty) GenAI overview.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def _experiment_id(client: Any, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is None:
        artifacts = Path("mlartifacts").resolve() / name
        return str(client.create_experiment(name, artifact_location=artifacts.as_uri(), tags=EXPERIMENT_KIND))
    for key, value in EXPERIMENT_KIND.items():
        if key not in exp.tags:  # made before leap set the kind; a kind a user chose is kept
            client.set_experiment_tag(exp.experiment_id, key, value)
    return str(exp.experiment_id)


def pipeline_run_name(params: Params) -> str:
    if params.tracking.run_name:
        return params.tracking.run_name
    t = params.teacher
    eta = "" if t.eta is None else f"-eta{t.eta:g}"
    return f"{params.env.name}-{t.kind}-l{t.privilege_level}{eta}-{params.train.method}"


def pipeline_tags(params: Params) -> dict[str, str]:
    return {
        "leap.kind": "pipeline",
        "leap.pipeline": params.fingerprint(),
        "env": params.env.name,
        "teacher": params.teacher.kind,
        "privilege_level": str(params.teacher.privilege_level),
        "eta": "none" if params.teacher.eta is None else f"{params.teacher.eta:g}",
        "update_method": params.train.method,
        "student": params.student.model,
    }


def get_pipeline_run(params: Params) -> str:
    """Find (or create) the pipeline run for these params; returns its run id."""
    client = _client(params)
    exp_id = _experiment_id(client, params.tracking.experiment)
    fp = params.fingerprint()
    found = client.search_runs(
        [exp_id],
        filter_string=f"tags.`leap.pipeline` = '{fp}' and tags.`leap.kind` = 'pipeline'",
        max_results=1,
    )
    if found:
        return str(found[0].info.run_id)
    run = client.create_run(exp_id, run_name=pipeline_run_name(params), tags=pipeline_tags(params))
    rid = str(run.info.run_id)
    flat = redact_params(flatten(params.model_dump(mode="json")))
    from mlflow.entities import Param

    items = [Param(k, str(v)[:6000]) for k, v in sorted(flat.items())]
    for i in range(0, len(items), 100):
        client.log_batch(rid, params=items[i : i + 100])
    client.set_terminated(rid, status="FINISHED")
    return rid


class StageRun:
    """A nested MLflow run for one stage execution; metrics also go to the pipeline run."""

    def __init__(
        self, params: Params, client: Any, run_id: str, parent_id: str, iteration: int | None
    ) -> None:
        self.params = params
        self.client = client
        self.run_id = run_id
        self.parent_id = parent_id
        self.iteration = iteration

    def log_metrics(
        self, metrics: dict[str, float], step: int | None = None, *, to_pipeline: bool = False
    ) -> None:
        from mlflow.entities import Metric

        ts = _now_ms()
        step_v = step if step is not None else (self.iteration or 0)
        ms = [Metric(k, float(v), ts, step_v) for k, v in metrics.items() if v is not None]
        if ms:
            self.client.log_batch(self.run_id, metrics=ms)
            if to_pipeline:
                log_pipeline_metrics(self.params, {m.key: m.value for m in ms}, step_v, client=self.client)

    def log_params(self, values: dict[str, Any]) -> None:
        from mlflow.entities import Param

        flat = redact_params(flatten(values))
        self.client.log_batch(self.run_id, params=[Param(k, str(v)[:6000]) for k, v in flat.items()])

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        p = Path(path)
        if p.is_dir():
            self.client.log_artifacts(self.run_id, str(p), artifact_path)
        elif p.exists():
            self.client.log_artifact(self.run_id, str(p), artifact_path)

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


@contextlib.contextmanager
def stage_run(params: Params, stage: str, iteration: int | None = None) -> Iterator[StageRun]:
    """Open a nested run ``stage@iteration`` under the pipeline run; FAILED if the stage raises."""
    client = _client(params)
    parent = get_pipeline_run(params)
    exp_id = client.get_run(parent).info.experiment_id
    name = stage if iteration is None else f"{stage}@{iteration}"
    tags = {
        **pipeline_tags(params),
        "leap.kind": "stage",
        "stage": stage,
        "mlflow.parentRunId": parent,
    }
    if iteration is not None:
        tags["iteration"] = str(iteration)
    run = client.create_run(exp_id, run_name=name, tags=tags)
    sr = StageRun(params, client, str(run.info.run_id), parent, iteration)
    try:
        yield sr
    except BaseException:
        client.set_terminated(sr.run_id, status="FAILED")
        raise
    client.set_terminated(sr.run_id, status="FINISHED")


def metric_key(name: str) -> str:
    """A metric name MLflow accepts: the pooled split "test+test_ood" becomes "test_and_test_ood"."""
    return name.replace("+", "_and_")


def log_pipeline_metrics(params: Params, metrics: dict[str, float], step: int, *, client: Any = None) -> None:
    """Log metrics to the pipeline run, skipping (key, step, value) already there (idempotent)."""
    from mlflow.entities import Metric

    metrics = {metric_key(k): v for k, v in metrics.items()}

    client = client or _client(params)
    rid = get_pipeline_run(params)
    ts = _now_ms()
    todo = []
    for k, v in metrics.items():
        if v is None:
            continue
        hist = client.get_metric_history(rid, k)
        if any(m.step == step and abs(m.value - float(v)) < 1e-12 for m in hist):
            continue  # already there; a changed value (e.g. after a code fix) is logged again
        todo.append(Metric(k, float(v), ts, step))
    for i in range(0, len(todo), 500):
        client.log_batch(rid, metrics=todo[i : i + 500])


def log_pipeline_artifact(
    params: Params, path: str | os.PathLike[str], artifact_path: str | None = None
) -> None:
    client = _client(params)
    rid = get_pipeline_run(params)
    p = Path(path)
    if p.is_dir():
        client.log_artifacts(rid, str(p), artifact_path)
    elif p.exists():
        client.log_artifact(rid, str(p), artifact_path)


def set_pipeline_tags(params: Params, tags: dict[str, str]) -> None:
    client = _client(params)
    rid = get_pipeline_run(params)
    for k, v in tags.items():
        client.set_tag(rid, k, v)


def shared_store(params: Params) -> str:
    """An absolute tracking URI with the experiment created here, for runs made in other directories
    (DVC's queue runs each experiment in a temporary copy): their runs and artifacts land in this
    store, not in the copy. Returns the URI (to be exported as MLFLOW_TRACKING_URI)."""
    uri = _tracking_uri(params)
    _experiment_id(_client(params), params.tracking.experiment)
    return uri


def log_study(
    params: Params,
    study: str,
    rows: list[dict[str, Any]],
    split: str,
    files: list[Path],
    extra: dict[str, float] | None = None,
) -> str:
    """One MLflow run per study (tag ``leap.kind = study``; found again on a re-run) with each variant's
    success, its interval, average actions and realizability as metrics (and ``extra`` ones: the
    replicates' mean), and the study's plots and table as artifacts. The variants' own pipeline runs
    hold their params."""
    from mlflow.entities import Metric

    client = _client(params)
    exp_id = _experiment_id(client, params.tracking.experiment)
    found = client.search_runs(
        [exp_id], filter_string=f"tags.`leap.kind` = 'study' and tags.`leap.study` = '{study}'", max_results=1
    )
    if found:
        rid = str(found[0].info.run_id)
    else:
        tags = {"leap.kind": "study", "leap.study": study, "env": params.env.name}
        rid = str(client.create_run(exp_id, run_name=f"study-{study}", tags=tags).info.run_id)
    ts = _now_ms()
    metrics = []
    for r in rows:
        v = re.sub(r"[^A-Za-z0-9_\-.]", "_", str(r["variant"]))
        s = r["splits"].get(split)
        if s:
            lo, hi = s["success_ci"]
            values = {"success_rate": s["success_rate"], "success_ci_lo": lo, "success_ci_hi": hi}
            values["avg_actions"] = s["avg_actions"]
            metrics += [Metric(f"{v}/{split}/{k}", float(x), ts, 0) for k, x in values.items()]
        for it, real in r["realize"].items():
            metrics += [
                Metric(f"{v}/realize/{k}", float(x), ts, int(it))
                for k, x in real.items()
                if isinstance(x, int | float) and x is not None
            ]
    # x == x: not NaN (one replicate has no interval)
    metrics += [Metric(metric_key(k), float(x), ts, 0) for k, x in (extra or {}).items() if x == x]
    for i in range(0, len(metrics), 500):
        client.log_batch(rid, metrics=metrics[i : i + 500])
    client.set_tag(rid, "leap.variants", ",".join(str(r["variant"]) for r in rows))
    for f in files:
        if f.exists():
            client.log_artifact(rid, str(f), "reports")
    client.set_terminated(rid, status="FINISHED")
    return rid
