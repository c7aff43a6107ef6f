"""Environments in worker processes, with time and memory limits.

Gymnasium's ``AsyncVectorEnv`` is the model: each environment lives in its own process and is driven
over a pipe. ALFWorld's known troubles (resets that hang for minutes, a TextWorld memory leak on reset,
no thread safety) then cost one episode, never the stage: a reset or step that runs past its time
limit, a worker that dies, or one whose private memory passes its limit is killed (with its process
group, so whatever the environment started goes too) and the call raises :class:`WorkerError`; the
episode runner records the episode as failed with that reason, and the next episode gets a fresh
worker. Between episodes, a worker over its memory limit is replaced quietly, so a leak across resets
loses nothing.

:class:`WorkerEnv` is itself an :class:`~leap.envs.base.Environment`: the episode runner drives it like
any other. A call blocks only the thread that makes it, so episodes run their environments in parallel
(``thread_safe``). An error the environment raises in the worker is raised again in the stage with its
own type and message, so a trajectory records the same ``error`` as in-process.

Workers start through ``forkserver`` by default: a clean process, with none of the stage's threads,
locks or model memory (``fork`` would copy a process that may hold a model and CUDA state).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import psutil

from leap.envs.base import EnvError, Environment, EnvMaker
from leap.records import Task

log = logging.getLogger(__name__)

POLL_S = 0.2  # how often a wait looks at the worker's liveness and memory


@dataclass(frozen=True)
class WorkerLimits:
    reset_timeout_s: float = 300.0  # also bounds building the environment when a worker starts
    step_timeout_s: float = 60.0
    memory_mb: float | None = None  # private memory (USS) a worker may hold
    # Between episodes, a worker holding more than this is replaced (None: 3/4 of memory_mb), so an
    # engine that leaks a little on every reset is recycled before it passes memory_mb mid-episode.
    recycle_mb: float | None = None

    @property
    def recycle_at(self) -> float | None:
        if self.recycle_mb is not None:
            return self.recycle_mb
        return None if self.memory_mb is None else 0.75 * self.memory_mb

    start_method: str = "forkserver"
    close_timeout_s: float = 5.0


class WorkerError(EnvError):
    """A worker hung, died or passed its memory limit, and was killed (the message says which)."""


# ---------------------------------------------------------------- the worker process


def _portable(err: BaseException) -> BaseException:
    """``err`` if it survives pickling, else an EnvError with its type and message."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return EnvError(f"{type(err).__name__}: {err}")


def _reply(conn: Connection, kind: str, value: Any) -> None:
    if kind == "error":
        value = _portable(value)
    try:
        conn.send((kind, value))
    except (pickle.PicklingError, TypeError, AttributeError) as e:
        conn.send(("error", EnvError(f"the environment returned what cannot be sent back: {e}")))


def _serve(conn: Connection, factory: Callable[[], Environment]) -> None:
    """The worker: build the environment, then answer (command, payload) until told to close."""
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)  # its own process group, killed whole
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the stage's to handle (it closes workers)
    try:
        env = factory()
    except BaseException as e:
        _reply(conn, "error", e)
        return
    _reply(conn, "ready", getattr(env, "name", ""))
    while True:
        try:
            cmd, payload = conn.recv()
        except (EOFError, OSError):  # the stage is gone
            return
        try:
            if cmd == "reset":
                task, seed = payload
                out = env.reset(task) if seed is None else env.reset(task, seed=seed)
            elif cmd == "step":
                out = env.step(payload)
            elif cmd == "close":
                env.close()
                _reply(conn, "ok", None)
                return
            else:
                raise ValueError(f"unknown worker command {cmd!r}")
        except Exception as e:
            _reply(conn, "error", e)
        else:
            _reply(conn, "ok", out)


# ---------------------------------------------------------------- the stage's side

_preload_lock = threading.Lock()
_preloaded = False


def _context(method: str, factory: Callable[[], Environment]) -> Any:
    global _preloaded
    if method not in multiprocessing.get_all_start_methods():
        method = "spawn"
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        with _preload_lock:
            if not _preloaded:  # read once, before the server starts: workers then fork with these imported
                make = factory.make if isinstance(factory, EnvMaker) else factory
                module = (
                    make.partition(":")[0] if isinstance(make, str) else getattr(make, "__module__", None)
                )
                ctx.set_forkserver_preload([m for m in (__name__, module) if m and m != "__main__"])
                _preloaded = True
    return ctx


def private_mb(pid: int) -> float:
    """Memory only this process holds (USS), in MB: pages shared with the parent do not count."""
    return psutil.Process(pid).memory_full_info().uss / 2**20


def _died(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class WorkerEnv:
    """An environment in its own worker process (see the module docstring).

    ``factory`` builds the environment in the worker; it must pickle (a module-level class or
    function, or :class:`~leap.envs.base.EnvMaker`). Building it happens in the constructor, so an
    environment that cannot be built fails the same way as in-process.
    """

    thread_safe = True  # each instance has its own process

    def __init__(self, factory: Callable[[], Environment], limits: WorkerLimits | None = None) -> None:
        self.factory = factory
        self.limits = limits or WorkerLimits()
        self.name = str(getattr(factory, "name", getattr(factory, "__name__", "env")))
        self._proc: Any = None
        self._conn: Connection | None = None
        self.restarts = 0  # quiet replacements (memory between episodes)
        self._start()

    # ------------------------------------------------------------ Environment

    def reset(self, task: Task, *, seed: int | None = None) -> tuple[str, dict[str, Any]]:
        if self._proc is None:
            self._start()
        elif (at := self.limits.recycle_at) is not None and (mb := self._memory()) > at:
            log.info(
                "environment worker %s holds %.0f MB after its last episode: replacing it", self.name, mb
            )
            self._kill()
            self.restarts += 1
            self._start()
        return self._call("reset", (task, seed), self.limits.reset_timeout_s)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._proc is None:
            raise WorkerError("the worker was killed earlier in this episode")
        return self._call("step", action, self.limits.step_timeout_s)

    def close(self) -> None:
        if self._proc is None:
            return
        try:
            assert self._conn is not None
            self._conn.send(("close", None))
            if self._conn.poll(self.limits.close_timeout_s):
                self._conn.recv()
            self._proc.join(self.limits.close_timeout_s)
        except (EOFError, OSError):
            pass
        finally:
            self._kill()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # ------------------------------------------------------------ internals

    def _start(self) -> None:
        ctx = _context(self.limits.start_method, self.factory)
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_serve, args=(child, self.factory), daemon=True, name=f"leap-env-{self.name}"
        )
        try:
            proc.start()
        except (pickle.PicklingError, AttributeError, TypeError) as e:
            parent.close()
            raise EnvError(
                f"environment '{self.name}' cannot be sent to a worker process ({e}): register a "
                "module-level class or function, or a 'module:attribute' string"
            ) from None
        finally:
            child.close()
        self._proc, self._conn = proc, parent
        kind, value = self._wait("start", self.limits.reset_timeout_s)
        if kind == "error":
            self._kill()
            raise value

    def _call(self, cmd: str, payload: Any, timeout: float) -> Any:
        assert self._conn is not None
        try:
            self._conn.send((cmd, payload))
        except (BrokenPipeError, EOFError, OSError):
            raise self._dead(cmd) from None
        kind, value = self._wait(cmd, timeout)
        if kind == "error":
            raise value
        return value

    def _wait(self, what: str, timeout: float) -> tuple[str, Any]:
        assert self._conn is not None and self._proc is not None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self._kill()
                raise WorkerError(f"{what} timed out after {timeout:g} s (worker killed)")
            try:
                ready = self._conn.poll(min(left, POLL_S))
            except (EOFError, OSError):
                ready = True
            if ready:
                try:
                    kind, value = self._conn.recv()
                except (EOFError, OSError):
                    raise self._dead(what) from None
                break
            if not self._proc.is_alive():
                raise self._dead(what)
            self._check_memory(what)
        self._check_memory(what)
        return kind, value

    def _memory(self) -> float:
        try:
            return private_mb(self._proc.pid) if self._proc is not None else 0.0
        except psutil.Error:  # gone already: its death is reported by the wait
            return 0.0

    def _check_memory(self, what: str) -> None:
        limit = self.limits.memory_mb
        if limit is None:
            return
        mb = self._memory()
        if mb > limit:
            self._kill()
            raise WorkerError(
                f"the worker passed its memory limit during {what} ({mb:.0f} MB > {limit:g} MB; killed)"
            )

    def _dead(self, what: str) -> WorkerError:
        proc = self._proc
        if proc is not None:
            proc.join(1.0)
        code = proc.exitcode if proc is not None else None
        self._kill()
        return WorkerError(f"the worker died during {what} ({_died(code)})")

    def _kill(self) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if proc is not None:
            if proc.is_alive():
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:  # not (yet) its own group leader
                    proc.kill()
            proc.join(5.0)
        if conn is not None:
            conn.close()

    def __del__(self) -> None:  # a worker never outlives its handle
        with contextlib.suppress(Exception):
            self._kill()
