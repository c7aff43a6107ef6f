"""`leap`: one sub-command per pipeline stage (what dvc.yaml calls), plus tools for people:
playing an environment by hand, viewing trajectories, checking params, running experiments."""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from leap.config import ConfigError, Params, load_params
from leap.io import RecordError

app = typer.Typer(
    name="leap",
    help="LEAP: train LLM agents with privileged AI feedback. Stages: prepare, demos, aggregate, train, "
    "rollout, correct, realize, evaluate, baseline, report (dvc.yaml runs them; `dvc repro` runs the loop).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
exp_app = typer.Typer(
    help="Experiment definitions (experiments/*.yaml) on top of params.yaml.", no_args_is_help=True
)
app.add_typer(exp_app, name="exp")

log = logging.getLogger("leap")

_state: dict[str, Any] = {"params": Path(os.environ.get("LEAP_PARAMS", "params.yaml")), "experiment": None}

IterOpt = Annotated[
    int, typer.Option("--iteration", "-i", min=0, help="LEAP iteration (0 = behaviour cloning)")
]


@app.callback()
def _main(
    params: Annotated[Path, typer.Option("--params", "-p", help="params file")] = _state["params"],
    experiment: Annotated[
        Path | None, typer.Option("--experiment", "-e", help="experiment definition overriding params")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(show_path=False, rich_tracebacks=False)],
    )
    for noisy in ("httpx", "urllib3", "alembic", "mlflow", "filelock", "textworld", "datasets", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _state["params"] = params
    _state["experiment"] = experiment


def _fail(msg: str, code: int = 2) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _params() -> Params:
    try:
        return load_params(_state["params"], _state["experiment"])
    except ConfigError as e:
        _fail(str(e))
        raise  # unreachable; keeps type checkers happy


def _run_stage(stage: str, iteration: int | None, fn: Any) -> Any:
    """Validate params, run the stage inside its MLflow run; turn known failures into clear
    one-line errors (the stage has written nothing final in that case). The stage module writes
    all of its outputs (and seeds what it draws from); the CLI only logs to MLflow."""
    params = _params()
    from leap import tracking

    if iteration is not None and iteration != 0 and iteration not in params.loop.iterations:
        _fail(f"iteration {iteration} is not in loop.iterations {list(params.loop.iterations)}")
    try:
        with tracking.stage_run(params, stage, iteration) as run:
            return fn(params, run)
    except (RecordError, ConfigError, FileNotFoundError) as e:
        _fail(str(e))


def _run_metrics_stage(stage: str, iteration: int, run_stage: Any) -> None:
    """A stage whose ``run_stage(params)`` returns metrics for the pipeline run's learning curve."""
    _run_stage(
        stage,
        iteration,
        lambda params, run: run.log_metrics(run_stage(params), step=iteration, to_pipeline=True),
    )


# ---------------------------------------------------------------- stages


@app.command()
def prepare() -> None:
    """Create the tasks of every split and the training tasks' privileged states."""
    from leap.stages import prepare as stage

    def fn(params: Params, run: Any) -> None:
        counts = stage.run(params)
        run.log_metrics({f"prepare/n_{k}": float(v) for k, v in counts.items()}, step=0)

    _run_stage("prepare", None, fn)


@app.command()
def demos() -> None:
    """Write behaviour-cloning demonstrations with the privileged oracle (iteration 0)."""
    from leap.stages import demos as stage

    _run_metrics_stage("demos", 0, stage.run)


@app.command()
def aggregate(iteration: IterOpt) -> None:
    """Build training set i: demonstrations (i=0) or training set i-1 plus corrections i."""
    from leap.stages import aggregate as stage

    _run_metrics_stage("aggregate", iteration, lambda params: stage.run(params, iteration))


@app.command()
def train(iteration: IterOpt) -> None:
    """Train student i (LoRA adapter) on training set i with SFT, DPO or KTO."""
    from leap import paths
    from leap.stages import train as stage

    def fn(params: Params, run: Any) -> None:
        res = stage.run(params, iteration)
        for step, loss in res.get("loss_history", []):
            run.log_metrics({"train/step_loss": loss}, step=int(step))
        scalars = {f"train/{k}": v for k, v in res.items() if isinstance(v, int | float)}
        run.log_metrics(scalars, step=iteration, to_pipeline=True)
        if params.tracking.log_adapters:
            run.log_artifact(paths.model(iteration), f"adapter_iter_{iteration}")

    _run_stage("train", iteration, fn)


@app.command()
def rollout(iteration: IterOpt) -> None:
    """Roll out student i-1 on the training tasks."""
    from leap.stages import rollout as stage

    _run_metrics_stage("rollout", iteration, lambda params: stage.run(params, iteration))


@app.command()
def correct(iteration: IterOpt) -> None:
    """The privileged teacher relabels the steps of failed rollouts of iteration i."""
    from leap.stages import correct as stage

    _run_metrics_stage("correct", iteration, lambda params: stage.run(params, iteration))


@app.command()
def realize(iteration: IterOpt) -> None:
    """How likely student i-1 finds the corrections of iteration i (realizability), before training."""
    from leap.stages import realize as stage

    _run_metrics_stage("realize", iteration, lambda params: stage.run(params, iteration))


@app.command()
def evaluate(iteration: IterOpt) -> None:
    """Evaluate student i on every evaluation split."""
    from leap.metrics import flat_metrics
    from leap.stages import evaluate as stage

    def fn(params: Params, run: Any) -> None:
        results = stage.run(params, iteration)
        run.log_metrics(flat_metrics(results), step=iteration, to_pipeline=True)
        for split, r in results.items():
            log.info(
                "iteration %d %s: success %.3f, avg actions %.1f",
                iteration,
                split,
                r.success_rate,
                r.avg_actions,
            )

    _run_stage("evaluate", iteration, fn)


@app.command()
def baseline() -> None:
    """Evaluate the teacher acting alone without privileged state (and the ReAct LLM if enabled)."""
    from leap.metrics import flat_metrics
    from leap.stages import baseline as stage

    def fn(params: Params, run: Any) -> None:
        for pol, res in stage.run(params).items():
            run.log_metrics({f"{pol.replace(':', '_')}/{k}": v for k, v in flat_metrics(res).items()}, step=0)
            for split, r in res.items():
                log.info("%s %s: success %.3f, avg actions %.1f", pol, split, r.success_rate, r.avg_actions)

    _run_stage("baseline", None, fn)


@app.command()
def report() -> None:
    """Learning curves, best iteration (on the validation split), plots; syncs MLflow."""
    from leap.stages import report as stage

    def fn(params: Params, run: Any) -> None:
        summary = stage.run(params)
        _print_summary(summary)

    _run_stage("report", None, fn)


@app.command("run-all")
def run_all() -> None:
    """Run every stage in order in this directory, without DVC (quick runs, tests).
    Each stage runs in its own process, as under DVC, so a model's memory is freed between
    stages. The pipeline proper is `dvc repro`, which also skips what is up to date."""
    params = _params()
    base = [sys.executable, "-m", "leap", "--params", str(_state["params"])]
    if _state["experiment"] is not None:
        base += ["--experiment", str(_state["experiment"])]
    for step in pipeline_steps(params):
        log.info("== leap %s", " ".join(step))
        code = subprocess.call(base + step)
        if code != 0:
            _fail(f"stage `leap {' '.join(step)}` failed (exit {code})", code)


def pipeline_steps(params: Params) -> list[list[str]]:
    """The stage commands of the whole loop, in an order that respects dvc.yaml's dependencies."""
    steps = [["prepare"], ["demos"], ["aggregate", "-i", "0"], ["train", "-i", "0"], ["evaluate", "-i", "0"]]
    steps.append(["baseline"])
    for i in params.loop.iterations:
        stages = ("rollout", "correct", "realize", "aggregate", "train", "evaluate")
        steps += [[stage, "-i", str(i)] for stage in stages]
    steps.append(["report"])
    return steps


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    def cell(r: dict[str, Any]) -> tuple[str, str]:
        lo, hi = r.get("success_ci", (None, None))
        ci = f" [{lo:.2f}, {hi:.2f}]" if lo is not None else ""
        return f"{r['success_rate']:.2f}{ci}", f"{r['avg_actions']:.1f}"

    table = Table(
        title=f"LEAP on {summary['env']} — best iteration {summary['best_iteration']} "
        f"(chosen on {summary['select_split']}); success with 95% Wilson interval"
    )
    table.add_column("policy", no_wrap=True)
    splits = summary.get("splits") or list(next(iter(summary["iterations"].values())))
    for s in splits:
        n = next(iter(summary["iterations"].values()))[s].get("n", "?")
        table.add_column(f"{s} (n={n})\nsuccess", justify="right")
        table.add_column(f"{s}\nactions", justify="right")
    for i, res in summary["iterations"].items():
        name = "BC (iter 0)" if i == "0" else f"LEAP iter {i}"
        table.add_row(name, *[x for s in splits for x in cell(res[s])])
    for pol, res in summary["baselines"].items():
        table.add_row(pol, *[x for s in splits for x in (cell(res[s]) if s in res else ("-", "-"))])
    console = Console()
    console.print(table)
    best = summary["best_iteration"]
    if summary.get("best_vs"):
        paired = Table(title=f"Best iteration ({best}) minus each policy, paired on the same tasks")
        paired.add_column("split")
        paired.add_column("vs")
        paired.add_column("difference [95% CI]", justify="right")
        paired.add_column("solved only by best / only by other", justify="right")
        paired.add_column("McNemar p", justify="right")
        for split, rows in summary["best_vs"].items():
            for other, c in rows.items():
                paired.add_row(
                    split,
                    "BC" if other == "bc" else other,
                    f"{c['diff']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]",
                    f"{int(c['only_a'])} / {int(c['only_b'])}",
                    f"{c['p_value']:.3g}",
                )
        console.print(paired)
    if "note" in summary:
        console.print(f"[dim]{summary['note']}[/dim]")


# ---------------------------------------------------------------- tools


@app.command("check-params")
def check_params() -> None:
    """Validate params.yaml (and --experiment) and print the resolved values."""
    params = _params()
    typer.echo(json.dumps(params.model_dump(mode="json"), indent=2))
    typer.secho(
        f"ok: {_state['params']} is valid (fingerprint {params.fingerprint()})",
        fg=typer.colors.GREEN,
        err=True,
    )


class _Quit(BaseException):
    """The player stops (a BaseException: the episode runner records Exceptions as failures)."""


class _PlayPolicy:
    """A person at the keyboard, or the oracle narrated, as a policy for the shared episode runner."""

    def __init__(self, oracle: Any = None) -> None:
        self.oracle = oracle
        self.privileged = oracle is not None
        self.policy_id = oracle.policy_id if oracle is not None else "human"

    def act(self, contexts: list[Any]) -> list[Any]:
        from leap.agent import PolicyOutput

        (ctx,) = contexts
        typer.echo(f"\n{ctx.observation}")
        if ctx.admissible_actions:
            typer.secho("  actions: " + ", ".join(ctx.admissible_actions[:40]), dim=True)
        if self.oracle is not None:
            (out,) = self.oracle.act([ctx])
            if not out.parse_ok:
                raise _Quit(out.raw_output)
            typer.secho(f"> Reason: {out.reason}\n> Action: {out.action}", fg=typer.colors.CYAN)
            return [out]
        action = typer.prompt(">", prompt_suffix=" ")
        if action.strip() == "quit":
            raise _Quit()
        return [PolicyOutput(reason="", action=action)]


@app.command()
def play(
    split: Annotated[str, typer.Option(help="split to take the task from")] = "train",
    index: Annotated[int, typer.Option(help="task index within the split")] = 0,
    oracle: Annotated[int | None, typer.Option(help="let the oracle play at this privilege level")] = None,
) -> None:
    """Play a task by hand (type actions; `quit` to stop), or watch the oracle play it."""
    from leap.agent import TeacherPolicy
    from leap.rollout import run_episodes
    from leap.stages.common import load_privileged, load_tasks
    from leap.stages.episodes import env_factory
    from leap.teachers.oracle import OracleTeacher

    params = _params()
    try:
        tasks = load_tasks(split)
    except RecordError as e:
        _fail(f"{e} (run `leap prepare` first)")
    if not 0 <= index < len(tasks):
        _fail(f"split '{split}' has {len(tasks)} tasks; index {index} is out of range")
    task = tasks[index]
    teacher = TeacherPolicy(OracleTeacher(oracle)) if oracle is not None else None
    privileged = load_privileged("train") if (teacher and split == "train") else None
    typer.secho(f"[{task.task_id}] {task.instruction}", bold=True)
    try:
        (traj,) = run_episodes(
            [task],
            _PlayPolicy(teacher),
            env_factory(params),
            horizon=params.env.horizon,
            batch_size=1,
            privileged=privileged,
            progress=False,
        )
    except _Quit as stop:
        if stop.args:
            _fail(str(stop.args[0]))
        typer.secho("\nstopped", fg=typer.colors.YELLOW)
        return
    if traj.error:
        _fail(traj.error)
    typer.echo(f"\n{traj.final_observation}")
    typer.secho(
        f"\n{'WON' if traj.success else 'not solved'} after {traj.num_actions} actions; score {traj.reward}",
        fg=typer.colors.GREEN if traj.success else typer.colors.YELLOW,
    )


@app.command()
def pair(
    a: Annotated[
        list[Path], typer.Option("--a", "-a", help="evaluation JSONL of policy A (repeat to merge)")
    ],
    b: Annotated[
        list[Path], typer.Option("--b", "-b", help="evaluation JSONL of policy B (repeat to merge)")
    ],
    pool: Annotated[
        str, typer.Option(help="splits also compared together, comma-separated")
    ] = "test,test_ood",
) -> None:
    """A minus B, paired on the games both played: success with 95% Wilson intervals, the paired
    difference (bootstrap 95% interval), games only A / only B solved, McNemar's p; per split and
    over the pooled splits. E.g. `leap pair -a data/iter_1/eval.jsonl -b data/iter_0/eval.jsonl`."""
    from leap.io import read_jsonl
    from leap.metrics import paired
    from leap.records import Trajectory
    from leap.stats import wilson

    try:
        ta = [t for p in a for t in read_jsonl(p, Trajectory)]
        tb = [t for p in b for t in read_jsonl(p, Trajectory)]
    except RecordError as e:
        _fail(str(e))
    rows = paired(ta, tb, tuple(s for s in pool.split(",") if s))
    if not rows:
        _fail("A and B share no split and game (task id)")
    typer.echo("| split | n | A | B | A − B, paired | only A / only B | p |\n|---|---|---|---|---|---|---|")
    for split, c in rows.items():
        ci = [wilson(round(x * c.n), c.n) for x in (c.success_a, c.success_b)]
        typer.echo(
            f"| {split} | {c.n} | {c.success_a:.2f} [{ci[0][0]:.2f}, {ci[0][1]:.2f}] "
            f"| {c.success_b:.2f} [{ci[1][0]:.2f}, {ci[1][1]:.2f}] "
            f"| {c.diff:+.2f} [{c.ci_low:+.2f}, {c.ci_high:+.2f}] "
            f"| {c.only_a} / {c.only_b} | {c.p_value:.3f} |"
        )


@app.command()
def view(
    path: Annotated[Path, typer.Argument(help="a trajectories or corrections JSONL file")],
    index: Annotated[int | None, typer.Option(help="show only this record")] = None,
    failed: Annotated[bool, typer.Option(help="only failed trajectories")] = False,
) -> None:
    """Pretty-print trajectories (rollouts, demos, eval) or corrections."""
    from leap.io import read_jsonl
    from leap.records import Correction, Trajectory

    model = Correction if "correction" in path.name else Trajectory
    try:
        recs = read_jsonl(path, model)
    except RecordError as e:
        _fail(str(e))
    if failed and model is Trajectory:
        recs = [r for r in recs if not r.success]  # type: ignore[union-attr]
    if index is not None:
        recs = recs[index : index + 1]
    for r in recs:
        if isinstance(r, Trajectory):
            typer.secho(
                f"\n=== {r.task_id} [{r.category}] {r.policy} success={r.success} reward={r.reward:.2f} "
                f"actions={r.num_actions}",
                bold=True,
            )
            typer.echo(r.instruction)
            for t, s in enumerate(r.steps):
                typer.secho(f"  {t:>2} obs: {s.observation[:200]!r}", dim=True)
                mark = "" if s.valid else "  [invalid]"
                typer.echo(f"     reason: {s.reason}\n     action: {s.action}{mark}")
        else:
            typer.secho(
                f"\n=== {r.task_id} step {r.step_index} (λ{r.privilege_level}, {r.teacher_id})", bold=True
            )
            typer.echo(f"  obs: {r.observation[:200]!r}")
            typer.echo(f"  student: {r.student.reason} -> {r.student.action}")
            if r.teacher:
                typer.secho(
                    f"  teacher: {r.teacher.reason} -> {r.teacher.action}"
                    + (f"  [LEAK: {r.leak_terms}]" if r.leaked else ""),
                    fg=typer.colors.CYAN,
                )
            else:
                typer.secho(f"  teacher error: {r.error}", fg=typer.colors.RED)


@app.command()
def compare(
    by: Annotated[
        str, typer.Option(help="run tag to compare along: privilege_level, update_method, teacher")
    ] = ("privilege_level"),
    metric: Annotated[str, typer.Option(help="metric at the best iteration")] = "test_ood/success_rate",
    experiment: Annotated[list[str] | None, typer.Option(help="MLflow experiment(s); default: all")] = None,
    out: Annotated[Path, typer.Option(help="plot file")] = Path("reports/compare.png"),
) -> None:
    """Compare reported pipeline runs in MLflow (e.g. the privilege-level trade-off) as a table and a plot."""
    from rich.console import Console
    from rich.table import Table

    from leap import compare as cmp

    rows = cmp.table(cmp.pipeline_runs(_params(), experiment), metric, by)
    if not rows:
        _fail(f"no reported pipeline runs with metric best/{metric} (run `leap report` first)")
    t = Table(title=f"{metric} by {by}")
    for col in rows[0]:
        t.add_column(col)
    for r in rows:
        t.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values()])
    Console().print(t)
    cmp.plot(rows, metric, by, out)
    typer.echo(f"plot: {out}")


@app.command("leak-report")
def leak_report(
    trajectories: Annotated[Path, typer.Argument(help="JSONL of Trajectory records (demos, rollouts)")],
    privileged: Annotated[Path | None, typer.Option(help="JSONL of PrivilegedState records")] = None,
    max_steps: Annotated[int, typer.Option(help="decision points sampled (first trajectories first)")] = 200,
    levels: Annotated[str, typer.Option(help="comma-separated privilege levels")] = "0,1,2,3,4",
    teacher: Annotated[
        str, typer.Option(help="'oracle' or 'configured' (the teacher section of --params)")
    ] = "oracle",
    out: Annotated[Path | None, typer.Option(help="write the report here as JSON")] = None,
) -> None:
    """Leak rate of the teacher's reasons at each privilege level on a sample of recorded steps."""
    from leap.teachers.leak_report import leak_report as report

    try:
        report(
            trajectories,
            privileged,
            max_steps=max_steps,
            levels=[int(x) for x in levels.split(",")],
            teacher=teacher,
            params=_params() if teacher == "configured" else None,
            out=out,
            echo=typer.echo,
        )
    except (RecordError, ValueError) as e:
        _fail(str(e))


@app.command()
def bench(
    model: Annotated[str, typer.Option(help="student model (as student.model)")] = "smollm2-135m-instruct",
    n_train: Annotated[int, typer.Option(help="training examples")] = 50,
    n_gen: Annotated[int, typer.Option(help="prompts generated")] = 16,
    batch_size: Annotated[int, typer.Option(help="generation batch")] = 8,
    max_new_tokens: Annotated[int, typer.Option()] = 48,
    sections: Annotated[str, typer.Option(help="comma-separated subset of load,gen,train,adapter")] = (
        "load,gen,train,adapter"
    ),
) -> None:
    """The student's costs: model load, batched vs single generation, LoRA training (JSON lines)."""
    from leap.students.bench import run

    run(model, n_train, n_gen, batch_size, max_new_tokens, set(sections.split(",")))


@app.command()
def study(
    name: Annotated[str, typer.Argument(help="privilege | update | self-improve | seeds")],
    scale: Annotated[
        Path | None,
        typer.Option(
            help="the scale's experiment file (default: experiments/studies/cpu.yaml; update's: cpu-update)"
        ),
    ] = None,
    with_: Annotated[
        list[Path] | None, typer.Option("--with", help="more experiment files, after the scale")
    ] = None,
    eta: Annotated[
        str, typer.Option(help="privilege study: comma-separated η of the constrained expert")
    ] = "",
    eta_level: Annotated[int, typer.Option(help="the constrained expert's π_p level (π_n is λ0)")] = 4,
    beta: Annotated[float | None, typer.Option(help="update study: train.beta of DPO and KTO")] = None,
    preference_lr: Annotated[
        float | None,
        typer.Option(
            help="update study: DPO's and KTO's learning rate (default: studies.UPDATE_LEARNING_RATES)"
        ),
    ] = None,
    seeds: Annotated[
        str, typer.Option(help="seeds study: comma-separated train.seed of the replicates")
    ] = "0,1,2",
    jobs: Annotated[int, typer.Option(help="experiments run at once (dvc queue start -j)")] = 1,
    report_only: Annotated[bool, typer.Option(help="only collect, plot and log what has finished")] = False,
    dry_run: Annotated[bool, typer.Option(help="print the variants and their overrides only")] = False,
) -> None:
    """Run one of the paper's studies as queued DVC experiments (finished variants are not run
    again), then write reports/studies/<name>.json|md, its plots, and an MLflow study run."""
    from leap import studies

    try:
        vs = studies.variants(
            name,
            etas=[float(x) for x in eta.split(",") if x.strip()],
            eta_level=eta_level,
            beta=beta,
            preference_lr=preference_lr,
            seeds=[int(x) for x in seeds.split(",") if x.strip()],
        )
        scale = scale or studies.DEFAULT_SCALES[name]
        planned = studies.plan(name, _state["params"], [scale, *(with_ or [])], vs)
    except (ConfigError, ValueError) as e:
        _fail(str(e))
    for p in planned:
        typer.echo(f"{p.name}: {' '.join(shlex.quote(o) for o in p.overrides)}")
    if dry_run:
        return
    if not report_only:
        from leap.tracking import shared_store

        # The queue runs each experiment in a temporary copy: its MLflow runs go to this store.
        os.environ["MLFLOW_TRACKING_URI"] = shared_store(planned[0].params)
        try:
            studies.run(name, planned, echo=typer.echo, jobs=jobs)
        except RuntimeError as e:
            _fail(str(e))
    exps = studies.experiments(json.loads(studies.run_dvc(["exp", "show", "--json"]) or "[]"))
    try:
        result = studies.report(name, planned, exps)
    except RuntimeError as e:
        _fail(str(e))
    typer.echo(Path(f"reports/studies/{name}.md").read_text(encoding="utf-8"))
    typer.echo(f"plots: {studies.PLOTS[name]}, reports/{name}_per_task_type.png; MLflow: run study-{name}")
    if result["missing"]:
        typer.echo(f"not finished: {', '.join(result['missing'])}")
        raise typer.Exit(1)


@exp_app.command("show")
def exp_show(experiment: Path) -> None:
    """Print the -S overrides an experiment definition applies to params.yaml."""
    typer.echo(" ".join(shlex.quote(a) for a in _exp_overrides(experiment)))


@exp_app.command("run")
def exp_run(
    experiment: Path,
    name: Annotated[str | None, typer.Option(help="DVC experiment name (default: the file's stem)")] = None,
    dry_run: Annotated[bool, typer.Option(help="print the dvc command only")] = False,
) -> None:
    """Run the pipeline with an experiment definition as a DVC experiment (`dvc exp run -S ...`)."""
    cmd = ["dvc", "exp", "run", "-n", name or experiment.stem, *_exp_overrides(experiment)]
    typer.echo(" ".join(shlex.quote(c) for c in cmd))
    if not dry_run:
        raise typer.Exit(subprocess.call(cmd))


def _exp_overrides(experiment: Path) -> list[str]:
    """Validate params.yaml + the experiment, then express the experiment as DVC -S overrides."""
    from leap.experiment_overrides import dvc_overrides

    _state["experiment"] = experiment
    _params()  # fails early with file/line messages
    return [a for o in dvc_overrides(_state["params"], experiment) for a in ("-S", o)]


_MOUNTED: set[str] = set()


def mount_env_commands() -> None:
    """`leap <env> ...` for every registered environment with a CLI (idempotent: an environment
    registered after this module was imported is mounted by calling it again)."""
    from leap.envs.base import registered, spec

    for name in registered():
        env = spec(name)
        if env.cli is None or name in _MOUNTED:
            continue
        try:
            app.add_typer(env.cli_app(), name=name, help=env.cli_help)
        except ImportError as e:  # an optional engine missing: the rest of the CLI still works
            log.debug("no `leap %s` commands: %s", name, e)
            continue
        _MOUNTED.add(name)


def _mount_optional() -> None:
    """Sub-commands contributed by environments and teachers."""
    mount_env_commands()
    try:
        from leap.teachers.serve import serve

        app.command(help="Serve a local HF model over an OpenAI-compatible API (loopback by default).")(serve)
    except ImportError:
        pass


_mount_optional()


def main() -> None:  # pragma: no cover
    sys.exit(app())
