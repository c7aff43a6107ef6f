"""Batched episode runner shared by the rollout, evaluate, demos and baseline stages.

Episodes advance in lock-step: each tick gathers one decision context per active episode
and asks the policy for all of them at once, so an LLM policy generates a whole batch per
call. A finished episode frees its slot for the next task. Finished trajectories can be
journaled, so a killed stage resumes where it stopped.

With ``concurrency`` (environments in worker processes, or a student behind an inference server),
each episode instead runs in its own thread, up to ``concurrency`` at once: an episode whose
environment is resetting or stepping holds up no other, so environment time overlaps generation.
A policy that is not ``thread_safe`` (the in-process student) still gets batches: the episodes'
single calls are gathered into one ``act`` call (:class:`leap.batching.Batcher`). Environments that
are not ``thread_safe`` (in-process ones) are called one at a time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from leap.agent import Policy, PolicyOutput, PolicyUnavailable, StepContext
from leap.batching import Batcher
from leap.envs.base import Environment
from leap.io import JsonlAppender
from leap.records import PrivilegedState, Step, Task, Trajectory

log = logging.getLogger(__name__)

PARSE_FAILURE_OBS = "Your output could not be parsed. Write 'Reason: ...' then 'Action: ...'."
# With concurrent episodes, a batch waits at most this long for episodes still in their environment.
BATCH_WINDOW_S = 0.1


@dataclass
class _Episode:
    task: Task
    env: Environment
    observation: str
    info: dict[str, Any]
    steps: list[Step] = field(default_factory=list)
    score: float = 0.0
    components: dict[str, float] = field(default_factory=dict)
    won: bool = False
    done: bool = False
    truncated: bool = False
    error: str | None = None


def run_episodes(
    tasks: Iterable[Task],
    policy: Policy,
    make_env: Callable[[], Environment],
    *,
    horizon: int,
    batch_size: int = 8,
    privileged: dict[str, PrivilegedState] | None = None,
    iteration: int | None = None,
    journal: JsonlAppender | None = None,
    progress: bool = True,
    desc: str = "episodes",
    concurrency: int | None = None,
) -> list[Trajectory]:
    """Run ``policy`` on every task; returns trajectories in task order.

    ``privileged`` (task_id -> state) and each step's ``info["privileged"]`` are passed to the
    policy only when ``policy.privileged`` is true; a student never sees them. ``concurrency``: run
    up to that many episodes at once, each in its own thread (see the module docstring); None: in
    lock-step, ``batch_size`` at a time.
    """
    tasks = list(tasks)
    done: dict[str, Trajectory] = {}
    if journal is not None:
        wanted = {t.task_id for t in tasks}
        done = {t.task_id: t for t in journal.load() if t.task_id in wanted}
    queue = [t for t in tasks if t.task_id not in done]
    pool: list[Environment] = []
    active: list[_Episode] = []
    bar = tqdm(total=len(tasks), initial=len(done), desc=desc, disable=not progress, unit="ep")
    if concurrency is not None:
        try:
            _run_concurrent(
                queue,
                policy,
                make_env,
                horizon=horizon,
                concurrency=concurrency,
                batch_size=batch_size,
                privileged=privileged,
                finish=lambda ep, idle: _finish(ep, policy, iteration, done, journal, bar, idle),
            )
        finally:
            bar.close()
        return [done[t.task_id] for t in tasks]
    try:
        while queue or active:
            while queue and len(active) < batch_size:
                task = queue.pop(0)
                env = pool.pop() if pool else make_env()
                ep = _start(task, env)
                if ep.done:
                    _finish(ep, policy, iteration, done, journal, bar, pool)
                else:
                    active.append(ep)
            if not active:
                continue
            ctxs = [_context(ep, policy, privileged) for ep in active]
            try:
                outs = policy.act(ctxs)
            except PolicyUnavailable:
                raise
            except Exception as e:  # a policy crash fails these episodes, recorded, not the stage
                log.exception("policy failed")
                outs = [PolicyOutput("", "", raw_output=f"{type(e).__name__}: {e}", parse_ok=False)] * len(
                    ctxs
                )
            for ep, out in zip(active, outs, strict=True):
                _advance(ep, out, horizon)
            still = []
            for ep in active:
                if ep.done:
                    _finish(ep, policy, iteration, done, journal, bar, pool)
                else:
                    still.append(ep)
            active = still
    finally:
        bar.close()
        for env in pool + [ep.env for ep in active]:
            try:
                env.close()
            except Exception:
                log.warning("env.close() failed", exc_info=True)
    return [done[t.task_id] for t in tasks]


def _start(task: Task, env: Environment) -> _Episode:
    try:
        obs, info = env.reset(task)
    except Exception as e:
        log.error("reset failed for %s: %s", task.task_id, e)
        return _Episode(task, env, "", {}, done=True, error=f"reset failed: {type(e).__name__}: {e}")
    return _Episode(task, env, obs, info, components=dict(info.get("score_components", {})))


def _context(ep: _Episode, policy: Policy, privileged: dict[str, PrivilegedState] | None) -> StepContext:
    ctx = StepContext(
        task=ep.task,
        history=ep.steps,
        observation=ep.observation,
        admissible_actions=ep.info.get("admissible_actions"),
    )
    if getattr(policy, "privileged", False):
        ctx.privileged = ep.info.get("privileged")
        ctx.privileged_state = (privileged or {}).get(ep.task.task_id)
    return ctx


def _advance(ep: _Episode, out: PolicyOutput, horizon: int) -> None:
    step = Step(
        observation=ep.observation,
        reason=out.reason,
        action=out.action,
        raw_output=out.raw_output,
        admissible_actions=ep.info.get("admissible_actions"),
        privileged=ep.info.get("privileged"),
        parse_ok=out.parse_ok,
    )
    if not out.parse_ok or not out.action.strip():
        # Nothing to send: the step still counts against the horizon, and the agent is told why.
        step.valid = False
        step.parse_ok = False
        ep.observation = PARSE_FAILURE_OBS
    else:
        try:
            obs, reward, terminated, truncated, info = ep.env.step(out.action)
        except Exception as e:
            ep.steps.append(step)
            ep.done, ep.error = True, f"step failed: {type(e).__name__}: {e}"
            return
        step.valid = bool(info.get("valid_action", True))
        step.reward = float(reward)
        ep.observation, ep.info = obs, info
        ep.score = float(info.get("score", ep.score + reward))
        ep.components = dict(info.get("score_components", ep.components))
        ep.won = bool(info.get("won", ep.won))
        ep.done = bool(terminated or truncated)
        ep.truncated = bool(truncated)
    ep.steps.append(step)
    if not ep.done and len(ep.steps) >= horizon:
        ep.done, ep.truncated = True, True


def _finish(
    ep: _Episode,
    policy: Policy,
    iteration: int | None,
    done: dict[str, Trajectory],
    journal: JsonlAppender | None,
    bar: Any,
    pool: list[Environment],
) -> None:
    traj = Trajectory(
        task_id=ep.task.task_id,
        env=ep.task.env,
        split=ep.task.split,
        category=ep.task.category,
        instruction=ep.task.instruction,
        policy=policy.policy_id,
        iteration=iteration,
        steps=ep.steps,
        final_observation=ep.observation,
        success=ep.won,
        reward=ep.score,
        score_components=ep.components,
        terminated=ep.done and not ep.truncated,
        truncated=ep.truncated,
        error=ep.error,
    )
    done[traj.task_id] = traj
    if journal is not None:
        journal.append(traj)
    bar.update(1)
    if ep.error is None:
        pool.append(ep.env)
    else:  # a broken engine is not reused
        try:
            ep.env.close()
        except Exception:
            log.warning("env.close() failed", exc_info=True)


# ---------------------------------------------------------------- concurrent episodes


class _Serialized:
    """An environment that is not thread-safe, called under one lock shared by all of its kind."""

    thread_safe = True

    def __init__(self, env: Environment, lock: threading.Lock) -> None:
        self.env, self.lock = env, lock
        self.name = getattr(env, "name", "env")

    def reset(self, task: Task, **kw: Any) -> tuple[str, dict[str, Any]]:
        with self.lock:
            return self.env.reset(task, **kw)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        with self.lock:
            return self.env.step(action)

    def close(self) -> None:
        with self.lock:
            self.env.close()


class _BatchedPolicy:
    """A lock-step policy called from many episode threads: their single calls become batches."""

    def __init__(self, policy: Policy, max_batch: int, expected: Callable[[], int]) -> None:
        self.policy_id, self.privileged = policy.policy_id, policy.privileged
        self.batcher: Batcher[StepContext, PolicyOutput] = Batcher(
            policy.act, max_batch=max_batch, window_s=BATCH_WINDOW_S, expected=expected, name="leap-policy"
        )

    def act(self, contexts: list[StepContext]) -> list[PolicyOutput]:
        return self.batcher(contexts)


class _Stopped(Exception):
    """Another episode stopped the run (the policy became unavailable, or Ctrl-C)."""


def _failed(e: Exception) -> PolicyOutput:
    return PolicyOutput("", "", raw_output=f"{type(e).__name__}: {e}", parse_ok=False)


def _close(env: Environment) -> None:
    try:
        env.close()
    except Exception:
        log.warning("env.close() failed", exc_info=True)


def _run_concurrent(
    queue: list[Task],
    policy: Policy,
    make_env: Callable[[], Environment],
    *,
    horizon: int,
    concurrency: int,
    batch_size: int,
    privileged: dict[str, PrivilegedState] | None,
    finish: Callable[[_Episode, list[Environment]], None],
) -> None:
    lock = threading.Lock()  # the idle pool and the live count
    env_lock = threading.Lock()  # in-process environments step one at a time
    stop = threading.Event()
    idle: list[Environment] = []
    live = [0]
    batched = (
        None if getattr(policy, "thread_safe", False) else _BatchedPolicy(policy, batch_size, lambda: live[0])
    )
    actor: Policy = batched or policy

    def new_env() -> Environment:
        env = make_env()
        return env if getattr(env, "thread_safe", False) else _Serialized(env, env_lock)  # type: ignore[return-value]

    def play(task: Task) -> _Episode:
        with lock:
            live[0] += 1
            env = idle.pop() if idle else None
        try:
            if stop.is_set():
                raise _Stopped()
            env = env or new_env()
            ep = _start(task, env)
            while not ep.done:
                if stop.is_set():
                    raise _Stopped()
                try:
                    (out,) = actor.act([_context(ep, policy, privileged)])
                except PolicyUnavailable:
                    raise
                except Exception as e:  # a policy crash fails this step, recorded, not the stage
                    log.exception("policy failed")
                    out = _failed(e)
                _advance(ep, out, horizon)
            return ep
        except BaseException:
            if env is not None:
                _close(env)
            raise
        finally:
            with lock:
                live[0] -= 1

    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="leap-episode")
    futures = [pool.submit(play, t) for t in queue]
    try:
        for fut in as_completed(futures):
            ep = fut.result()
            with lock:
                finish(ep, idle)
    except BaseException:
        stop.set()
        for f in futures:
            f.cancel()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if batched is not None:
            batched.batcher.close()
        for env in idle:
            _close(env)
