"""The studies (`leap study`, make ablation-privilege / ablation-update / self-improve): variants,
their names and overrides, the queue (a second call queues nothing), results read from `dvc exp show
--json` (a real DVC 3.67 output of two toy experiments, trimmed to the metrics files read), the
table, plots and the MLflow study run."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from leap import studies
from leap.config import load_params
from leap.stats import wilson

REPO = Path(__file__).resolve().parents[1]
SHOW = json.loads((REPO / "tests/fixtures/dvc_exp_show.json").read_text())


def _toy_params(tmp_path: Path) -> Path:
    p = tmp_path / "params.yaml"
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["env"]["name"] = "toy"
    raw["loop"]["iterations"] = {"1": 0}  # as the toy experiments of the fixture
    p.write_text(yaml.safe_dump(raw, sort_keys=False))
    return p


def test_variants_of_each_study_set_the_same_keys() -> None:
    priv = studies.variants("privilege", etas=[0.5, 2], eta_level=3)
    assert [v.key for v in priv] == ["l0", "l1", "l2", "l3", "l4", "eta0.5", "eta2"]
    assert priv[5].overrides == {"teacher.privilege_level": 3, "teacher.eta": 0.5}
    assert priv[0].overrides == {"teacher.privilege_level": 0, "teacher.eta": None}  # η off, explicitly
    upd = studies.variants("update", beta=0.3)
    assert [v.overrides for v in upd] == [
        {"train.method": m, "train.iteration_learning_rate": lr, "train.beta": 0.3}
        for m, lr in (("sft", None), ("dpo", 1e-4), ("kto", 1e-4))
    ]  # SFT keeps train.learning_rate, explicitly; the preference methods their own
    lrs = [
        v.overrides["train.iteration_learning_rate"] for v in studies.variants("update", preference_lr=5e-5)
    ]
    assert lrs == [None, 5e-5, 5e-5]
    selfi = studies.variants("self-improve")
    assert selfi[0].overrides["teacher.kind"] == "local" and selfi[1].overrides["teacher.kind"] == "oracle"
    seeds = studies.variants("seeds", seeds=[3, 5])
    assert [(v.key, v.overrides) for v in seeds] == [
        ("seed3", {"train.seed": 3}),
        ("seed5", {"train.seed": 5}),
    ]
    for vs in (priv, upd, selfi, seeds):
        assert len({frozenset(v.overrides) for v in vs}) == 1
    with pytest.raises(ValueError, match="unknown study"):
        studies.variants("nope")


def test_plan_names_variants_by_their_resolved_params(tmp_path: Path) -> None:
    params = _toy_params(tmp_path)
    vs = studies.variants("privilege", etas=[1.0])
    scale = REPO / "experiments/studies/small.yaml"
    a = studies.plan("privilege", params, [scale], vs, out_dir=tmp_path / "s")
    b = studies.plan("privilege", params, [scale], vs, out_dir=tmp_path / "s")
    assert [p.name for p in a] == [p.name for p in b]  # a second call finds the same names
    assert len({p.name for p in a}) == 6 and a[0].name.startswith("privilege-l0-")
    # The resolved params are the scale's plus the variant's, and the -S overrides say so.
    p4, eta = a[4].params, a[5].params
    assert p4.teacher.privilege_level == 4 and p4.teacher.eta is None and p4.loop.iterations == {1: 0}
    assert eta.teacher.eta == 1.0 and eta.tracking.experiment == "leap-studies"
    assert "teacher.eta=1.0" in a[5].overrides and "teacher.eta=null" in a[4].overrides
    # params.yaml runs toy: the scale's ALFWorld counts are not pushed onto it.
    assert not any(o.lstrip("+").startswith("env.alfworld") for o in a[0].overrides)
    # Another scale is another set of experiments.
    toy = studies.plan(
        "privilege", params, [scale, REPO / "experiments/studies/toy.yaml"], vs, tmp_path / "s"
    )
    assert not {p.name for p in toy} & {p.name for p in a}
    assert toy[0].params.env.horizon == 4


def test_experiments_are_read_from_dvc_exp_show() -> None:
    exps = studies.experiments(SHOW)
    assert set(exps) == {"v-l0", "v-l4"}
    assert all(e.state == "success" for e in exps.values())
    assert exps["v-l4"].metrics["metrics/stages/realize_1.json"]["realize/n"] > 0
    broken = copy.deepcopy(SHOW)
    del broken[1]["experiments"][0]["revs"][0]["data"]["metrics"]["reports/summary.json"]
    assert {e.state for e in studies.experiments(broken).values()} == {"failed", "success"}


class FakeDvc:
    """DVC's queue, as far as `studies.run` uses it: queued experiments finish when the queue starts
    (with the metrics of the real toy experiment v-l0), one of them failing the first time if asked."""

    def __init__(self, fail_first: str | None = None, worker_stops_after: int | None = None) -> None:
        self.calls: list[list[str]] = []
        self.queue: dict[str, str] = {}
        self.fail_first = fail_first
        self.stops_after = worker_stops_after  # the first worker runs this many tasks, then stops
        exp = SHOW[1]["experiments"][1]
        assert exp["name"] == "v-l0"
        self.template = exp

    def __call__(self, args: list[str]) -> str:
        self.calls.append(args)
        if args[:2] == ["exp", "show"]:
            out = copy.deepcopy(SHOW[:2])
            out[1]["experiments"] = []
            for name, state in self.queue.items():
                if state in ("Success", "Failed"):
                    e = copy.deepcopy(self.template)
                    e["name"] = e["revs"][0]["name"] = name
                    e["executor"]["state"] = state.lower()
                    out[1]["experiments"].append(e)
            return json.dumps(out)
        if args[:2] == ["queue", "status"]:
            assert sum(c[:2] == ["queue", "status"] for c in self.calls) < 50, (
                "waits on a queue that never runs"
            )
            rows = [f"abc1234  {n}  06:00 AM   {s}" for n, s in self.queue.items()]
            return "\n".join(
                ["Task     Name    Created    Status", *rows, "", "Worker status: 0 active, 0 idle"]
            )
        if args[:3] == ["exp", "run", "--queue"]:
            self.queue[args[4]] = "Queued"
            return ""
        if args[:2] == ["queue", "start"]:
            budget, self.stops_after = self.stops_after, None
            for n, s in self.queue.items():
                if s == "Queued" and budget != 0:
                    budget = None if budget is None else budget - 1
                    failed = n == self.fail_first
                    self.fail_first = None if failed else self.fail_first
                    self.queue[n] = "Failed" if failed else "Success"
            return ""
        if args[:2] in (["queue", "remove"], ["exp", "remove"]):
            self.queue.pop(args[2], None)
            return ""
        raise AssertionError(f"unexpected dvc {args}")

    def queued(self) -> list[str]:
        return [c[4] for c in self.calls if c[:3] == ["exp", "run", "--queue"]]


def test_a_second_call_queues_no_finished_variant(tmp_path: Path) -> None:
    params = _toy_params(tmp_path)
    planned = studies.plan("update", params, [], studies.variants("update"), out_dir=tmp_path / "s")
    names = [p.name for p in planned]
    dvc = FakeDvc(fail_first=names[1])
    log: list[str] = []
    assert studies.run("update", planned, dvc, poll_s=0, echo=log.append) == names
    queued = [c for c in dvc.calls if c[:3] == ["exp", "run", "--queue"]]
    assert [q[4] for q in queued] == names and "train.method=dpo" in queued[1]
    assert any("failed" in line for line in log)
    # Again: only the failed variant is queued (after removing it), the finished ones are not.
    dvc.calls.clear()
    assert studies.run("update", planned, dvc, poll_s=0, echo=log.append) == [names[1]]
    assert ["queue", "remove", names[1]] in dvc.calls
    # And a third time nothing at all: not even the queue is started.
    dvc.calls.clear()
    assert studies.run("update", planned, dvc, poll_s=0, echo=log.append) == []
    assert not [c for c in dvc.calls if c[0] == "queue" and c[1] == "start"]
    assert dvc.queued() == []


def test_a_worker_that_stops_with_variants_queued_is_started_again(tmp_path: Path) -> None:
    planned = studies.plan("update", _toy_params(tmp_path), [], studies.variants("update"), tmp_path / "s")
    dvc = FakeDvc(worker_stops_after=1)
    log: list[str] = []
    assert studies.run("update", planned, dvc, poll_s=0, echo=log.append) == [p.name for p in planned]
    assert [c for c in dvc.calls if c[:2] == ["queue", "start"]] == [["queue", "start", "-j", "1"]] * 2
    assert any("starting it again" in line for line in log)
    assert set(dvc.queue.values()) == {"Success"}


def test_report_writes_the_table_plots_and_an_mlflow_study_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = _toy_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    vs = [v for v in studies.variants("privilege", etas=[1.0]) if v.key in ("l0", "l4", "eta1")]
    planned = studies.plan("privilege", params, [], vs, out_dir=tmp_path / "s")
    real = studies.experiments(SHOW)
    # The η variant borrows λ4's results (the fixture has two experiments): a row of its own.
    exps = {p.name: real[f"v-{p.variant.key.replace('eta1', 'l4')}"] for p in planned}
    result = studies.report("privilege", planned, exps)
    assert result["missing"] == []
    rows = {r["variant"]: r for r in result["variants"]}
    summary = real["v-l4"].metrics["reports/summary.json"]["iterations"]["1"]["valid"]
    v = rows["l4"]["splits"]["valid"]
    assert v["success_rate"] == summary["success_rate"] and v["avg_actions"] == summary["avg_actions"]
    assert v["success_ci"] == pytest.approx(
        wilson(round(summary["success_rate"] * summary["n"]), summary["n"])
    )
    realize = real["v-l4"].metrics["metrics/stages/realize_1.json"]
    assert rows["l4"]["realize"]["1"]["action_match_rate"] == realize["realize/action_match_rate"]
    assert set(rows["l0"]["by_category"]["valid"]) == {"smell", "no_smell"}
    md = (tmp_path / "reports/studies/privilege.md").read_text()
    assert md.count("\n") == 5 and "| λ4 |" in md and "| η=1 (λ4) |" in md
    for png in ("reports/privilege_tradeoff.png", "reports/privilege_per_task_type.png"):
        assert (tmp_path / png).stat().st_size > 5000
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name(load_params(params).tracking.experiment)
    (run,) = client.search_runs([exp.experiment_id], filter_string="tags.`leap.kind` = 'study'")
    assert run.data.tags["leap.study"] == "privilege" and run.data.tags["leap.variants"] == "l0,l4,eta1"
    assert run.data.metrics["l4/valid/success_rate"] == summary["success_rate"]
    assert run.data.metrics["l0/realize/teacher_logprob_per_token"] < 0
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "reports")}
    assert "reports/privilege_tradeoff.png" in arts
    # Reporting again reuses the study run.
    studies.report("privilege", planned, exps)
    assert len(client.search_runs([exp.experiment_id], filter_string="tags.`leap.kind` = 'study'")) == 1


def test_a_study_with_nothing_finished_says_so(tmp_path: Path) -> None:
    planned = studies.plan("update", _toy_params(tmp_path), [], studies.variants("update"), tmp_path / "s")
    with pytest.raises(RuntimeError, match="no variant of 'update' has finished"):
        studies.report("update", planned, {}, track=False)


def test_each_study_has_a_default_scale_and_the_update_one_only_caps_corrections(tmp_path: Path) -> None:
    params = REPO / "params.yaml"
    assert set(studies.DEFAULT_SCALES) == set(studies.STUDIES)
    as_is = [studies.Variant("as-is", 0, {})]
    resolved = {
        study: studies.plan(study, params, [scale], as_is, tmp_path / "s")[0].params
        for study, scale in studies.DEFAULT_SCALES.items()
    }
    update, privilege = resolved["update"], resolved["privilege"]
    assert update.loop.max_corrections_per_trajectory == 6
    assert privilege.loop.max_corrections_per_trajectory is None
    # Everything else as the privilege study's scale: the same BC student and first rollouts.
    assert update.model_dump(exclude={"loop"}) == privilege.model_dump(exclude={"loop"})
    assert update.loop.model_dump(exclude={"max_corrections_per_trajectory"}) == privilege.loop.model_dump(
        exclude={"max_corrections_per_trajectory"}
    )


def test_the_learning_curve_plot_has_an_interval_per_iteration(tmp_path: Path) -> None:
    from matplotlib.image import imread

    rows = [
        {
            "label": "student as its own teacher",
            "learning_curve": {"valid": [0.4, 0.1]},
            "splits": {"valid": {"n": 30}},
        },
        {
            "label": "oracle teacher",
            "learning_curve": {"valid": [0.4, 0.5, 0.6]},
            "splits": {},
        },  # no n: no bars
    ]
    out = tmp_path / "curve.png"
    studies.plot_learning_curves(rows, "valid", out)
    assert imread(out).shape[0] > 100


def test_replicates_report_each_seeds_gain_over_its_bc_and_their_mean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # By hand: gains +0.2, 0.0, +0.1 -> mean 0.1, sd 0.1, t(0.975, 2) = 4.3027 -> ±0.2484.
    rows = [{"vs_bc": {"test": {"diff": d}}} for d in (0.2, 0.0, 0.1)] + [{"vs_bc": {}}]
    m = studies.mean_vs_bc(rows)["test"]
    assert m["k"] == 3 and m["mean"] == pytest.approx(0.1)
    assert m["ci"] == pytest.approx([0.1 - 0.24841, 0.1 + 0.24841], abs=1e-4)
    assert (
        studies.mean_vs_bc(rows[:1])["test"]["ci"][0] != studies.mean_vs_bc(rows[:1])["test"]["ci"][0]
    )  # NaN
    # End to end on the fixture's two real toy experiments, as two replicates.
    params = _toy_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    planned = studies.plan("seeds", params, [], studies.variants("seeds", seeds=[0, 1]), tmp_path / "s")
    real = studies.experiments(SHOW)
    exps = {planned[0].name: real["v-l0"], planned[1].name: real["v-l4"]}
    result = studies.report("seeds", planned, exps)
    gains = [
        real[n].metrics["reports/summary.json"]["comparisons"]["test_ood"]["iter_1_vs_bc"]["diff"]
        for n in ("v-l0", "v-l4")
    ]
    assert result["mean_vs_bc"]["test_ood"]["diffs"] == gains
    assert result["variants"][0]["label"] == "train.seed 0"
    md = (tmp_path / "reports/studies/seeds.md").read_text()
    assert "| test_ood |" in md and "mean [95% t-interval over replicates]" in md
    assert (tmp_path / "reports/seeds.png").stat().st_size > 5000
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name(load_params(params).tracking.experiment)
    (run,) = client.search_runs([exp.experiment_id], filter_string="tags.`leap.study` = 'seeds'")
    assert run.data.metrics["mean/test_ood/diff_vs_bc"] == pytest.approx(sum(gains) / 2)
