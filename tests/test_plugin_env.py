"""An environment defined entirely in this file joins leap with one `register` call and runs the
whole pipeline (prepare -> demos -> aggregate -> train -> evaluate -> baseline -> rollout -> correct
-> aggregate -> train -> evaluate -> report) with a tiny random student.

While it runs, every stage's reads are recorded (tests/stage_reads.py), and dvc.yaml must declare
them: the code a stage imports, the templates it renders, the param keys it reads.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from pydantic import BaseModel, ConfigDict, Field
from typer.testing import CliRunner

from leap.agent import StepContext
from leap.envs import register
from leap.io import read_jsonl
from leap.records import Correction, PrivilegedState, StepLabel, Task, TrainExample, Trajectory
from tests.stage_reads import REPO, Reads, code_deps, recording
from tests.teachers.teacher_fakes import FakeOpenAI, Reply
from tests.test_pipeline import run_stages

# ---------------------------------------------------------------- the environment: find the cat


class CatParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_rooms: int = Field(default=3, ge=2)
    n_train: int = 6
    n_valid: int = 2
    n_test: int = 2
    n_test_ood: int = 2


class CatEnv:
    name = "cats"

    def __init__(self, params: CatParams, horizon: int) -> None:
        self.n = params.n_rooms
        self.room = 0
        self.task: Task | None = None

    def _info(self, won: bool = False, valid: bool = True) -> dict[str, Any]:
        assert self.task is not None
        cat = self.task.spec["cat"]
        acts = [f"go to room {r}" for r in range(1, self.n + 1) if r != self.room]
        if self.room == cat:
            acts.append("pet cat")
        expert = "pet cat" if self.room == cat else f"go to room {cat}"
        secrets = [] if self.room == cat else [f"the cat is in room {cat}"]
        return {
            "admissible_actions": acts,
            "privileged": {"expert_action": expert, "secrets": secrets},
            "won": won,
            "valid_action": valid,
            "score": float(won),
        }

    def reset(self, task: Task, *, seed: int | None = None) -> tuple[str, dict[str, Any]]:
        self.task, self.room = task, 0
        return f"You are in a hall with rooms 1 to {self.n}. {task.instruction}", self._info()

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        assert self.task is not None
        cat = self.task.spec["cat"]
        if action == "pet cat" and self.room == cat:
            return "The cat purrs.", 1.0, True, False, self._info(won=True)
        m = re.fullmatch(r"go to room (\d+)", action.strip())
        if m and 1 <= int(m.group(1)) <= self.n:
            self.room = int(m.group(1))
            seen = "A cat is sleeping here." if self.room == cat else "It is empty."
            return f"You are in room {self.room}. {seen}", 0.0, False, False, self._info()
        return "Nothing happens.", 0.0, False, False, self._info(valid=False)

    def close(self) -> None:
        pass


class CatTasks:
    def __init__(self, params: CatParams, seed: int) -> None:
        self.params, self.seed = params, seed

    def prepare(self) -> None:
        pass

    def tasks(self, split: str) -> list[Task]:
        rng = random.Random(f"{self.seed}-{split}")
        n = getattr(self.params, f"n_{split}", 0)
        out = []
        for k in range(n):
            cat = rng.randint(1, self.params.n_rooms)
            out.append(
                Task(
                    task_id=f"cats-{split}-{k}",
                    env="cats",
                    split=split,
                    category="near" if cat == 1 else "far",
                    instruction="Find the cat and pet it.",
                    spec={"cat": cat},
                )
            )
        return out

    def privileged_state(self, task: Task) -> PrivilegedState:
        cat = task.spec["cat"]
        return PrivilegedState(
            task_id=task.task_id,
            env="cats",
            facts={"cat_room": cat},
            plan=[f"go to room {cat}", "pet cat"],
            secrets=[f"the cat is in room {cat}"],
        )


def cat_oracle(ctx: StepContext, student: StepLabel | None, level: int) -> StepLabel:
    admissible = ctx.admissible_actions or []
    if "pet cat" in admissible:
        return StepLabel(reason="The cat is here, so I pet it.", action="pet cat")
    if level == 0 or not ctx.privileged:
        visited = {s.action for s in ctx.history}
        nxt = next((a for a in admissible if a not in visited), admissible[0])
        return StepLabel(reason="I have not looked in this room yet.", action=nxt)
    return StepLabel(
        reason="Cats like quiet rooms; this one is worth a look.", action=ctx.privileged["expert_action"]
    )


PROMPTS = Path(tempfile.mkdtemp(prefix="leap-cats-prompts-"))
atexit.register(shutil.rmtree, PROMPTS, ignore_errors=True)
(PROMPTS / "student_system.j2").write_text(
    'You are looking for a cat in a house. Commands: "go to room N", "pet cat".\n'
)
(PROMPTS / "teacher_correct.j2").write_text(
    '{% extends "teacher/correct.j2" %}\n'
    "{% block environment %}A house of rooms; a cat hides in one.{% endblock %}\n"
)
cli = typer.Typer(help="the cat house")


@cli.command()
def rooms(n: int = 3) -> None:
    """List the rooms."""
    typer.echo(", ".join(f"room {r}" for r in range(1, n + 1)))


register(
    "cats",
    make_env=CatEnv,
    make_tasks=CatTasks,
    params=CatParams,
    oracle=cat_oracle,
    prompts_dir=PROMPTS,
    cli=cli,
    cli_help="Commands of the cat house.",
)

# ---------------------------------------------------------------- the pipeline on it

KEY_ENV = "LEAP_TEST_CATS_KEY"


def _params(model_dir: Path) -> dict[str, Any]:
    from leap.config import Params

    raw = {
        "env": {"name": "cats", "horizon": 4, "cats": {"n_rooms": 3}},
        "student": {"model": str(model_dir), "max_new_tokens": 10, "batch_size": 6},
        "train": {"epochs": 1, "batch_size": 8},
        "loop": {"iterations": {1: 0}},
        "tracking": {"experiment": "cats"},
    }
    return Params.model_validate(raw).model_dump(mode="json")


@pytest.fixture(scope="session")
def cats_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Iterator[tuple[Path, dict[str, Reads]]]:
    """The pipeline on `cats`, with each stage's reads; then the LLM-teacher paths of `demos`
    (dataset source), `correct` and `baseline` (ReAct), against a scripted OpenAI server, in a copy."""
    root = tmp_path_factory.mktemp("cats_run")
    (root / "params.yaml").write_text(yaml.safe_dump(_params(tiny_model_dir), sort_keys=False))
    log: dict[str, Reads] = {}
    with recording(log):
        run_stages(root)
    llm = tmp_path_factory.mktemp("cats_llm") / "run"
    shutil.copytree(root, llm)
    fake = FakeOpenAI().start()
    teacher = '{"reason": "This room is worth a look.", "action": "go to room 2"}'
    fake.responder = lambda body, n: Reply(
        content=teacher if "response_format" in body else "Reason: look.\nAction: go to room 1"
    )
    exp = {
        "teacher": {
            "kind": "openai",
            "openai": {"model": "m", "base_url": fake.base_url, "api_key_env": KEY_ENV},
        },
        "demos": {"source": "dataset"},
        "baseline": {"react": True},
    }
    (llm / "exp.yaml").write_text(yaml.safe_dump(exp))
    # The student's own model as a local teacher (garbage replies, but in the two-line format), and
    # a student trained from the base model, which reads the LoRA settings.
    local = {"teacher": {"kind": "local", "local": {"model": "student", "max_new_tokens": 8}}}
    local |= {"train": {"init_from": "base"}, "demos": {"source": "dataset"}, "baseline": {"react": True}}
    (llm / "local.yaml").write_text(yaml.safe_dump(local))
    # A preference update reads its beta.
    (llm / "dpo.yaml").write_text(yaml.safe_dump({"train": {"method": "dpo"}}))
    # The constrained privileged expert (teacher.eta) of the local teacher and of the oracle.
    eta_local = {"teacher": {"kind": "local", "eta": 1.0, "constrained": {"samples": 2}}}
    eta_local["teacher"]["local"] = {"model": "student", "max_new_tokens": 8}
    (llm / "eta_local.yaml").write_text(yaml.safe_dump(eta_local))
    (llm / "eta_oracle.yaml").write_text(yaml.safe_dump({"teacher": {"eta": 1.0}}))
    os.environ[KEY_ENV] = "sk-test-cats"
    mp = pytest.MonkeyPatch()
    mp.chdir(llm)
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{llm}/mlflow.db")
    try:
        with recording(log):
            for exp_file, step in [
                ("exp.yaml", ["demos"]),
                ("exp.yaml", ["correct", "-i", "1"]),
                ("exp.yaml", ["baseline"]),
                ("local.yaml", ["demos"]),
                ("local.yaml", ["correct", "-i", "1"]),
                ("local.yaml", ["baseline"]),
                ("local.yaml", ["train", "-i", "1"]),
                ("dpo.yaml", ["train", "-i", "1"]),
                ("eta_oracle.yaml", ["correct", "-i", "1"]),
                ("eta_local.yaml", ["correct", "-i", "1"]),
            ]:
                res = CliRunner().invoke(_app(), ["-e", exp_file, *step], catch_exceptions=False)
                assert res.exit_code == 0, res.output
        assert len(fake.requests) > 0
    finally:
        mp.undo()
        fake.stop()
        os.environ.pop(KEY_ENV, None)
    yield root, log


def _app() -> Any:
    from leap.cli import app

    return app


def test_the_whole_loop_runs_on_an_environment_defined_here(cats_run: tuple[Path, dict[str, Reads]]) -> None:
    root, _ = cats_run
    demos = read_jsonl(root / "data/iter_0/demos.jsonl", Trajectory)
    assert demos and all(t.env == "cats" and t.success for t in demos)
    rollouts = read_jsonl(root / "data/iter_1/rollouts.jsonl", Trajectory)
    assert len(rollouts) == 6 and all(t.policy == "student:iter_0" for t in rollouts)
    corrs = read_jsonl(root / "data/iter_1/corrections.jsonl", Correction)
    assert corrs and all(c.teacher is not None and c.teacher_id == "oracle" for c in corrs)
    train = read_jsonl(root / "data/iter_1/train.jsonl", TrainExample)
    system = train[0].prompt[0].content
    assert system.startswith("You are looking for a cat in a house.")  # its own student template
    assert all("the cat is in room" not in m.content for ex in train for m in ex.prompt)
    for i in (0, 1):
        assert (root / f"models/iter_{i}/adapter_config.json").exists()
        assert set(json.loads((root / f"metrics/iter_{i}.json").read_text())) == {"valid", "test", "test_ood"}
    summary = json.loads((root / "reports/summary.json").read_text())
    assert summary["env"] == "cats" and "oracle:l0" in summary["baselines"]


def test_its_params_section_is_validated_and_its_cli_mounted(tmp_path: Path) -> None:
    from leap.cli import mount_env_commands
    from leap.config import ConfigError, load_params

    p = tmp_path / "params.yaml"
    p.write_text("env:\n  name: cats\n  cats:\n    n_rooms: one\n")
    with pytest.raises(ConfigError, match=rf"{p}:4: env.cats.n_rooms"):
        load_params(p)
    mount_env_commands()
    res = CliRunner().invoke(_app(), ["cats", "rooms", "--n", "2"])
    assert res.exit_code == 0 and res.output.strip() == "room 1, room 2"


# ---------------------------------------------------------------- dvc.yaml declares what each stage reads

ENV = "cats"
# Param keys no stage output depends on: where the teacher's cache lives, and MLflow (a side channel;
# report lists tracking.experiment and tracking.mlflow_uri so that a new target is re-synced).
NOT_INPUTS = ("teacher.cache_dir", "tracking")
# Listed though this run cannot read them: report writes its ALFWorld note only when env.name is
# alfworld (it reads env.alfworld.data_dir then, i.e. a key of env.${env.name}).
READ_ELSEWHERE = {"report": ["env.${env.name}"]}
# (label of the recorded run, dvc.yaml stage, foreach key, foreach item)
STAGES = [
    ("prepare", "prepare", None, None),
    ("demos", "demos", None, None),
    ("aggregate@0", "aggregate_bc", None, None),
    ("train@0", "train_bc", None, None),
    ("evaluate@0", "evaluate_bc", None, None),
    ("baseline", "baseline", None, None),
    ("rollout@1", "rollout", "1", "0"),
    ("correct@1", "correct", "1", "0"),
    ("realize@1", "realize", "1", "0"),
    ("aggregate@1", "aggregate", "1", "0"),
    ("train@1", "train", "1", "0"),
    ("evaluate@1", "evaluate", "1", "0"),
    ("report", "report", None, None),
]


def _generic(text: str) -> str:
    """A recorded path or key with the run's environment written as dvc.yaml writes it."""
    return re.sub(rf"(^|[./]){ENV}(?=$|[./])", r"\1${env.name}", text)


def _template_file(name: str) -> str:
    head, _, rest = name.partition("/")
    if head == ENV:
        return f"src/leap/envs/{ENV}/prompts/{rest}"
    return f"src/leap/prompts/{name}"


def required(label: str, reads: Reads) -> tuple[set[str], set[str]]:
    """(source and template paths, param keys) that stage ``label`` read, in dvc.yaml's terms."""
    name = label.split("@")[0]
    deps = code_deps(f"leap.stages.{name}")
    deps |= {f"src/leap/envs/{env}" for env in reads.env_code}
    deps |= {_template_file(t) for t in reads.templates}
    params = {k for k in reads.params if not k.startswith(NOT_INPUTS)}
    return {_generic(d) for d in deps}, {_generic(p) for p in params}


def declared(
    dvc: dict[str, Any], stage: str, key: str | None, item: str | None
) -> tuple[list[str], list[str]]:
    body = dvc["stages"][stage]
    body = body.get("do", body)

    def sub(s: str) -> str:
        return s.replace("${key}", key or "").replace("${item}", item or "")

    deps = [sub(d) for d in body.get("deps", []) if sub(d).startswith("src/")]
    return deps, [sub(p) for p in body.get("params", [])]


def _covered(item: str, entries: list[str], sep: str) -> bool:
    return any(item == e or item.startswith(e + sep) for e in entries)


def missing(dvc: dict[str, Any], log: dict[str, Reads]) -> dict[str, list[str]]:
    """For each dvc stage, what it reads that its deps/params do not declare."""
    out: dict[str, list[str]] = {}
    for label, stage, key, item in STAGES:
        deps, params = declared(dvc, stage, key, item)
        need_deps, need_params = required(label, log[label])
        gaps = sorted(d for d in need_deps if not _covered(d, deps, "/"))
        gaps += sorted(f"param {p}" for p in need_params if not _covered(p, params, "."))
        if gaps:
            out[stage] = gaps
    return out


def _dvc() -> dict[str, Any]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())


def test_dvc_yaml_declares_everything_each_stage_reads(cats_run: tuple[Path, dict[str, Reads]]) -> None:
    _, log = cats_run
    assert {label for label, *_ in STAGES} <= set(log)
    gaps = missing(_dvc(), log)
    assert not gaps, "dvc.yaml omits what these stages read:\n" + yaml.safe_dump(gaps)


def test_every_declared_dependency_is_needed(cats_run: tuple[Path, dict[str, Reads]]) -> None:
    """Removing any code, template or param entry of any stage makes the check above fail (so each
    one is read, and the check is not vacuous)."""
    _, log = cats_run
    unneeded = []
    for _, stage, _key, _item in STAGES:
        dvc = _dvc()
        body = dvc["stages"][stage].get("do", dvc["stages"][stage])
        for field in ("deps", "params"):
            for entry in list(body.get(field, [])):
                if field == "deps" and not entry.startswith("src/"):
                    continue  # data dependencies: not derived here
                if field == "params" and (
                    entry.startswith(NOT_INPUTS) or entry in READ_ELSEWHERE.get(stage, [])
                ):
                    continue
                body[field].remove(entry)
                if stage not in missing(dvc, log):
                    unneeded.append(f"{stage}: {entry}")
                body[field].append(entry)
    assert not unneeded, "dvc.yaml lists what no stage needs:\n  " + "\n  ".join(unneeded)


def test_no_declared_directory_holds_code_its_stage_does_not_run(
    cats_run: tuple[Path, dict[str, Reads]],
) -> None:
    """A directory dep must be read whole (else list its files): e.g. src/leap/students holds the
    bench, which no stage runs. The environment's package is the exception: the registry reaches
    any of its files."""
    _, log = cats_run
    broad = []
    for label, stage, key, item in STAGES:
        need, _ = required(label, log[label])
        for dep in declared(_dvc(), stage, key, item)[0]:
            path = REPO / dep
            if "${env.name}" in dep or not path.is_dir():
                continue
            files = {str(f.relative_to(REPO)) for f in path.rglob("*") if f.suffix in (".py", ".j2")}
            if unread := sorted(files - need):
                broad.append(f"{stage}: {dep} ({', '.join(unread)})")
    assert not broad, "dvc.yaml depends on whole directories where a stage reads a part:\n  " + "\n  ".join(
        broad
    )
