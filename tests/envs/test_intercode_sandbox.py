"""InterCode-Bash in the bubblewrap sandbox: hostile commands, gold scoring, cwd, episode semantics.

Needs root, bubblewrap and util-linux; the root file system is built once per test session if it is
missing (about a minute, from the Debian mirror). Without root or bwrap these tests are skipped,
unless LEAP_REQUIRE_SANDBOX=1 (CI), where they fail instead.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from pathlib import Path

import pytest

from leap.agent import StepContext
from leap.envs.base import EnvError
from leap.envs.intercode.env import TIMEOUT_TEXT, InterCodeEnv
from leap.envs.intercode.oracle import oracle
from leap.envs.intercode.params import IntercodeParams
from leap.envs.intercode.rootfs import REQUIRED_TOOLS, RootFS, build_root, default_root
from leap.envs.intercode.tasks import IntercodeTaskSource, load_records, make_task
from leap.records import Step, Task


@pytest.fixture(scope="session")
def sandbox_tools() -> None:
    missing = [t for t in (*REQUIRED_TOOLS, "debootstrap") if shutil.which(t) is None]
    why = "not root" if os.geteuid() != 0 else (f"missing {missing}" if missing else "")
    if why:
        msg = f"InterCode sandbox unavailable ({why}): apt-get install -y bubblewrap debootstrap util-linux"
        if os.environ.get("LEAP_REQUIRE_SANDBOX") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="session")
def intercode_root(sandbox_tools: None) -> RootFS:
    root = RootFS(default_root())
    try:
        root.check()
    except EnvError:
        build_root(root.path)
    return root


@pytest.fixture(scope="module")
def env(intercode_root: RootFS):
    # Short limits keep the hostile tests quick; they are what is being tested.
    params = IntercodeParams(
        root_dir=str(intercode_root.path),
        command_timeout_s=3.0,
        memory_limit_mb=256,
        pids_limit=64,
        max_output_bytes=4096,
        scratch_mb=64,
        file_size_limit_mb=8,
    )
    e = InterCodeEnv(params, horizon=5)
    yield e
    e.close()


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A host file that must survive every test unchanged."""
    p = tmp_path / "canary.txt"
    p.write_text("host data\n")
    return p


def _task(family: int, index: int) -> Task:
    rec = next(r for r in load_records() if r["family"] == family and r["index"] == index)
    return make_task(rec, "test")


FRESH_TESTBED: dict[str, str] = {}


def _assert_clean_next_episode(env: InterCodeEnv, canary: Path) -> None:
    """Host untouched, and a new episode starts from the pristine file system."""
    assert canary.read_text() == "host data\n"
    env.reset(_task(1, 0))
    obs, _, _, _, info = env.step("ls /testbed; git status --short | wc -l")
    if "listing" not in FRESH_TESTBED:
        FRESH_TESTBED["listing"] = obs
    assert obs == FRESH_TESTBED["listing"] and obs.strip().endswith("0")
    assert "hello.c" in obs and info["valid_action"]


def _own_cgroups(env: InterCodeEnv) -> list[Path]:
    """Cgroups this test process made that still exist."""
    assert env.host.cgroups is not None
    return [
        d
        for parent in env.host.cgroups.parents.values()
        for d in parent.glob(f"leap-intercode-{os.getpid()}-*")
    ]


def _leftover_host_processes(cmdline: str) -> list[int]:
    """Host pids whose command line is exactly ``cmdline`` (arguments separated by NUL)."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "cmdline").read_bytes() == cmdline.encode() + b"\0":
                    found.append(int(d.name))
            except OSError:
                pass
    return found


# ---------------------------------------------------------------- hostile commands


def test_rm_rf_root_harms_only_its_episode(env: InterCodeEnv, canary: Path):
    _assert_clean_next_episode(env, canary)
    env.reset(_task(1, 5))
    obs, _, term, _, info = env.step("rm -rf --no-preserve-root / 2>&1 | tail -2; ls /testbed")
    # rm emptied the overlay (ls is gone); /sys is read-only
    assert not term and "ls: command not found" in obs and "Read-only file system" in obs
    obs, _, _, _, info = env.step("ls /")
    assert "No such file or directory" in obs and info["score"] < 1.0
    _, reward, term, _, info = env.step("submit")
    assert term and reward < 1.0
    assert Path("/usr/bin/ls").exists() and Path("/etc/passwd").exists()
    _assert_clean_next_episode(env, canary)


def test_fork_bomb_is_capped(env: InterCodeEnv, canary: Path):
    env.reset(_task(1, 0))
    t0 = time.monotonic()
    obs, _, _, _, _ = env.step(":(){ :|:& };:; wait")
    assert time.monotonic() - t0 < 10
    obs, _, _, _, _ = env.step("for i in $(seq 200); do sleep 30.25 & done 2>&1 | tail -1; echo spawned")
    if env.host.cgroups is not None:  # the pids cgroup caps it (64 here)
        assert "Resource temporarily unavailable" in obs or obs == TIMEOUT_TEXT
        assert _own_cgroups(env) == []  # each command's cgroup is gone with the command
    # The next command starts with a fresh pids budget (a shared cgroup still held the bomb's pids).
    obs, _, _, _, _ = env.step("for i in $(seq 40); do true & done; wait; echo forked")
    assert obs == "forked\n"
    assert _leftover_host_processes("sleep\x0030.25") == []
    _assert_clean_next_episode(env, canary)


def test_every_command_gets_the_whole_pids_budget(env: InterCodeEnv):
    # With one cgroup per episode, each finished command kept a pid charged for a while (the kernel
    # releases a dead pid namespace's init lazily): 3 of these 30 commands failed to fork.
    sb = env.host.open(1)
    try:
        outs = [sb.run("for i in $(seq 50); do sleep 0.1 & done; wait; echo ok").output for _ in range(30)]
    finally:
        sb.close()
    assert outs == ["ok\n"] * 30
    assert _own_cgroups(env) == []


def test_infinite_loop_times_out(env: InterCodeEnv, canary: Path):
    env.reset(_task(1, 0))
    t0 = time.monotonic()
    obs, _, _, _, info = env.step("while :; do :; done")
    took = time.monotonic() - t0
    assert obs == TIMEOUT_TEXT and info["exit_code"] is None and 2.9 < took < 8
    obs, _, _, _, _ = env.step("echo still here")
    assert obs == "still here\n"
    _assert_clean_next_episode(env, canary)


def test_huge_allocation_is_killed(env: InterCodeEnv, canary: Path):
    env.reset(_task(1, 0))
    obs, _, _, _, info = env.step('python3 -c "x = bytearray(3 * 1024**3); print(len(x))"')
    assert "3221225472" not in obs and info["exit_code"] != 0
    assert "Killed" in obs or "MemoryError" in obs
    _assert_clean_next_episode(env, canary)


def test_big_files_are_capped(env: InterCodeEnv, canary: Path):
    env.reset(_task(1, 0))
    obs, _, _, _, _ = env.step("head -c 20M /dev/zero > /tmp/big; ls -l /tmp/big")
    assert "File size limit exceeded" in obs and " 8388608 " in obs
    obs, _, _, _, _ = env.step("for i in $(seq 9); do head -c 8M /dev/zero > /tmp/f$i || break; done")
    assert "No space left on device" in obs or "File size limit" in obs
    obs, _, _, _, info = env.step("yes")
    assert "[output truncated at 4096 bytes]" in obs and info["exit_code"] is None
    _assert_clean_next_episode(env, canary)


def test_cannot_write_host_path(env: InterCodeEnv, canary: Path):
    env.reset(_task(1, 0))
    target = canary.parent / "written_by_agent.txt"
    obs, _, _, _, _ = env.step(
        f"cat {canary}; mkdir -p {canary.parent}; echo pwned > {canary}; echo pwned > {target}; cat {canary}"
    )
    assert "No such file" in obs and "pwned" in obs  # it wrote to its own copy of the path...
    assert canary.read_text() == "host data\n" and not target.exists()  # ...never to the host's
    _assert_clean_next_episode(env, canary)


def test_cannot_read_host_secret(env: InterCodeEnv, canary: Path, tmp_path: Path, monkeypatch):
    token = secrets.token_hex(16)
    (tmp_path / "secret.txt").write_text(token)
    monkeypatch.setenv("LEAP_TEST_SECRET", token)
    env.reset(_task(1, 0))
    obs, _, _, _, _ = env.step(
        f"cat {tmp_path}/secret.txt; env; cat /proc/*/environ 2>/dev/null | "
        f"tr '\\0' '\\n'; grep -rs {token} /root /tmp /home /etc | head -1"
    )
    assert token not in obs and "No such file" in obs
    _assert_clean_next_episode(env, canary)


def test_no_network(env: InterCodeEnv, canary: Path):
    env.reset(_task(1, 0))
    obs, _, _, _, _ = env.step(
        "python3 -c \"import socket; socket.create_connection(('1.1.1.1', 80), timeout=2)\" 2>&1 | tail -1; "
        "curl -sS -m 2 http://deb.debian.org/ 2>&1 | tail -1"
    )
    assert "Network is unreachable" in obs and "Could not resolve host" in obs
    _assert_clean_next_episode(env, canary)


def test_kill_all_and_privileged_writes(env: InterCodeEnv, canary: Path):
    env.reset(_task(1, 0))
    obs, _, _, _, _ = env.step("kill -9 -1; echo survived")
    assert "survived" in obs
    obs, _, _, _, _ = env.step(
        "echo h > /proc/sysrq-trigger; echo 1 > /sys/fs/cgroup/pids/cgroup.procs; "
        "mount -t tmpfs none /mnt; hostname evil"
    )
    assert obs.count("Read-only file system") + obs.count("No such file") >= 2
    assert "permission denied" in obs.lower() or "Operation not permitted" in obs
    obs, _, _, _, _ = env.step("echo next")
    assert obs == "next\n"
    assert os.uname().nodename != "evil"
    _assert_clean_next_episode(env, canary)


def test_background_process_does_not_outlive_its_command(env: InterCodeEnv, canary: Path):
    env.reset(_task(1, 0))
    t0 = time.monotonic()
    obs, _, _, _, _ = env.step("nohup sleep 417 > /dev/null 2>&1 & setsid sleep 418 & echo started")
    assert obs == "started\n" and time.monotonic() - t0 < 2
    assert _leftover_host_processes("sleep\x00417") == [] and _leftover_host_processes("sleep\x00418") == []
    obs, _, _, _, _ = env.step("ps -e -o comm= | sort | uniq | tr '\\n' ' '")
    assert "sleep" not in obs
    _assert_clean_next_episode(env, canary)


# ---------------------------------------------------------------- scoring and episode semantics


@pytest.mark.parametrize("family,index", [(1, 5), (1, 30), (2, 0), (2, 20), (3, 1), (3, 30), (4, 3), (5, 2)])
def test_gold_scores_one(env: InterCodeEnv, family: int, index: int):
    task = _task(family, index)
    obs, info = env.reset(task)
    assert obs == task.instruction and info["privileged"]["gold"] == info["privileged"]["secrets"][0]
    gold = info["privileged"]["gold"]
    _, reward, term, trunc, info = env.step(gold)
    assert reward == 0.0 and not term and not trunc and info["score"] == 1.0 and info["won"]
    _, reward, term, _, info = env.step("submit")
    assert term and reward == 1.0 and info["won"]
    assert info["score_components"] == {"file_diff": 0.33, "file_changes": 0.33, "answer_similarity": 0.33}


def test_wrong_command_scores_below_one(env: InterCodeEnv):
    env.reset(_task(1, 5))  # mkdir /testbed/test_dir ... (gold changes files)
    env.step("echo hello > /testbed/wrong.txt")
    _, reward, term, _, info = env.step("submit")
    assert term and reward < 1.0 and not info["won"]
    assert info["score_components"]["file_diff"] < 0.33
    env.reset(_task(2, 0))
    _, _, _, _, info = env.step("ls /system")
    assert info["score"] < 1.0 and 0 < info["score_components"]["answer_similarity"] < 0.33


def test_cwd_persists_and_shell_state_does_not(env: InterCodeEnv):
    env.reset(_task(1, 0))
    _, _, _, _, info = env.step("cd /testbed/dir1")
    assert info["privileged"]["cwd"] == "/testbed/dir1"
    obs, _, _, _, _ = env.step("pwd; ls")
    assert obs.startswith("/testbed/dir1\n") and "textfile1.txt" in obs
    obs, _, _, _, info = env.step("cd /nonexistent")
    assert "No such file" in obs and info["privileged"]["cwd"] == "/testbed/dir1"
    obs, _, _, _, _ = env.step("X=1; cd ..; echo ${X:-unset}")
    assert obs == "1\n"
    obs, _, _, _, _ = env.step("pwd; echo ${X:-unset}")
    assert obs == "/testbed\nunset\n"


def test_horizon_truncates_with_score_and_invalid_actions(env: InterCodeEnv):
    task = _task(1, 0)  # gold: ls
    env.reset(task)
    for i in range(4):
        cmd = "" if i == 0 else ("nosuchprogram" if i == 1 else "ls(")
        obs, reward, term, trunc, info = env.step(cmd)
        ok = reward == 0.0 and not term and not trunc and not info["valid_action"]
        assert ok, (i, cmd, obs[:300], info)
    _, reward, term, trunc, info = env.step("ls")
    assert trunc and not term and reward == info["score"] == 1.0 and info["valid_action"]
    _, _, term, _, info = env.step("ls")
    assert term and not info["valid_action"]


def test_missing_root_raises_env_error(tmp_path: Path, sandbox_tools: None):
    # Without bwrap the env fails earlier, on the missing tool (its own message).
    e = InterCodeEnv(IntercodeParams(root_dir=str(tmp_path / "none")))
    with pytest.raises(EnvError, match="build-root"):
        e.reset(_task(1, 0))


def test_oracle_level2_solves_through_env(env: InterCodeEnv):
    src = IntercodeTaskSource(IntercodeParams(), 0)
    for family, index in [(1, 12), (3, 5)]:
        task = _task(family, index)
        ps = src.privileged_state(task)
        obs, info = env.reset(task)
        history: list[Step] = []
        for _ in range(4):
            ctx = StepContext(
                task=task,
                history=history,
                observation=obs,
                privileged=info["privileged"],
                privileged_state=ps,
            )
            label = oracle(ctx, None, 2)
            assert ps.facts["gold"] not in label.reason
            obs2, reward, term, trunc, info = env.step(label.action)
            history.append(Step(observation=obs, reason=label.reason, action=label.action))
            obs = obs2
            if term or trunc:
                break
        assert term and reward == 1.0 and [s.action for s in history] == ps.plan


def test_cli_check_gold_and_exec(intercode_root: RootFS):
    from typer.testing import CliRunner

    from leap.envs.intercode.cli import app

    runner = CliRunner()
    root = str(intercode_root.path)
    res = runner.invoke(app, ["check-gold", "--root", root, "--family", "4", "--limit", "3"])
    assert res.exit_code == 0, res.output
    assert "gold scores 1.0 on 3/3 tasks" in res.output
    res = runner.invoke(app, ["exec", "--root", root, "--family", "2", "cd /system", "ls"])
    assert res.exit_code == 0 and "/system$ ls" in res.output and "folder1" in res.output


def test_without_cgroups_rlimits_and_the_pid_namespace_still_contain(intercode_root: RootFS, monkeypatch):
    from leap.envs.intercode import sandbox

    monkeypatch.setattr(sandbox, "cgroup_factory", lambda *a: None)
    params = IntercodeParams(root_dir=str(intercode_root.path), command_timeout_s=3.0, memory_limit_mb=256)
    e = InterCodeEnv(params, horizon=5)
    try:
        e.reset(_task(1, 0))
        assert e.host.mechanism == "rlimits (no cgroup)"
        obs, _, _, _, info = e.step('python3 -c "x = bytearray(1024**3); print(len(x))"')
        assert "MemoryError" in obs and info["exit_code"] != 0
        obs, _, _, _, _ = e.step("for i in $(seq 20); do sleep 419 & done; echo spawned")
        assert obs == "spawned\n" and _leftover_host_processes("sleep\x00419") == []
        obs, _, _, _, _ = e.step("while :; do :; done")
        assert obs == TIMEOUT_TEXT
        _, _, term, _, _ = e.step("ls")
        assert not term
        assert e.step("submit")[1] == 1.0
    finally:
        e.close()
