"""The batched episode runner: batching, horizon, invalid output, failures, privilege hygiene."""

from __future__ import annotations

from pathlib import Path

import pytest

from leap.agent import PolicyOutput, StepContext, TeacherPolicy
from leap.envs.toy import ToyEnv, ToyTasks
from leap.io import JsonlAppender
from leap.records import Trajectory
from leap.rollout import PARSE_FAILURE_OBS, run_episodes
from leap.teachers.oracle import OracleTeacher

SRC = ToyTasks(seed=0)
TASKS = SRC.tasks("train")
PRIV = {t.task_id: SRC.privileged_state(t) for t in TASKS}


class Scripted:
    """A policy that records what it was shown and answers from a function."""

    policy_id = "scripted"

    def __init__(self, fn, privileged: bool = False) -> None:
        self.fn = fn
        self.privileged = privileged
        self.seen: list[StepContext] = []
        self.batch_sizes: list[int] = []

    def act(self, contexts: list[StepContext]) -> list[PolicyOutput]:
        self.seen += contexts
        self.batch_sizes.append(len(contexts))
        return [self.fn(c) for c in contexts]


def test_privileged_oracle_wins_everything_in_two_actions() -> None:
    trajs = run_episodes(
        TASKS, TeacherPolicy(OracleTeacher(4)), ToyEnv, horizon=10, privileged=PRIV, progress=False
    )
    assert all(t.success for t in trajs)
    assert {t.num_actions for t in trajs} == {2}
    assert [t.task_id for t in trajs] == [t.task_id for t in TASKS]


def test_batched_equals_one_at_a_time() -> None:
    pol = TeacherPolicy(OracleTeacher(0), privileged=False)
    one = run_episodes(TASKS, pol, ToyEnv, horizon=10, batch_size=1, progress=False)
    many = run_episodes(TASKS, pol, ToyEnv, horizon=10, batch_size=5, progress=False)
    assert [t.model_dump() for t in one] == [t.model_dump() for t in many]


def test_policy_is_called_with_batches() -> None:
    pol = Scripted(lambda c: PolicyOutput("r", (c.admissible_actions or ["x"])[0]))
    run_episodes(TASKS, pol, ToyEnv, horizon=10, batch_size=4, progress=False)
    assert max(pol.batch_sizes) == 4


def test_student_never_sees_privileged_information() -> None:
    pol = Scripted(lambda c: PolicyOutput("r", "open box 1"))
    run_episodes(TASKS, pol, ToyEnv, horizon=3, privileged=PRIV, progress=False)
    assert pol.seen and all(c.privileged is None and c.privileged_state is None for c in pol.seen)


def test_horizon_truncates_and_invalid_actions_are_counted() -> None:
    pol = Scripted(lambda c: PolicyOutput("hmm", "dance"))
    trajs = run_episodes(TASKS[:2], pol, ToyEnv, horizon=4, progress=False)
    for t in trajs:
        assert t.truncated and not t.success and t.num_actions == 4 and t.num_invalid == 4


def test_unparsable_output_is_recorded_not_sent() -> None:
    pol = Scripted(lambda c: PolicyOutput("", "", raw_output="blah", parse_ok=False))
    (t,) = run_episodes(TASKS[:1], pol, ToyEnv, horizon=2, progress=False)
    assert t.num_parse_errors == 2 and t.steps[1].observation == PARSE_FAILURE_OBS
    assert t.steps[0].raw_output == "blah"


def test_policy_crash_fails_episodes_without_crashing_the_stage() -> None:
    def boom(c):
        raise RuntimeError("CUDA out of memory")

    trajs = run_episodes(TASKS[:3], Scripted(boom), ToyEnv, horizon=2, progress=False)
    assert all(not t.success and t.num_parse_errors == 2 for t in trajs)
    assert "CUDA out of memory" in (trajs[0].steps[0].raw_output or "")


class BrokenEnv(ToyEnv):
    def reset(self, task, *, seed=None):
        if task.task_id.endswith("-1"):
            raise OSError("game file missing")
        return super().reset(task)


def test_env_failure_is_recorded_and_others_continue() -> None:
    trajs = run_episodes(
        TASKS[:4], TeacherPolicy(OracleTeacher(4)), BrokenEnv, horizon=5, privileged=PRIV, progress=False
    )
    bad = [t for t in trajs if t.error]
    assert len(bad) == 1 and "game file missing" in bad[0].error
    assert sum(t.success for t in trajs) == 3


def test_journal_resumes_without_redoing_finished_episodes(tmp_path: Path) -> None:
    j = JsonlAppender(tmp_path / "j", Trajectory)
    pol = Scripted(lambda c: PolicyOutput("r", (c.admissible_actions or ["x"])[-1]))
    first = run_episodes(TASKS[:3], pol, ToyEnv, horizon=10, journal=j, progress=False)
    calls = len(pol.seen)
    again = run_episodes(TASKS, pol, ToyEnv, horizon=10, journal=j, progress=False)
    assert [t.model_dump() for t in again[:3]] == [t.model_dump() for t in first]
    new_tasks = {c.task.task_id for c in pol.seen[calls:]}
    assert new_tasks == {t.task_id for t in TASKS[3:]}


@pytest.mark.parametrize("level", range(5))
def test_toy_oracle_levels_win(level: int) -> None:
    trajs = run_episodes(
        TASKS, TeacherPolicy(OracleTeacher(level)), ToyEnv, horizon=10, privileged=PRIV, progress=False
    )
    assert all(t.success for t in trajs)


def test_rollout_sample_spans_task_types_and_changes_each_iteration() -> None:
    from leap.records import Task
    from leap.stages.rollout import rollout_sample

    # Split files group tasks by type: the first 40 here would all be "a".
    tasks = [
        Task(task_id=f"{c}{i}", env="toy", split="train", category=c) for c in "abcdef" for i in range(34)
    ]
    one = rollout_sample(tasks, 40, seed=0, iteration=1)
    assert len(one) == 40 and len({t.task_id for t in one}) == 40
    assert {t.category for t in one} == set("abcdef")
    assert [tasks.index(t) for t in one] == sorted(tasks.index(t) for t in one)  # file order kept
    assert one == rollout_sample(tasks, 40, seed=0, iteration=1)  # deterministic
    assert one != rollout_sample(tasks, 40, seed=0, iteration=2)  # DAgger: new games next iteration
    assert rollout_sample(tasks, None, seed=0, iteration=1) == tasks


def test_demo_tasks_are_a_draw_across_types_and_iterations_replay_a_share_of_earlier_data() -> None:
    from leap.records import Message, Task, TrainExample
    from leap.stages.common import sample_in_order
    from leap.stages.train import replay

    tasks = [
        Task(task_id=f"{c}{i}", env="toy", split="train", category=c) for c in "abcdef" for i in range(34)
    ]
    drawn = sample_in_order(tasks, 60, "0:demos")
    assert len(drawn) == 60 and {t.category for t in drawn} == set("abcdef")

    def ex(iteration: int, k: int) -> TrainExample:
        msg = [Message(role="assistant", content="Reason: r.\nAction: look")]
        return TrainExample(
            prompt=[Message(role="user", content=str(k))],
            completion=msg,
            source="demo" if iteration == 0 else "correction",
            task_id=f"t{k}",
            iteration=iteration,
            step_index=0,
        )

    data = [ex(0, k) for k in range(12)] + [ex(1, k) for k in range(8)] + [ex(2, k) for k in range(7)]
    kept = replay(data, 2, 0.25, "0:replay:2")
    assert sum(e.iteration < 2 for e in kept) == 5  # a quarter of the 20 earlier rows
    assert [e for e in kept if e.iteration == 2] == data[20:]  # every new correction
    assert [e for e in kept if e in data] == kept  # input order kept
    assert replay(data, 2, 0.25, "0:replay:3") != kept  # a new draw each iteration
    assert replay(data, 2, None, "0:replay:2") == data
