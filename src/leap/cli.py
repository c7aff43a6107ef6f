"""`leap`: one sub-command per pipeline stage (what dvc.yaml calls), plus tools for people:
playing an environment by hand, viewing trajectories, checking params, running experiments."""

from __future__ import annotations

import json
import logging
import os
import random
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
    "rollout, correct, evaluate, baseline, report (dvc.yaml runs them; `dvc repro` runs the loop).",
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


_TORCH_STAGES = {"train", "rollout", "evaluate", "correct", "baseline"}


def _seed(seed: int, with_torch: bool) -> None:
    random.seed(seed)
    import numpy as np

    np.random.seed(seed % 2**32)
    if with_torch:  # importing torch costs seconds: only stages that may run a model pay it
        import torch

        torch.manual_seed(seed)


def _run_stage(stage: str, iteration: int | None, fn: Any) -> Any:
    """Validate params, seed, run the stage inside its MLflow run; turn known failures into
    clear one-line errors (the stage has written nothing final in that case)."""
    params = _params()
    _seed(params.seed + (iteration or 0), with_torch=stage in _TORCH_STAGES)
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
    from leap.io import write_json
    from leap.stages import train as stage

    def fn(params: Params, run: Any) -> None:
        res = stage.run(params, iteration)
        history = res.pop("loss_history", [])
        for step, loss in history:
            run.log_metrics({"train/step_loss": loss}, step=int(step))
        scalars = {f"train/{k}": v for k, v in res.items() if isinstance(v, int | float)}
        run.log_metrics(scalars, step=iteration, to_pipeline=True)
        write_json(paths.stage_metrics("train", iteration), {**res, "loss_history": history})
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
    from leap import paths
    from leap.io import write_json
    from leap.stages import correct as stage

    def fn(params: Params, run: Any) -> None:
        metrics, stats = stage.run(params, iteration)
        run.log_metrics(metrics, step=iteration, to_pipeline=True)
        write_json(paths.stage_metrics("correct", iteration), {**metrics, "teacher_stats": stats})

    _run_stage("correct", iteration, fn)


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
    steps: list[list[str]] = [["prepare"], ["demos"], ["aggregate", "-i", "0"], ["train", "-i", "0"],
                              ["evaluate", "-i", "0"], ["baseline"]]
    for i in params.loop.iterations:
        steps += [[stage, "-i", str(i)] for stage in ("rollout", "correct", "aggregate", "train", "evaluate")]
    steps.append(["report"])
    for step in steps:
        log.info("== leap %s", " ".join(step))
        code = subprocess.call(base + step)
        if code != 0:
            _fail(f"stage `leap {' '.join(step)}` failed (exit {code})", code)


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


@app.command()
def play(
    split: Annotated[str, typer.Option(help="split to take the task from")] = "train",
    index: Annotated[int, typer.Option(help="task index within the split")] = 0,
    oracle: Annotated[int | None, typer.Option(help="let the oracle play at this privilege level")] = None,
) -> None:
    """Play a task by hand (type actions; `quit` to stop), or watch the oracle play it."""
    from leap.envs.base import make_env
    from leap.records import Step, StepLabel
    from leap.stages.common import load_privileged, load_tasks
    from leap.teachers.base import StepContext
    from leap.teachers.oracle import OracleTeacher

    params = _params()
    try:
        tasks = load_tasks(split)
    except RecordError as e:
        _fail(f"{e} (run `leap prepare` first)")
    if not 0 <= index < len(tasks):
        _fail(f"split '{split}' has {len(tasks)} tasks; index {index} is out of range")
    task = tasks[index]
    env = make_env(params.env.name, params.env)
    obs, info = env.reset(task)
    teacher = OracleTeacher(oracle) if oracle is not None else None
    priv = load_privileged("train").get(task.task_id) if (teacher and split == "train") else None
    history: list[Step] = []
    typer.secho(f"[{task.task_id}] {task.instruction}", bold=True)
    for _ in range(params.env.horizon):
        typer.echo(f"\n{obs}")
        if info.get("admissible_actions"):
            typer.secho("  actions: " + ", ".join(info["admissible_actions"][:40]), dim=True)
        if teacher is not None:
            ctx = StepContext(
                task, history, obs, info.get("admissible_actions"), info.get("privileged"), priv
            )
            res = teacher.correct([(ctx, None)])[0]
            if not isinstance(res, StepLabel):
                _fail(str(res))
            typer.secho(f"> Reason: {res.reason}\n> Action: {res.action}", fg=typer.colors.CYAN)
            action, reason = res.action, res.reason
        else:
            action, reason = typer.prompt(">", prompt_suffix=" "), ""
            if action.strip() == "quit":
                break
        history.append(Step(observation=obs, reason=reason, action=action))
        obs, _reward, term, trunc, info = env.step(action)
        if term or trunc:
            typer.echo(f"\n{obs}")
            break
    won = bool(info.get("won"))
    typer.secho(
        f"\n{'WON' if won else 'not solved'} after {len(history)} actions; score {info.get('score', 0.0)}",
        fg=typer.colors.GREEN if won else typer.colors.YELLOW,
    )
    env.close()


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


def _mount_optional() -> None:
    """Sub-commands contributed by environments and teachers."""
    try:
        from leap.envs.alfworld.cli import app as alfworld_app

        app.add_typer(alfworld_app, name="alfworld", help="ALFWorld games: generate, check.")
    except ImportError:
        pass
    try:
        from leap.envs.intercode.cli import app as intercode_app

        app.add_typer(
            intercode_app, name="intercode", help="InterCode Bash: build the sandbox root, check gold."
        )
    except ImportError:
        pass
    try:
        from leap.teachers.serve import serve

        app.command(help="Serve a local HF model over an OpenAI-compatible API (loopback by default).")(serve)
    except ImportError:
        pass


_mount_optional()


def main() -> None:  # pragma: no cover
    sys.exit(app())
