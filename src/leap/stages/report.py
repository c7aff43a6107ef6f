"""report: learning curves, the best iteration (chosen on the validation split), plots,
and a full re-sync of every iteration's metrics into the MLflow pipeline run."""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

from leap import paths
from leap.config import Params
from leap.io import atomic_path, write_json, write_text
from leap.metrics import flat_metrics, pooled
from leap.records import EvalResult
from leap.stats import compare

log = logging.getLogger(__name__)


def _load_results(path: Path) -> dict[str, EvalResult]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {s: EvalResult.model_validate(r) for s, r in raw.items()}


def collect(params: Params) -> tuple[dict[int, dict[str, EvalResult]], dict[str, dict[str, EvalResult]]]:
    per_iter = {}
    for i in params.iteration_numbers:
        p = paths.eval_metrics(i)
        if not p.exists():
            raise FileNotFoundError(f"{p}: missing (run `leap evaluate --iteration {i}`)")
        per_iter[i] = _load_results(p)
    baselines: dict[str, dict[str, EvalResult]] = {}
    if paths.baseline_metrics().exists():
        raw = json.loads(paths.baseline_metrics().read_text(encoding="utf-8"))
        baselines = {
            pol: {s: EvalResult.model_validate(r) for s, r in res.items()} for pol, res in raw.items()
        }
    return per_iter, baselines


Outcomes = dict[str, dict[str, bool]]  # split -> task id -> solved


def collect_outcomes(params: Params) -> tuple[dict[int, Outcomes], dict[str, Outcomes]]:
    """Per-episode successes of every iteration and baseline (the paired comparisons need them)."""

    def load(path: Path) -> dict[str, Any]:
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    iters = {i: load(paths.outcomes(f"iter_{i}")) for i in params.iteration_numbers}
    return iters, load(paths.outcomes("baseline"))


def comparisons(
    per_iter: dict[int, Outcomes],
    base: dict[str, Outcomes],
    splits: list[str],
    seed: int = 0,
    pool: list[str] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """{split: {"<a>_vs_<b>": paired comparison}} of every LEAP iteration against BC (iteration 0)
    and against each baseline, and of BC against each baseline; with two or more ``pool`` splits,
    also over them together (key "test+test_ood": twice the games, a narrower interval)."""
    if pool and len(pool) > 1:
        name = "+".join(pool)
        per_iter = {i: o | {name: pooled(o, pool)} for i, o in per_iter.items()}
        base = {
            p: o | ({name: pooled(o, pool)} if all(s in o for s in pool) else {}) for p, o in base.items()
        }
        splits = [*splits, name]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for split in splits:
        rows: dict[str, dict[str, float]] = {}
        bc = per_iter.get(0, {}).get(split, {})
        for i, res in per_iter.items():
            cur = res.get(split, {})
            name = "bc" if i == 0 else f"iter_{i}"
            if i != 0 and bc:
                rows[f"{name}_vs_bc"] = compare(cur, bc, seed=seed).as_dict()
            for pol, bres in base.items():
                if split in bres:
                    rows[f"{name}_vs_{_key(pol)}"] = compare(cur, bres[split], seed=seed).as_dict()
        out[split] = rows
    return out


def _key(policy: str) -> str:
    return policy.replace(":", "_")


def best_iteration(per_iter: dict[int, dict[str, EvalResult]], split: str) -> int:
    # Highest validation success; ties go to fewer actions, then to the earlier iteration.
    return min(per_iter, key=lambda i: (-per_iter[i][split].success_rate, per_iter[i][split].avg_actions, i))


def curve_rows(per_iter: dict[int, dict[str, EvalResult]]) -> list[dict[str, Any]]:
    rows = []
    for i, res in per_iter.items():
        for split, r in res.items():
            row = {
                "iteration": i,
                "split": split,
                "success_rate": round(r.success_rate, 4),
                "success_ci_low": round(r.success_ci[0], 4),
                "success_ci_high": round(r.success_ci[1], 4),
                "avg_actions": round(r.avg_actions, 3),
                "avg_reward": round(r.avg_reward, 4),
            }
            rows.append(row)
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def plot_learning_curve(
    per_iter: dict[int, dict[str, EvalResult]],
    baselines: dict[str, dict[str, EvalResult]],
    out: Path,
    title: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = list(next(iter(per_iter.values())))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    iters = sorted(per_iter)
    for k, (metric, label) in enumerate([("success_rate", "success rate"), ("avg_actions", "avg. actions")]):
        ax = axes[k]
        for j, split in enumerate(splits):
            color = f"C{j}"
            ys = [getattr(per_iter[i][split], metric) for i in iters]
            xs = [i + (j - (len(splits) - 1) / 2) * 0.06 for i in iters]  # dodge the error bars
            if metric == "success_rate":  # 95% Wilson intervals
                err = [
                    [y - per_iter[i][split].success_ci[0] for i, y in zip(iters, ys, strict=True)],
                    [per_iter[i][split].success_ci[1] - y for i, y in zip(iters, ys, strict=True)],
                ]
                ax.errorbar(xs, ys, yerr=err, fmt="o-", color=color, label=split, capsize=3)
            else:
                ax.plot(xs, ys, "o-", color=color, label=split)
            for pol, res in baselines.items():
                if split in res:
                    ax.axhline(getattr(res[split], metric), color=color, ls="--", lw=1, alpha=0.7)
                    if j == 0:
                        ax.plot([], [], "k--", lw=1, label=f"{pol} (dashed)")
        ax.set_xticks(iters, ["BC" if i == 0 else str(i) for i in iters])
        ax.set_xlabel("LEAP iteration")
        ax.set_ylabel(label + (" (95% Wilson CI)" if metric == "success_rate" else ""))
        if metric == "success_rate":
            ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def plot_per_category(results: dict[str, EvalResult], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cats = sorted({c for r in results.values() for c in r.by_category})
    if not cats:
        return
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(cats)), 4))
    width = 0.8 / max(1, len(results))
    for j, (split, r) in enumerate(results.items()):
        xs = [c + j * width for c in range(len(cats))]
        ys = [r.by_category[c].success_rate if c in r.by_category else 0.0 for c in cats]
        ax.bar(xs, ys, width=width, label=split)
    ax.set_xticks([c + 0.4 - width / 2 for c in range(len(cats))], cats, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("success rate")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def run(params: Params, *, track: bool = True) -> dict[str, Any]:
    per_iter, baselines = collect(params)
    sel = params.loop.select_split
    best = best_iteration(per_iter, sel)
    outcomes, base_outcomes = collect_outcomes(params)
    splits = list(params.env.eval_splits)
    held_out = [s for s in splits if s != sel]  # pooled: the held-out splits together
    paired = comparisons(outcomes, base_outcomes, splits, seed=params.seed, pool=held_out)
    summary = {
        "env": params.env.name,
        "teacher": params.teacher.kind,
        "privilege_level": params.teacher.privilege_level,
        "update_method": params.train.method,
        "select_split": sel,
        "splits": list(params.env.eval_splits),
        "best_iteration": best,
        "best": {s: r.model_dump(mode="json", exclude={"by_category"}) for s, r in per_iter[best].items()},
        "iterations": {
            str(i): {
                s: {
                    "n": r.n,
                    "success_rate": r.success_rate,
                    "success_ci": list(r.success_ci),
                    "avg_actions": r.avg_actions,
                    "avg_actions_solved": r.avg_actions_solved,
                    "avg_reward": r.avg_reward,
                    **({"score_components": r.score_components} if r.score_components else {}),
                }
                for s, r in res.items()
            }
            for i, res in per_iter.items()
        },
        "baselines": {
            pol: {
                s: {
                    "n": r.n,
                    "success_rate": r.success_rate,
                    "success_ci": list(r.success_ci),
                    "avg_actions": r.avg_actions,
                    "avg_actions_solved": r.avg_actions_solved,
                }
                for s, r in res.items()
            }
            for pol, res in baselines.items()
        },
        # Paired on the same tasks: a minus b, 95% paired-bootstrap interval, McNemar's exact p.
        "comparisons": paired,
        "best_vs": {
            s: {
                k.removeprefix(f"iter_{best}_vs_"): v
                for k, v in rows.items()
                if k.startswith(f"iter_{best}_vs_")
            }
            for s, rows in paired.items()
        }
        if best != 0
        else {},
    }
    if params.env.name == "alfworld" and params.env.alfworld.data_dir is None:
        summary["note"] = (
            "ALFWorld-format games generated offline on the real engine; not the official splits, "
            "so scores are not comparable with published ALFWorld results."
        )
    rdir = paths.REPORTS
    write_json(rdir / "summary.json", summary)
    rows = curve_rows(per_iter)
    write_text(rdir / "learning_curve.csv", _csv(rows))
    title = f"LEAP on {params.env.name} ({params.teacher.kind} teacher, λ{params.teacher.privilege_level}, "
    title += f"{params.train.method})"
    plot_learning_curve(per_iter, baselines, rdir / "learning_curve.png", title)
    plot_per_category(per_iter[best], rdir / "per_category.png", f"best iteration ({best}) per task type")
    if track:
        _sync_mlflow(params, per_iter, baselines, best, rdir)
    return summary


def summary_comparisons(params: Params) -> dict[str, dict[str, dict[str, float]]]:
    summary = json.loads((paths.REPORTS / "summary.json").read_text(encoding="utf-8"))
    return summary.get("comparisons", {})


def _sync_mlflow(
    params: Params,
    per_iter: dict[int, dict[str, EvalResult]],
    baselines: dict[str, dict[str, EvalResult]],
    best: int,
    rdir: Path,
) -> None:
    from leap import tracking

    for i, res in per_iter.items():
        tracking.log_pipeline_metrics(params, flat_metrics(res), step=i)
        # Realizability of iteration i's corrections (logged by the realize stage too, unless DVC
        # restored that stage from its run cache).
        real = paths.stage_metrics("realize", i)
        if i > 0 and real.exists():
            raw = json.loads(real.read_text(encoding="utf-8"))
            tracking.log_pipeline_metrics(
                params, {k: float(v) for k, v in raw.items() if isinstance(v, int | float)}, step=i
            )
    # Baselines are flat lines: logged at every iteration so the UI draws them beside the curve.
    for pol, res in baselines.items():
        name = pol.replace(":", "_")
        for i in per_iter:
            tracking.log_pipeline_metrics(
                params, {f"baseline/{name}/{k}": v for k, v in flat_metrics(res).items()}, step=i
            )
    # Paired differences against BC and the teacher alone, on the learning curve (step = iteration).
    for split, rows in summary_comparisons(params).items():
        for name, c in rows.items():
            a, _, b = name.partition("_vs_")
            if not a.startswith("iter_"):
                continue
            i = int(a.removeprefix("iter_"))
            tracking.log_pipeline_metrics(
                params,
                {
                    f"{split}/diff_vs_{b}": c["diff"],
                    f"{split}/diff_vs_{b}_ci_low": c["ci_low"],
                    f"{split}/diff_vs_{b}_ci_high": c["ci_high"],
                    f"{split}/diff_vs_{b}_p": c["p_value"],
                },
                step=i,
            )
    best_res = per_iter[best]
    tracking.log_pipeline_metrics(
        params,
        {"best_iteration": float(best), **{f"best/{k}": v for k, v in flat_metrics(best_res).items()}},
        step=0,
    )
    tracking.set_pipeline_tags(params, {"best_iteration": str(best)})
    tracking.log_pipeline_artifact(params, rdir, "reports")
    log.info("report synced to MLflow (%s)", params.tracking.experiment)
