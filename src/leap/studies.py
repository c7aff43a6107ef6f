"""The paper's studies as DVC experiments: the privilege ablation (§4.5, Fig. 5; optionally an η sweep
of the constrained expert, App. B.2), the update-method ablation (§4.7, Table 3) and self-improvement
(§4.6); and replicates (``seeds``: the same params with other trainer seeds, each training its own
BC and iterations), because at 30 games per split one run's LEAP − BC is one draw.

A study is a list of variants, each a set of overrides of params.yaml on top of a scale
(``experiments/studies/cpu.yaml`` by default: params.yaml's counts; ``small.yaml`` for a quick
check, ``paper.yaml`` for the paper's counts) and any other experiment files. Each variant is queued
as a DVC experiment (``dvc exp run --queue -n NAME -S ...``) and the queue is run (``dvc queue
start``). A variant's name ends with a hash of its resolved params, so a second call finds every
finished variant by name and queues only what is missing (an interrupted study resumes; a changed
scale or params.yaml makes new variants). All variants share their behaviour-cloning student:
iteration 0 reads no teacher or update param, so DVC's run cache restores it instead of training it again.

Results are read back from ``dvc exp show --json`` (each experiment's metrics files: the report's
summary, the evaluation per task type, realizability), written to ``reports/studies/<study>.json``
with a table, plotted (``reports/privilege_tradeoff.png``, ``reports/update_methods.png``,
``reports/self_improve.png``, ``reports/<study>_per_task_type.png``) and logged to MLflow as one
study run (the variants' own pipeline runs carry their params, side by side in the MLflow UI).
"""

from __future__ import annotations

import contextlib
import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from leap.config import Params, load_params
from leap.experiment_overrides import dvc_overrides
from leap.io import atomic_path, write_json, write_text

STUDIES = ("privilege", "update", "self-improve", "seeds")
PLOTS = {
    "privilege": "reports/privilege_tradeoff.png",
    "update": "reports/update_methods.png",
    "self-improve": "reports/self_improve.png",
    "seeds": "reports/seeds.png",
}
STUDY_DIR = Path(".exp/studies")  # composed experiment files (ignored by git)
# Each study's default scale: params.yaml's counts (cpu.yaml). The update study's DPO and KTO rows
# each repeat a step's whole history (TRL's preference trainers share no prefix, unlike the packed
# SFT rows): at full aggregation, 565 pairs of 1.1k prompt tokens, DPO would train for about 105 min
# on 2 cores (measured: 192 tokens/s); cpu-update.yaml corrects the first 6 steps of each failed
# rollout (204 pairs: DPO 22 min).
DEFAULT_SCALES = {study: Path("experiments/studies/cpu.yaml") for study in STUDIES} | {
    "update": Path("experiments/studies/cpu-update.yaml")
}

# The iterations' learning rate of each update method (train.iteration_learning_rate; None keeps
# train.learning_rate, SFT's 2e-3). At 2e-3 DPO's reasons collapsed into token soup and KTO's loss
# saturated within 35 steps; at 1e-4 both keep fluent reasons, though no rate tried gave either a
# `valid` success above 0 (RESULTS.md, the update study).
UPDATE_LEARNING_RATES: dict[str, float | None] = {"sft": None, "dpo": 1e-4, "kto": 1e-4}

# dvc: the command line after `dvc`, returning its stdout (raises on failure).
Dvc = Callable[[list[str]], str]


def run_dvc(args: list[str]) -> str:
    res = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
    return res.stdout


@dataclass(frozen=True)
class Variant:
    """One experiment of a study: ``key`` names it, ``x`` is where it sits on the study's axis."""

    key: str
    x: float | str
    overrides: dict[str, Any]  # dotted params keys -> values (loop.iterations: a whole dict)


def variants(
    study: str,
    *,
    etas: Sequence[float] = (),
    eta_level: int = 4,
    beta: float | None = None,
    preference_lr: float | None = None,
    seeds: Sequence[int] = (0, 1, 2),
) -> list[Variant]:
    """The variants of ``study``. Every variant of a study sets the same keys, so none inherits a
    value from another. ``preference_lr`` replaces DPO's and KTO's learning rate."""
    if study == "privilege":
        out = [Variant(f"l{lv}", lv, {"teacher.privilege_level": lv, "teacher.eta": None}) for lv in range(5)]
        # The constrained expert between π_p = λ{eta_level} and π_n = λ0.
        out += [
            Variant(f"eta{eta:g}", eta, {"teacher.privilege_level": eta_level, "teacher.eta": float(eta)})
            for eta in etas
        ]
        return out
    if study == "update":
        extra = {} if beta is None else {"train.beta": beta}
        lrs = UPDATE_LEARNING_RATES | (
            {} if preference_lr is None else {"dpo": preference_lr, "kto": preference_lr}
        )
        return [
            Variant(m, m, {"train.method": m, "train.iteration_learning_rate": lrs[m], **extra})
            for m in ("sft", "dpo", "kto")
        ]
    if study == "self-improve":
        # The latest trained student, given the privileged facts, teaches the next iteration (paper
        # §4.6): at iteration 1 the BC student itself. The scale sets the iterations; the oracle
        # teacher at the same scale is the reference.
        shared = {"teacher.local.model": "student", "teacher.local.max_new_tokens": 48}
        return [
            Variant("self", "student as its own teacher", {"teacher.kind": "local", **shared}),
            Variant("oracle", "oracle teacher", {"teacher.kind": "oracle", **shared}),
        ]
    if study == "seeds":
        # train.seed is read by every train stage: each replicate trains its own BC (the games and
        # demonstrations stay the same), so its LEAP − BC includes BC's own variation.
        return [Variant(f"seed{s}", int(s), {"train.seed": int(s)}) for s in seeds]
    raise ValueError(f"unknown study {study!r} (one of {', '.join(STUDIES)})")


def _nest(dotted: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, v in dotted.items():
        *path, last = key.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[last] = v
    return out


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        # loop.iterations is replaced whole (as an experiment file replaces it).
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "iterations":
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


@dataclass
class Planned:
    study: str
    variant: Variant
    name: str  # the DVC experiment name: <study>-<key>-<params hash>
    experiment_file: Path
    overrides: list[str]  # -S values
    params: Params


def plan(
    study: str, params_path: Path, bases: Sequence[Path], vs: Sequence[Variant], out_dir: Path = STUDY_DIR
) -> list[Planned]:
    """Compose each variant with the base experiment files, validate it and name it."""
    raw: dict[str, Any] = {}
    for b in bases:
        data = yaml.safe_load(Path(b).read_text(encoding="utf-8")) or {}
        data.pop("description", None)
        raw = _merge(raw, data)
    # A scale sizes every environment; only the one that runs is overridden (another's section
    # may be absent from params.yaml).
    env_name = (raw.get("env") or {}).get("name") or load_params(params_path).env.name
    if isinstance(raw.get("env"), dict):
        raw["env"] = {k: v for k, v in raw["env"].items() if not isinstance(v, dict) or k == env_name}
    out = []
    for v in vs:
        exp = _merge(raw, _nest(v.overrides))
        path = out_dir / study / f"{v.key}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(exp, sort_keys=False), encoding="utf-8")
        params = load_params(params_path, path)
        name = f"{study}-{v.key}-{params.fingerprint()[:6]}".replace(".", "_")
        out.append(Planned(study, v, name, path, dvc_overrides(params_path, path), params))
    return out


# ---------------------------------------------------------------- reading `dvc exp show --json`


@dataclass
class Experiment:
    name: str
    state: str  # success | failed | queued | running | ...
    metrics: dict[str, Any] = field(default_factory=dict)  # metrics file -> its content


def experiments(show: list[dict[str, Any]]) -> dict[str, Experiment]:
    """The named experiments of ``dvc exp show --json`` output (DVC 3), by name."""
    out: dict[str, Experiment] = {}
    for base in show:
        for exp in base.get("experiments") or []:
            executor = exp.get("executor") or {}
            for rev in exp.get("revs") or []:
                name = rev.get("name") or exp.get("name")
                if not name:
                    continue
                data = rev.get("data") or {}
                metrics = {f: (m or {}).get("data", {}) for f, m in (data.get("metrics") or {}).items()}
                state = executor.get("state") or ("failed" if rev.get("error") else "success")
                if state == "success" and "reports/summary.json" not in metrics:
                    state = "failed"  # committed without the report: not finished
                out[name] = Experiment(name, state, metrics)
    return out


def _iteration(planned: Planned) -> int:
    return max(planned.params.loop.iterations)


def _split_row(r: dict[str, Any]) -> dict[str, Any]:
    """n, success rate with its 95% Wilson interval, average actions. (``dvc exp show`` drops the
    lists of a metrics file, so the interval is computed again from n and the rate, as the report
    computes it from the episodes.)"""
    from leap.stats import wilson

    n = int(r["n"])
    return {
        "n": n,
        "success_rate": float(r["success_rate"]),
        "success_ci": list(wilson(round(r["success_rate"] * n), n)),
        "avg_actions": float(r["avg_actions"]),
    }


def result_row(planned: Planned, exp: Experiment) -> dict[str, Any]:
    """What a study reports for one finished variant (last iteration; realizability of its
    corrections, before training on them; per task type)."""
    summary = exp.metrics["reports/summary.json"]
    last = _iteration(planned)
    splits = list(planned.params.env.eval_splits)
    per_split = summary["iterations"][str(last)]
    v = planned.variant
    if planned.study == "privilege":
        label = (
            f"η={v.x:g} (λ{planned.params.teacher.privilege_level})" if v.key.startswith("eta") else f"λ{v.x}"
        )
    elif planned.study == "seeds":
        label = f"train.seed {v.x}"
    else:
        label = str(v.x)
    row: dict[str, Any] = {
        "variant": v.key,
        "x": v.x,
        "label": label,
        "experiment": planned.name,
        "iteration": last,
        "splits": {s: _split_row(per_split[s]) for s in splits if s in per_split},
        "learning_curve": {
            s: [
                summary["iterations"][str(i)][s]["success_rate"]
                for i in sorted(map(int, summary["iterations"]))
            ]
            for s in splits
        },
        "realize": {},
        "by_category": {},
        # The last iteration minus this variant's own BC, paired (per split and pooled held-out).
        "vs_bc": {
            s: rows[f"iter_{last}_vs_bc"]
            for s, rows in (summary.get("comparisons") or {}).items()
            if f"iter_{last}_vs_bc" in rows
        },
    }
    for i in planned.params.loop.iterations:
        real = exp.metrics.get(f"metrics/stages/realize_{i}.json") or {}
        row["realize"][str(i)] = {
            k.removeprefix("realize/"): v for k, v in real.items() if k.startswith("realize/")
        }
    evaluation = exp.metrics.get(f"metrics/iter_{last}.json") or {}
    for s in splits:
        cats = (evaluation.get(s) or {}).get("by_category") or {}
        row["by_category"][s] = {c: r["success_rate"] for c, r in cats.items()}
    return row


def mean_vs_bc(rows: list[dict[str, Any]], confidence: float = 0.95) -> dict[str, dict[str, Any]]:
    """Per split: the variants' LEAP − BC (each paired on its games), their mean and a Student-t
    interval of the mean over variants (replicates: the run-to-run spread, not the game sampling)."""
    from scipy import stats

    out: dict[str, dict[str, Any]] = {}
    for split in dict.fromkeys(s for r in rows for s in r.get("vs_bc", {})):  # the report's order
        diffs = [r["vs_bc"][split]["diff"] for r in rows if split in r.get("vs_bc", {})]
        k = len(diffs)
        mean = statistics.fmean(diffs)
        if k > 1:
            half = float(stats.t.ppf(0.5 + confidence / 2, k - 1)) * statistics.stdev(diffs) / k**0.5
            ci = [mean - half, mean + half]
        else:
            ci = [float("nan"), float("nan")]
        out[split] = {"k": k, "mean": mean, "ci": ci, "diffs": diffs}
    return out


def mean_table(means: dict[str, dict[str, Any]]) -> str:
    lines = ["| split | LEAP − BC per replicate | mean [95% t-interval over replicates] |", "|---|---|---|"]
    for split, m in means.items():
        each = ", ".join(f"{d:+.2f}" for d in m["diffs"])
        lo, hi = m["ci"]
        lines.append(f"| {split} | {each} | {m['mean']:+.3f} [{lo:+.2f}, {hi:+.2f}] |")
    return "\n".join(lines) + "\n"


def table(study: str, rows: list[dict[str, Any]], split: str) -> str:
    """A Markdown table: success (95% interval), actions and realizability per variant."""
    head = f"| {study} | success ({split}) | 95% CI | avg actions | logp/token | action match |"
    lines = [head, "|---|---|---|---|---|---|"]
    for r in rows:
        s = r["splits"].get(split)
        real = r["realize"].get(str(r["iteration"])) or {}
        if s is None:
            continue
        lo, hi = s["success_ci"]
        lp = real.get("teacher_logprob_per_token")
        match = real.get("action_match_rate")
        lines.append(
            f"| {r['label']} | {s['success_rate']:.3f} | [{lo:.2f}, {hi:.2f}] | {s['avg_actions']:.2f} | "
            f"{'-' if lp is None else f'{lp:.3f}'} | {'-' if match is None else f'{match:.2f}'} |"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- plots


def _figure(rows: int, cols: int, width: float = 4.2) -> tuple[Any, list[list[Any]]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, 3.6 * rows), squeeze=False)
    return fig, [list(r) for r in axes]


def _save(fig: Any, out: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def plot_tradeoff(study: str, rows: list[dict[str, Any]], split: str, out: Path) -> None:
    """Success (95% interval), average actions and realizability (the corrections' log-likelihood per
    token, and how often the student's action already was the teacher's) against the study's axis:
    λ, the update method, and η (a second row) when swept."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if split in r["splits"]:
            axis = "η (constrained expert)" if r["variant"].startswith("eta") else "λ"
            if study == "update":
                axis = "update method"
            groups.setdefault(axis, []).append(r)
    fig, axes = _figure(max(1, len(groups)), 3)
    for (axis, rs), (a_succ, a_act, a_real) in zip(groups.items(), axes, strict=False):
        pos = list(range(len(rs)))
        succ = [r["splits"][split]["success_rate"] for r in rs]
        err = [
            [s - r["splits"][split]["success_ci"][0] for s, r in zip(succ, rs, strict=True)],
            [r["splits"][split]["success_ci"][1] - s for s, r in zip(succ, rs, strict=True)],
        ]
        style = "o" if study == "update" else "o-"  # methods are categories: no line between them
        a_succ.errorbar(pos, succ, yerr=err, fmt=style, capsize=3)
        bc = rs[0]["learning_curve"].get(split) or []
        if bc:  # iteration 0 of every variant is the same BC student
            a_succ.axhline(bc[0], color="grey", ls="--", lw=1, label="BC")
            a_succ.legend(fontsize=7)
        a_act.plot(pos, [r["splits"][split]["avg_actions"] for r in rs], style)
        real = [r["realize"].get(str(r["iteration"])) or {} for r in rs]
        nan = float("nan")
        lp = [
            nan if x.get("teacher_logprob_per_token") is None else x["teacher_logprob_per_token"]
            for x in real
        ]
        match = [nan if x.get("action_match_rate") is None else x["action_match_rate"] for x in real]
        a_real.plot(pos, lp, style, color="C0", label="log-likelihood / token")
        a_real.set_ylabel("corrections' log-likelihood per token", color="C0")
        twin = a_real.twinx()
        twin.plot(pos, match, "s--", color="C1", label="action match")
        twin.set_ylabel("student's action = teacher's", color="C1")
        twin.set_ylim(-0.05, 1.05)
        labels = [r["label"] for r in rs]
        for ax in (a_succ, a_act, a_real):
            ax.set_xticks(pos, labels)
            ax.set_xlabel(axis)
            ax.grid(alpha=0.3)
        a_succ.set(ylabel=f"success rate ({split}, 95% CI)", ylim=(-0.05, 1.05))
        a_act.set(ylabel="average actions")
    fig.suptitle(f"{study}: success, actions and realizability")
    _save(fig, out)


def plot_learning_curves(rows: list[dict[str, Any]], split: str, out: Path) -> None:
    """Success per iteration (0 = BC) with 95% Wilson intervals, one line per variant."""
    from leap.stats import wilson

    fig, ((ax,),) = _figure(1, 1, 5.0)
    longest = 0
    for r in rows:
        ys = r["learning_curve"].get(split) or []
        n = (r["splits"].get(split) or {}).get("n", 0)
        cis = [wilson(round(y * n), n) for y in ys] if n else [(y, y) for y in ys]
        err = [
            [y - lo for y, (lo, _) in zip(ys, cis, strict=True)],
            [hi - y for y, (_, hi) in zip(ys, cis, strict=True)],
        ]
        ax.errorbar(range(len(ys)), ys, yerr=err, fmt="o-", capsize=3, label=r["label"])
        longest = max(longest, len(ys))
    ax.set_xticks(range(longest))
    ax.set(xlabel="LEAP iteration (0: BC)", ylabel=f"success rate ({split}, 95% CI)", ylim=(-0.05, 1.05))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, out)


def plot_per_task_type(study: str, rows: list[dict[str, Any]], split: str, out: Path) -> None:
    cats = sorted({c for r in rows for c in r["by_category"].get(split, {})})
    if not cats:
        return
    fig, ((ax,),) = _figure(1, 1, max(5.0, 1.2 * len(cats)))
    width = 0.8 / max(1, len(rows))
    for j, r in enumerate(rows):
        ys = [r["by_category"].get(split, {}).get(c, 0.0) for c in cats]
        ax.bar([c + j * width for c in range(len(cats))], ys, width=width, label=r["label"])
    ax.set_xticks([c + 0.4 - width / 2 for c in range(len(cats))], cats, rotation=20, ha="right", fontsize=8)
    ax.set(ylabel=f"success rate ({split})", ylim=(0, 1.05), title=f"{study}: success per task type")
    ax.legend(fontsize=7)
    _save(fig, out)


# ---------------------------------------------------------------- the study


def report(study: str, planned: list[Planned], exps: dict[str, Experiment], *, track: bool = True) -> dict:
    """Rows, table and plots of the finished variants; logged to MLflow as one study run."""
    rows = [
        result_row(p, exps[p.name]) for p in planned if p.name in exps and exps[p.name].state == "success"
    ]
    if not rows:
        raise RuntimeError(f"no variant of {study!r} has finished")
    split = planned[0].params.loop.select_split
    out_plot = Path(PLOTS[study])
    if study in ("self-improve", "seeds"):
        plot_learning_curves(rows, split, out_plot)
    else:
        plot_tradeoff(study, rows, split, out_plot)
    cat_plot = Path(f"reports/{study}_per_task_type.png")
    plot_per_task_type(study, rows, split, cat_plot)
    md = table(study, rows, split)
    result = {"study": study, "select_split": split, "variants": rows, "missing": _missing(planned, exps)}
    if study == "seeds":
        result["mean_vs_bc"] = mean_vs_bc(rows)
        md += "\n" + mean_table(result["mean_vs_bc"])
    write_json(Path(f"reports/studies/{study}.json"), result)
    write_text(Path(f"reports/studies/{study}.md"), md)
    if track:
        from leap.tracking import log_study

        files = [f for f in (out_plot, cat_plot, Path(f"reports/studies/{study}.md")) if f.exists()]
        extra = {
            f"mean/{s}/diff_vs_bc{k}": v
            for s, m in result.get("mean_vs_bc", {}).items()
            for k, v in (("", m["mean"]), ("_ci_low", m["ci"][0]), ("_ci_high", m["ci"][1]))
        }
        log_study(planned[0].params, study, rows, split, files, extra)
    return result


def _missing(planned: list[Planned], exps: dict[str, Experiment]) -> list[str]:
    return [p.name for p in planned if p.name not in exps or exps[p.name].state != "success"]


def queue_status(dvc: Dvc) -> tuple[dict[str, str], int | None]:
    """Task name -> status (Queued, Running, Success, Failed) from ``dvc queue status``, and how many
    workers are up (active + idle; None if DVC does not say)."""
    out: dict[str, str] = {}
    workers = None
    for line in dvc(["queue", "status"]).splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] != "Task" and parts[-1] in ("Queued", "Running", "Success", "Failed"):
            out[parts[1]] = parts[-1]
        m = re.match(r"Worker status: (\d+) active, (\d+) idle", line.strip())
        if m:
            workers = int(m[1]) + int(m[2])
    return out, workers


def _show(dvc: Dvc) -> dict[str, Experiment]:
    return experiments(json.loads(dvc(["exp", "show", "--json"]) or "[]"))


def run(
    study: str,
    planned: list[Planned],
    dvc: Dvc = run_dvc,
    *,
    jobs: int = 1,
    poll_s: float = 30.0,  # each poll is a control message to the worker: not too often
    echo: Callable[[str], None] = print,
) -> list[str]:
    """Queue every variant not finished (nor queued) yet, run the queue and wait for it; returns the
    names it queued. A variant that failed before is removed from DVC and queued again."""
    exps = _show(dvc)
    status, _ = queue_status(dvc)
    todo = []
    for p in planned:
        done = p.name in exps and exps[p.name].state == "success"
        waiting = status.get(p.name) in ("Queued", "Running")
        if done or waiting:
            echo(f"{p.name}: {'finished' if done else status[p.name].lower()} (not queued again)")
            continue
        if p.name in exps or status.get(p.name) == "Failed":
            for cmd in (["queue", "remove", p.name], ["exp", "remove", p.name]):
                with contextlib.suppress(RuntimeError):  # not in that list
                    dvc(cmd)
        dvc(["exp", "run", "--queue", "-n", p.name, *[a for o in p.overrides for a in ("-S", o)]])
        echo(f"{p.name}: queued ({p.experiment_file})")
        todo.append(p)
    names = {p.name for p in planned}
    if not todo and not names & {n for n, s in status.items() if s in ("Queued", "Running")}:
        return []
    dvc(["queue", "start", "-j", str(jobs)])
    while True:
        status, workers = queue_status(dvc)
        mine = [s for n, s in status.items() if n in names]
        if not any(s in ("Queued", "Running") for s in mine):
            break
        if workers == 0 and "Running" not in mine:
            # DVC's worker can stop between tasks (measured: kombu's filesystem broker read a
            # half-written control message, "Unrecoverable error: JSONDecodeError", while `dvc queue
            # status` ran beside it); what is left stays queued, so start a worker again.
            echo("the DVC queue worker stopped with variants still queued; starting it again")
            dvc(["queue", "start", "-j", str(jobs)])
        time.sleep(poll_s)
    exps = _show(dvc)
    for p in planned:
        state = exps[p.name].state if p.name in exps else "failed"
        if state != "success":
            echo(f"{p.name}: {state} (see `dvc queue logs {p.name}`)")
    return [p.name for p in todo]
