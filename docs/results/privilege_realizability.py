"""Realizability of one set of BC rollouts' corrections at each privilege level λ0..λ4 (RESULTS.md,
seventh session): reads <dir>/metrics/stages/{correct,realize}_1.json of one directory per level,
writes a CSV and a plot. Usage: python privilege_realizability.py OUT_STEM DIR_L0 ... DIR_L4"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLS = {
    "corrections": "correct/n_items",
    "leak_rate": "correct/leak_rate",
    "action_changed_rate": "correct/action_changed_rate",
    "teacher_logprob_per_token": "realize/teacher_logprob_per_token",
    "teacher_reason_logprob_per_token": "realize/teacher_reason_logprob_per_token",
    "teacher_action_logprob_per_token": "realize/teacher_action_logprob_per_token",
    "student_logprob_per_token": "realize/student_logprob_per_token",
    "action_match_rate": "realize/action_match_rate",
}


def main(out: str, dirs: list[str]) -> None:
    rows = []
    for level, d in enumerate(dirs):
        m = {}
        for stage in ("correct", "realize"):
            m.update(json.loads((Path(d) / "metrics" / "stages" / f"{stage}_1.json").read_text()))
        rows.append({"level": level, **{c: m[k] for c, k in COLS.items()}})
    with open(f"{out}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    x = [r["level"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    a.plot(x, [r["teacher_reason_logprob_per_token"] for r in rows], "o-", label="teacher's reason")
    a.plot(
        x, [r["student_logprob_per_token"] for r in rows], "s--", label="student's own step (reason + action)"
    )
    a.set(xlabel="privilege level λ", ylabel="log-likelihood per token under BC", xticks=x)
    a.legend()
    b.plot(x, [r["action_changed_rate"] for r in rows], "o-", label="teacher changes the action")
    b.plot(x, [r["leak_rate"] for r in rows], "^-", label="reason leaks a secret phrase")
    b.set(xlabel="privilege level λ", ylabel="share of corrections", xticks=x, ylim=(-0.05, 1.05))
    b.legend()
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"Corrections of the same {rows[0]['corrections']:.0f} BC steps at λ0..λ4 (ALFWorld, 200 games)"
    )
    fig.tight_layout()
    fig.savefig(f"{out}.png", dpi=120)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
