"""Paired comparison of two evaluations (`leap pair`, `leap.metrics.paired`): the same games, the
difference with its interval, discordant games and McNemar's exact p, per split and pooled."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from leap.cli import app
from leap.io import write_jsonl
from leap.metrics import paired
from leap.records import Trajectory


def _trajs(split: str, solved: list[bool], policy: str) -> list[Trajectory]:
    return [
        Trajectory(
            task_id=f"g{i}",
            env="toy",
            split=split,
            category="c",
            instruction="i",
            policy=policy,
            steps=[],
            success=s,
        )
        for i, s in enumerate(solved)
    ]


def test_paired_counts_discordant_games_per_split_and_pooled() -> None:
    # test: A solves g0-g5, B solves g0 and g6 -> only A 5, only B 1; test_ood: A 2/4, B 1/4
    a = _trajs("test", [True] * 6 + [False] * 4, "a") + _trajs("test_ood", [True, True, False, False], "a")
    b = _trajs("test", [True] + [False] * 5 + [True] + [False] * 3, "b")
    b += _trajs("test_ood", [True, False, False, False], "b")
    out = paired(a, b)
    t = out["test"]
    assert (t.n, t.only_a, t.only_b) == (10, 5, 1)
    assert abs(t.diff - 0.4) < 1e-12
    assert abs(t.p_value - 14 / 64) < 1e-12  # McNemar exact: 2 * P(Bin(6, 1/2) <= 1) = 2 * 7/64
    assert t.ci_low <= t.diff <= t.ci_high
    pooled = out["test+test_ood"]
    assert (pooled.n, pooled.only_a, pooled.only_b) == (14, 6, 1)  # g0 of test and of test_ood stay apart
    assert set(out) == {"test", "test_ood", "test+test_ood"}
    assert "test+test_ood" not in paired(a, b[:10])  # B has no test_ood: nothing to pool


def test_leap_pair_merges_files_and_pairs_only_shared_games(tmp_path: Path) -> None:
    a1, a2, b1 = tmp_path / "a1.jsonl", tmp_path / "a2.jsonl", tmp_path / "b.jsonl"
    write_jsonl(a1, _trajs("test", [True, True, False], "a"))
    write_jsonl(a2, _trajs("test_ood", [True], "a"))
    write_jsonl(b1, _trajs("test", [False, True, False, True], "b") + _trajs("test_ood", [False], "b"))
    res = CliRunner().invoke(app, ["pair", "-a", str(a1), "-a", str(a2), "-b", str(b1)])
    assert res.exit_code == 0, res.output
    rows = {
        line.split(" | ")[0].strip("| "): line
        for line in res.output.splitlines()
        if line.startswith("| test")
    }
    assert rows["test"].split(" | ")[1] == "3"  # g3 only B played
    assert (
        "| 1 / 0 |" in rows["test"]
        and "| 1 / 0 |" in rows["test_ood"]
        and "| 2 / 0 |" in rows["test+test_ood"]
    )
    res = CliRunner().invoke(app, ["pair", "-a", str(a2), "-b", str(a1)])
    assert res.exit_code != 0 and "share no split" in res.output


def test_report_pairs_the_held_out_splits_pooled() -> None:
    from leap.metrics import outcomes
    from leap.stages.report import comparisons

    a = _trajs("test", [True] * 6 + [False] * 4, "a") + _trajs("test_ood", [True, True, False, False], "a")
    b = _trajs("test", [True] + [False] * 5 + [True] + [False] * 3, "b")
    b += _trajs("test_ood", [True, False, False, False], "b")
    teacher = {"test": {f"g{i}": True for i in range(10)}}  # played no test_ood: not pooled
    splits = ["test", "test_ood"]
    out = comparisons({0: outcomes(b), 1: outcomes(a)}, {"oracle:l0": teacher}, splits, pool=splits)
    pooled = out["test+test_ood"]["iter_1_vs_bc"]
    assert (pooled["n"], pooled["only_a"], pooled["only_b"]) == (14, 6, 1)  # as `leap pair` counts
    assert out["test"]["iter_1_vs_bc"]["only_a"] == 5
    assert "iter_1_vs_oracle_l0" in out["test"] and "iter_1_vs_oracle_l0" not in out["test+test_ood"]
    assert "test+test_ood" not in comparisons({0: outcomes(b), 1: outcomes(a)}, {}, ["test"], pool=["test"])
