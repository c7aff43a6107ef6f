"""InterCode-Bash: tasks, splits, scoring rule and oracle (no sandbox needed)."""

from __future__ import annotations

import math

import pytest

from leap.agent import StepContext
from leap.envs.base import EnvError
from leap.envs.intercode.oracle import generic_command, oracle, programs
from leap.envs.intercode.params import IntercodeParams
from leap.envs.intercode.scoring import SideState, parse_status, score, tfidf_similarity
from leap.envs.intercode.tasks import IntercodeTaskSource, load_records, record
from leap.records import Step

# ---------------------------------------------------------------- tasks and splits


def test_records_are_icalfa_300_in_family_order():
    recs = load_records()
    assert len(recs) == 300
    counts = [sum(r["family"] == k for r in recs) for k in range(1, 6)]
    assert counts == [153, 49, 57, 23, 18]
    assert [r["global_index"] for r in recs] == list(range(300))
    assert recs[0]["gold"] == "ls" and recs[153]["family"] == 2 and recs[153]["index"] == 0


def test_default_split_is_paper_split_with_valid_carved_from_train():
    src = IntercodeTaskSource(IntercodeParams(), 0)
    train, valid, test = (src.tasks(s) for s in ("train", "valid", "test"))
    assert (len(train), len(valid), len(test)) == (180, 20, 100)
    ids = [t.task_id for t in train + valid + test]
    assert len(set(ids)) == 300
    first200 = {f"fs{r['family']}-{r['index']:03d}" for r in load_records()[:200]}
    assert {t.task_id for t in train + valid} == first200
    assert all(t.env == "intercode" and t.split == "valid" for t in valid)
    assert src.tasks("test_ood") == []
    with pytest.raises(EnvError, match="unknown InterCode split"):
        src.tasks("bogus")


def test_valid_from_rest_and_test_subset_are_even_and_deterministic():
    p = IntercodeParams(n_train=40, n_valid=10, valid_from="rest", n_test=20)
    a, b = IntercodeTaskSource(p, 0), IntercodeTaskSource(p, 7)
    assert [t.task_id for t in a.tasks("test")] == [t.task_id for t in b.tasks("test")]
    assert len(a.tasks("train")) == 40 and len(a.tasks("valid")) == 10 and len(a.tasks("test")) == 20
    fams = {t.category for t in a.tasks("test")}
    assert {"fs_1", "fs_3", "fs_5"} <= fams  # spread over the held-out families
    assert not {t.task_id for t in a.tasks("valid")} & {t.task_id for t in a.tasks("test")}


def test_task_and_privileged_state():
    src = IntercodeTaskSource(IntercodeParams(), 0)
    task = src.tasks("test")[0]
    rec = record(task.spec["family"], task.spec["index"])
    assert task.instruction == rec["query"] and task.category == f"fs_{rec['family']}"
    ps = src.privileged_state(task)
    assert ps.facts["gold"] == rec["gold"] and ps.facts["gold2"] == rec["gold2"]
    assert ps.plan == [rec["gold"], "submit"] and ps.secrets == [rec["gold"]]


def test_registered_with_oracle():
    from leap.envs import make_task_source, registered, spec

    assert "intercode" in registered() and spec("intercode").oracle is not None
    from leap.config import EnvParams

    src = make_task_source("intercode", EnvParams(name="intercode"), 0)
    assert len(src.tasks("test")) == 100


# ---------------------------------------------------------------- scoring


def test_parse_status_pairs_like_intercode():
    assert parse_status(" M testbed/a.txt\n?? testbed/new/\nD  x\n") == [
        ("testbed/a.txt", "M"),
        ("testbed/new/", "??"),
        ("x", "D"),
    ]


def _side(status: str, hashes: dict[str, str] | None = None, output: str = "") -> SideState:
    return SideState(status=parse_status(status), hashes=hashes or {}, output=output)


def test_identical_states_score_one():
    g = _side("?? testbed/x.txt\n", {"testbed/x.txt": "abc  testbed/x.txt\n"}, "out put")
    a = _side("?? testbed/x.txt\n", {"testbed/x.txt": "abc  testbed/x.txt\n"}, "out put")
    total, comps, _ = score(a, g, first_action="something else", gold_command="gold")
    assert total == 1.0 and comps == {"file_diff": 0.33, "file_changes": 0.33, "answer_similarity": 0.33}


def test_missing_change_and_wrong_content_and_output_lose_points():
    g = _side("?? testbed/x.txt\n?? testbed/y.txt\n", {"testbed/x.txt": "h1", "testbed/y.txt": "h2"}, "a b c")
    a = _side("?? testbed/x.txt\n", {"testbed/x.txt": "WRONG"}, "zzz")
    total, comps, details = score(a, g, first_action="cmd", gold_command="gold")
    assert comps["file_diff"] == round(0.33 * (1 - math.erf(1)), 2) == 0.05
    assert comps["file_changes"] == 0.0 and details["diff_same"]["total"] == 1
    assert comps["answer_similarity"] == 0.0
    assert total == 0.06


def test_first_action_equal_to_gold_earns_output_part():
    g, a = _side("", output="x y"), _side("", output="completely different")
    assert score(a, g, first_action="ls -l", gold_command="ls -l")[1]["answer_similarity"] == 0.33
    assert score(a, g, first_action="ls", gold_command="ls -l")[1]["answer_similarity"] == 0.0


def test_tfidf_partial_credit_and_empty_outputs():
    sim = tfidf_similarity("alpha beta gamma", "alpha beta delta")
    assert 0.0 < sim < 1.0
    total, comps, _ = score(
        _side("", output="alpha beta gamma"),
        _side("", output="alpha beta delta"),
        first_action="x",
        gold_command="y",
    )
    assert comps["answer_similarity"] == round(0.33 * sim, 2) and 0.67 < total < 1.0
    assert tfidf_similarity("", "") == 1.0 and tfidf_similarity("a", "") == 0.0


# ---------------------------------------------------------------- oracle


def _ctx(gold: str, query: str, history: list[str] = (), cwd: str = "/") -> StepContext:
    from leap.records import PrivilegedState, Task

    task = Task(
        task_id="fs1-000",
        env="intercode",
        split="train",
        category="fs_1",
        instruction=query,
        spec={"family": 1, "index": 0},
    )
    steps = [Step(observation="o", reason="r", action=a) for a in history]
    ps = PrivilegedState(
        task_id=task.task_id, env="intercode", facts={"gold": gold}, plan=[gold, "submit"], secrets=[gold]
    )
    return StepContext(
        task=task, history=steps, observation="o", privileged={"gold": gold, "cwd": cwd}, privileged_state=ps
    )


GOLD = "find /testbed -type f -name '*.txt' | xargs wc -l"
QUERY = "Count the lines of every .txt file under /testbed"


@pytest.mark.parametrize("level", [1, 2, 3])
def test_oracle_runs_gold_without_quoting_it(level: int):
    out = oracle(_ctx(GOLD, QUERY), None, level)
    assert out.action == GOLD
    assert GOLD not in out.reason and "xargs wc" not in out.reason
    if level == 3:
        assert "`find`" in out.reason and "`xargs`" in out.reason


def test_oracle_levels_4_and_0_and_submit():
    assert GOLD in oracle(_ctx(GOLD, QUERY), None, 4).reason
    l0 = oracle(_ctx(GOLD, QUERY), None, 0)
    assert l0.action != GOLD and "/testbed" in l0.action and "xargs" not in l0.reason
    assert oracle(_ctx(GOLD, QUERY, [GOLD]), None, 2).action == "submit"
    assert oracle(_ctx(GOLD, QUERY, ["ls"]), None, 0).action == "submit"
    # gold ran earlier but something else ran since: run gold again so the last output is its output
    assert oracle(_ctx(GOLD, QUERY, [GOLD, "ls"]), None, 2).action == GOLD
    moved = oracle(_ctx(GOLD, QUERY, ["cd /tmp"], cwd="/tmp"), None, 2)
    assert moved.action == f"cd / && {GOLD}"
    assert oracle(_ctx(GOLD, QUERY, [moved.action], cwd="/"), None, 2).action == "submit"


def test_generic_command_and_programs():
    assert generic_command("How many files are in /system/folder1?") == "find /system/folder1 -type f | wc -l"
    assert generic_command("Print the contents of /testbed/hello.c") == "cat /testbed/hello.c"
    assert generic_command("list files in the current directory") == "ls -la ."
    assert programs("find . -type f -exec md5sum {} + | sort | uniq -d") == ["find", "md5sum", "sort", "uniq"]
    assert programs("address=$(dig +short google.com | head -n 1) && echo $address") == [
        "dig",
        "head",
        "echo",
    ]


# ---------------------------------------------------------------- host checks


def test_missing_tools_or_privilege_raise_env_error_with_the_fix(monkeypatch):
    from leap.envs.intercode import rootfs

    monkeypatch.setattr(rootfs.os, "geteuid", lambda: 1000)
    with pytest.raises(EnvError, match="needs root"):
        rootfs.require_host()
    monkeypatch.setattr(rootfs.os, "geteuid", lambda: 0)
    monkeypatch.setattr(rootfs.shutil, "which", lambda t: None if t == "bwrap" else f"/usr/bin/{t}")
    with pytest.raises(EnvError, match="apt-get install -y bubblewrap"):
        rootfs.require_host()


def test_root_dir_resolution(monkeypatch, tmp_path):
    from leap.envs.intercode.rootfs import RootFS, default_root

    monkeypatch.setenv("LEAP_INTERCODE_ROOT", str(tmp_path / "env"))
    assert default_root() == tmp_path / "env"
    assert default_root(str(tmp_path / "param")) == tmp_path / "param"
    monkeypatch.delenv("LEAP_INTERCODE_ROOT")
    assert str(default_root()).endswith(".cache/leap/intercode")
    with pytest.raises(EnvError, match="leap intercode build-root"):
        RootFS(tmp_path / "empty").check()
